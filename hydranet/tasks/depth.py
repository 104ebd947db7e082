"""Depth: one value per pixel in metres (the absolute value of the head's output).

Labels: float32 metres, 0 / negative / NaN = no measurement (sparse KITTI depth is normal).
"""

from __future__ import annotations

from typing import Literal, Optional

import numpy as np
import torch
from pydantic import model_validator

from ..errors import DataError
from ..schema.types import Bool, Field, Float
from .kind import GAUSSIAN_UW, DrawStyle, LabelSources, TaskKind, TaskOptions, per_sample, register_kind

FALLBACK_MAX_DEPTH = 10.0  # the colour range when neither the task nor the frame says more


def depth_to_png_mm(depth: np.ndarray) -> np.ndarray:
    """Depth in metres -> uint16 millimetres ``round(depth * 1000)`` (0 = invalid; saturates at 65.535 m)."""
    d = np.where(np.isfinite(depth) & (depth > 0), depth, 0.0).astype(np.float64)
    return np.clip(np.rint(d * 1000.0), 0, 65535).astype(np.uint16)


def display_max_depth(
    spec, config: Optional[dict], depth: Optional[np.ndarray] = None, override: Optional[float] = None
) -> float:
    """The top of the depth colour scale: ``override``, else the task's/checkpoint's
    ``max_depth``, else the 99th percentile of ``depth`` rounded up to a readable value."""
    from ..visualize import max_depth_for, nice_ceil

    if override:
        return float(override)
    known = max_depth_for(spec, config)
    if known:
        return known
    if depth is not None:
        valid = depth[np.isfinite(depth) & (depth > 0)]
        if valid.size:
            return nice_ceil(float(np.percentile(valid, 99)))
    return FALLBACK_MAX_DEPTH


DEPTH_CROPS = ("garg", "eigen", "nyu")


class DepthOptions(TaskOptions):
    """``options`` of a depth task (evaluation conventions and drawing)."""

    min_depth: Float = Field(1e-3, gt=0, description="evaluation: ground truth below this (metres) is invalid")
    max_depth: Optional[Float] = Field(
        None, gt=0, description="evaluation: ground truth above this is invalid, predictions are capped (null: none)"
    )
    crop: Optional[Literal[DEPTH_CROPS]] = Field(None, description="evaluation crop: garg, eigen (KITTI), nyu")
    average: Literal["image", "pixel"] = Field("image", description="metrics averaged per image or pooled per pixel")
    median_scaling: Bool = Field(False, description="scale each prediction by median(gt) / median(pred)")
    display_max_depth: Optional[Float] = Field(None, gt=0, description="top of the colour scale (null: max_depth)")
    depth_scale: Optional[Float] = Field(
        None, gt=0, description="depth PNG units per metre of the training data (converted weights record it)"
    )
    take_abs: Literal[True] = Field(
        True, description="the depth is |output|: always true (recorded by converted checkpoints)"
    )

    @model_validator(mode="after")
    def _check(self) -> DepthOptions:
        if self.max_depth is not None and self.max_depth <= self.min_depth:
            raise ValueError(f"max_depth: must exceed min_depth ({self.min_depth}), got {self.max_depth}")
        return self


class Depth(TaskKind):
    name = "depth"
    dense = True
    fixed_channels = 1
    losses = ("l1", "berhu", "silog")
    default_metrics = ("abs_rel", "rmse", "delta1")
    metric_names = ("abs_rel", "sq_rel", "rmse", "rmse_log", "log10", "delta1", "delta2", "delta3")
    options_model = DepthOptions
    uw_form = GAUSSIAN_UW
    draw_role = "map"
    draw_priority = 0
    fillable = True

    def read_label(self, spec, path, sources: LabelSources) -> np.ndarray:
        from ..data.io import read_depth

        return read_depth(path, sources.depth_scale)

    def check_label(self, spec, value, image_hw, src) -> None:
        super().check_label(spec, value, image_hw, src)
        if np.ndim(value) != 2:
            raise DataError(f"{src}: depth must be H x W, got shape {np.shape(value)}")

    def label_to_tensor(self, spec, value) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(value, dtype=np.float32)[None])

    def fill(self, spec, h, w) -> torch.Tensor:
        return torch.full((1, h, w), float("nan"), dtype=torch.float32)

    def valid(self, spec, target, present) -> torch.Tensor:
        return torch.isfinite(target) & (target > 0) & per_sample(present, target)

    def loss_target(self, spec, target) -> torch.Tensor:
        return target.unsqueeze(1) if target.dim() == 3 else target

    def metrics(self, spec):
        from ..evaluation.metrics import DepthMetrics

        return DepthMetrics(spec)

    def to_average(self, spec, y):
        return y.abs()  # the depth is |output|: average magnitudes

    def postprocess(self, spec, y) -> list:
        return list(y[:, 0].abs().cpu().numpy())

    def summarize(self, spec, value) -> dict:
        valid = value[np.isfinite(value) & (value > 0)]
        return (
            {"min_m": float(valid.min()), "median_m": float(np.median(valid)), "max_m": float(valid.max())}
            if valid.size
            else {}
        )

    def describe(self, spec, summary) -> Optional[str]:
        return f"{spec.name}: median {summary['median_m']:.2f} m" if summary else None

    def save(self, spec, value, out_dir, stem, style, options) -> dict:
        import io

        from ..data.io import write_bytes_atomic, write_png
        from ..visualize import colorize_depth, depth_scale_bar, hstack

        coloured = out_dir / f"{stem}_{spec.name}.png"
        top = display_max_depth(spec, style.config, value, style.max_depth)
        write_png(
            coloured, hstack([colorize_depth(value, top, style.cmap), depth_scale_bar(value.shape[0], top, style.cmap)])
        )
        if options.get("depth_format", "png") == "png":
            raw = out_dir / f"{stem}_{spec.name}_mm.png"
            write_png(raw, depth_to_png_mm(value))
        else:
            raw = out_dir / f"{stem}_{spec.name}.npy"
            buffer = io.BytesIO()  # written atomically: no partial file on a full disk
            np.save(buffer, value.astype(np.float32))
            write_bytes_atomic(raw, buffer.getvalue())
        return {spec.name: str(coloured), f"{spec.name}_raw": str(raw)}

    def pseudolabel(self, spec, logits, options) -> np.ndarray:
        metres = logits[0].float().abs().cpu().numpy()
        return np.clip(np.round(metres * options["depth_scale"]), 0, 65535).astype(np.uint16)

    def draw_map(self, spec, value, style: DrawStyle) -> list:
        from ..visualize import colorize_depth, depth_scale_bar, put_label

        h = value.shape[0]
        key = spec.name
        if style.fixed_range and key in style.cache:
            top, bar = style.cache[key]
        else:
            top = display_max_depth(spec, style.config, value, style.max_depth)
            bar = depth_scale_bar(h, top, style.cmap, font_scale=style.font_scale)
            style.cache[key] = (top, bar)
        panel = put_label(colorize_depth(value, top, style.cmap), spec.name, (3, 3), style.font_scale)
        return [panel, bar]


DEPTH = register_kind(Depth())
