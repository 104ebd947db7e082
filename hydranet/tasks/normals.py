"""Surface normals: 3 values per pixel, unit vectors in the camera frame (x right, y up,
z towards the viewer). Labels: float32 H x W x 3; a zero or non-finite vector = no label."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import DataError
from ..schema.types import Field, Float
from .kind import GAUSSIAN_UW, DrawStyle, LabelSources, TaskKind, TaskOptions, per_sample, register_kind


def valid_normals(target: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """N x H x W (per pixel) of an N x 3 x H x W target: all 3 components finite, a non-zero vector."""
    finite = torch.isfinite(target).all(dim=1)
    norm2 = torch.where(torch.isfinite(target), target, torch.zeros_like(target)).pow(2).sum(dim=1)
    return finite & (norm2 > eps * eps)


class NormalsOptions(TaskOptions):
    """``options`` of a normals task."""

    angle_bin: Float = Field(0.01, gt=0, le=180, description="evaluation: width in degrees of the angle histogram")


class Normals(TaskKind):
    name = "normals"
    dense = True
    fixed_channels = 3
    losses = ("cosine", "angular")
    default_metrics = ("mean_angle", "median_angle")
    metric_names = ("mean_angle", "median_angle", "within_11.25", "within_22.5", "within_30")
    options_model = NormalsOptions
    uw_form = GAUSSIAN_UW
    draw_role = "map"
    draw_priority = 1
    fillable = True

    def read_label(self, spec, path, sources: LabelSources) -> np.ndarray:
        from ..data.io import read_normals

        return read_normals(path)

    def check_label(self, spec, value, image_hw, src) -> None:
        super().check_label(spec, value, image_hw, src)
        if np.ndim(value) != 3 or np.shape(value)[2] != 3:
            raise DataError(f"{src}: normals must be H x W x 3, got shape {np.shape(value)}")

    def label_to_tensor(self, spec, value) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(np.asarray(value, dtype=np.float32).transpose(2, 0, 1)))

    def fill(self, spec, h, w) -> torch.Tensor:
        return torch.full((3, h, w), float("nan"), dtype=torch.float32)

    def from_mask(self, spec, value, linear) -> np.ndarray:
        from ..data.transforms import reorient_normals

        return reorient_normals(value.astype(np.float32), linear)

    def valid(self, spec, target, present) -> torch.Tensor:
        return valid_normals(target) & per_sample(present, target)[:, 0]

    def metrics(self, spec):
        from ..evaluation.metrics import NormalsMetrics

        return NormalsMetrics(spec)

    def postprocess(self, spec, y) -> list:
        return list(F.normalize(y, dim=1, eps=1e-6).permute(0, 2, 3, 1).contiguous().cpu().numpy())

    def save(self, spec, value, out_dir, stem, style, options) -> dict:
        from ..data.io import write_png
        from ..visualize import normals_to_rgb

        path = out_dir / f"{stem}_{spec.name}.png"
        write_png(path, normals_to_rgb(value))
        return {spec.name: str(path)}

    def pseudolabel(self, spec, logits, options) -> np.ndarray:
        from ..data.io import encode_normals_png

        return encode_normals_png(F.normalize(logits.float(), dim=0).permute(1, 2, 0).cpu().numpy())

    def draw_map(self, spec, value, style: DrawStyle) -> list:
        from ..visualize import normals_to_rgb, put_label

        return [put_label(normals_to_rgb(value), spec.name, (3, 3), style.font_scale)]


NORMALS = register_kind(Normals())
