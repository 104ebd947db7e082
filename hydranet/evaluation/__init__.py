"""Evaluation: the evaluation loop and the generic metric machinery (see :mod:`hydranet.evaluation.metrics`).

Each kind's metric accumulator lives with its kind (:mod:`hydranet.kinds`).
"""

from .evaluate import evaluate
from .metrics import MetricAccumulator, MultiTaskMetrics, build_metrics, format_table

__all__ = [
    "evaluate",
    "MetricAccumulator",
    "MultiTaskMetrics",
    "build_metrics",
    "format_table",
]
