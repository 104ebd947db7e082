"""Evaluation: metric accumulators over a whole set (see :mod:`hydranet.evaluation.metrics`)."""

from .evaluate import batch_to, evaluate
from .metrics import (
    DEPTH_CROPS,
    ClassificationMetrics,
    DepthMetrics,
    MetricAccumulator,
    MultiTaskMetrics,
    NormalsMetrics,
    RegressionMetrics,
    SegmentationMetrics,
    build_metrics,
    depth_crop_mask,
    format_table,
)

__all__ = [
    "evaluate",
    "batch_to",
    "DEPTH_CROPS",
    "ClassificationMetrics",
    "DepthMetrics",
    "MetricAccumulator",
    "MultiTaskMetrics",
    "NormalsMetrics",
    "RegressionMetrics",
    "SegmentationMetrics",
    "build_metrics",
    "depth_crop_mask",
    "format_table",
]
