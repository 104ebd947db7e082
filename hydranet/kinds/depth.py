"""Depth: one value per pixel in metres (the absolute value of the head's output).

Labels: float32 metres, 0 / negative / NaN = no measurement (sparse KITTI depth is normal);
depth PNGs hold ``metres x depth_scale`` (the data set's ``depth_scale``, NYUD's by default).
This module is the whole kind: its options, label files, metrics, drawing and files.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import Literal, Optional

import numpy as np
import torch
from pydantic import model_validator

from ..data.io import NYUD_DEPTH_SCALE, read_depth, write_bytes_atomic, write_png
from ..errors import ConfigError, DataError
from ..evaluation.metrics import MetricAccumulator
from ..schema.types import Bool, Field, Float
from ..tasks import TaskSpec
from ..tasks.kind import GAUSSIAN_UW, DrawStyle, LabelSources, TaskKind, TaskOptions, per_sample
from ..tasks.registry import register_kind
from ..visualize import colorize_depth, depth_scale_bar, hstack, nice_ceil, put_label

FALLBACK_MAX_DEPTH = 10.0  # the colour range when neither the task nor the frame says more


def depth_to_png_mm(depth: np.ndarray) -> np.ndarray:
    """Depth in metres -> uint16 millimetres ``round(depth * 1000)`` (0 = invalid; saturates at 65.535 m)."""
    d = np.where(np.isfinite(depth) & (depth > 0), depth, 0.0).astype(np.float64)
    return np.clip(np.rint(d * 1000.0), 0, 65535).astype(np.uint16)


def max_depth_for(task=None, config: Optional[dict] = None) -> Optional[float]:
    """The depth range to draw for a depth task: ``options.display_max_depth``, then
    ``options.max_depth``, then the checkpoint meta's ``depth.max_depth``; None if unknown."""
    opts = getattr(task, "options", None)
    for key in ("display_max_depth", "max_depth"):
        value = getattr(opts, key, None)
        if value:
            return value
    meta = (config or {}).get("meta") or {}
    depth_meta = meta.get("depth") or {}
    if depth_meta.get("max_depth"):
        return float(depth_meta["max_depth"])
    return None


def display_max_depth(
    spec, config: Optional[dict], depth: Optional[np.ndarray] = None, override: Optional[float] = None
) -> float:
    """The top of the depth colour scale: ``override``, else the task's/checkpoint's
    ``max_depth``, else the 99th percentile of ``depth`` rounded up to a readable value."""
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

# Fractional KITTI crops (rows top, rows bottom, cols left, cols right), as in the
# evaluation code of Garg et al. 2016 and Eigen et al. 2014 (monodepth / monodepth2).
_KITTI_CROPS = {
    "garg": (0.40810811, 0.99189189, 0.03594771, 0.96405229),
    "eigen": (0.3324324, 0.91351351, 0.0359477, 0.96405229),
}
# NYUDv2 Eigen crop: rows 45:471, cols 41:601 of the 480 x 640 frame.
_NYU_CROP = (45, 471, 41, 601)
_NYU_SIZE = (480, 640)


def _round_half_up(x: float) -> int:
    return int(math.floor(x + 0.5))


def depth_crop_mask(
    crop: Optional[str], height: int, width: int, device: Optional[torch.device] = None
) -> torch.Tensor:
    """Bool ``height x width`` mask of the pixels a depth evaluation crop keeps.

    Args:
        crop: ``"garg"`` or ``"eigen"`` (KITTI, fractions of the image size, truncated
            to integers as the reference code does), ``"nyu"`` (rows 45:471, cols
            41:601 of a 480 x 640 frame; for other sizes the bounds are scaled and
            rounded half up) or None
            (every pixel).
    """
    mask = torch.zeros(height, width, dtype=torch.bool, device=device)
    if crop is None:
        mask[:] = True
        return mask
    if crop in _KITTI_CROPS:
        t, b, l, r = _KITTI_CROPS[crop]
        r0, r1 = int(t * height), int(b * height)
        c0, c1 = int(l * width), int(r * width)
    elif crop == "nyu":
        t, b, l, r = _NYU_CROP
        sh, sw = height / _NYU_SIZE[0], width / _NYU_SIZE[1]
        r0, r1 = _round_half_up(t * sh), _round_half_up(b * sh)
        c0, c1 = _round_half_up(l * sw), _round_half_up(r * sw)
    else:
        raise ConfigError(f"depth crop: unknown crop {crop!r}; valid: {', '.join(DEPTH_CROPS)} or None")
    mask[r0:r1, c0:c1] = True
    return mask


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


class DepthMetrics(MetricAccumulator):
    """Standard monocular depth errors over the whole set, averaged per image by default.

    Per-pixel terms, ``d`` = prediction, ``g`` = ground truth, in metres:

        abs_rel = |d - g| / g        sq_rel = (d - g)^2 / g     rmse: (d - g)^2
        rmse_log: (ln d - ln g)^2    log10 = |log10 d - log10 g|
        delta1/2/3: max(d / g, g / d) < 1.25, 1.25^2, 1.25^3 (fraction of pixels)

    ``options.average``:
        ``image`` (default): each metric is computed per image over its valid pixels
        (RMSE = sqrt of the image's mean squared error) and then averaged over the images
        with at least one valid pixel, as BTS, AdaBins, Monodepth2 and the NYUD/KITTI
        tables report. Image A with 100 pixels at abs rel 0.05 and image B with 10 000 at
        0.20 give 0.125.
        ``pixel``: pooled over every valid pixel of the set (RMSE = sqrt(total squared
        error / count)); the same two images give (5 + 2000) / 10100 = 0.1985.
    The result holds ``average`` (which one) and ``pixels`` (valid pixels counted).

    Other options (``spec.options``):
        ``min_depth`` (default 1e-3) and ``max_depth`` (default None = no cap; NYUD
        uses 10, KITTI 80): pixels are valid where min_depth < g < max_depth (the
        usual evaluation convention), predictions are clamped to
        [min_depth, max_depth]. Ground truth that is 0, negative or NaN is invalid.
        ``crop``: ``"garg"``, ``"eigen"`` (KITTI) or ``"nyu"``, see
        :func:`depth_crop_mask`; default None.
        ``median_scaling`` (default False): multiply each image's prediction by
        median(g) / median(d) over its valid pixels (for scale-ambiguous models),
        before clamping.

    The prediction's absolute value is used: the depth head's raw output is metres
    up to sign. A NaN prediction on a valid pixel makes every metric NaN (deltas too).
    """

    kind = "depth"
    _state = ("sums", "count", "image_sums", "images")
    # order of the per-pixel sums
    _TERMS = ("abs_rel", "sq_rel", "sq_err", "sq_log", "log10", "delta1", "delta2", "delta3")
    _METRICS = ("abs_rel", "sq_rel", "rmse", "rmse_log", "log10", "delta1", "delta2", "delta3")
    DIRECTIONS = {
        "abs_rel": "lower",
        "sq_rel": "lower",
        "rmse": "lower",
        "rmse_log": "lower",
        "log10": "lower",
        "delta1": "higher",
        "delta2": "higher",
        "delta3": "higher",
    }
    AVERAGES = ("image", "pixel")

    def __init__(self, spec: TaskSpec):
        opts = spec.options  # typed and checked by the task's schema (DepthOptions above)
        self.min_depth = opts.min_depth
        self.max_depth = opts.max_depth
        self.crop = opts.crop
        self.average = opts.average
        self.median_scaling = opts.median_scaling
        super().__init__(spec)

    def _reset(self) -> None:
        self.sums = torch.zeros(len(self._TERMS), dtype=torch.float64)
        self.count = torch.zeros((), dtype=torch.int64)
        self.image_sums = torch.zeros(len(self._METRICS), dtype=torch.float64)
        self.images = torch.zeros((), dtype=torch.int64)

    def valid_mask(self, target: torch.Tensor) -> torch.Tensor:
        """Bool mask (same shape as ``target``, N x 1 x H x W) of the evaluated pixels."""
        valid = torch.isfinite(target) & (target > self.min_depth)
        if self.max_depth is not None:
            valid &= target < self.max_depth
        if self.crop is not None:
            valid &= depth_crop_mask(self.crop, target.shape[-2], target.shape[-1], target.device)
        return valid

    def update(self, pred, target, present=None) -> None:
        if target.dim() == 3:
            target = target[:, None]
        if pred.dim() == 3:
            pred = pred[:, None]
        if target.dim() != 4 or target.shape[1] != 1 or pred.dim() != 4 or pred.shape[1] != 1:
            raise ValueError(
                f"task {self.name!r}: depth prediction and target must be N x 1 x H x W, "
                f"got {tuple(pred.shape)} and {tuple(target.shape)}"
            )
        target, present = self._dense_inputs(pred, target, present)
        valid = self.valid_mask(target) & present[:, None, None, None]

        d = pred.detach().float().abs()
        if self.median_scaling:
            d = self._median_scale(d, target, valid)
        d = d.clamp(min=self.min_depth, max=self.max_depth)
        # Invalid pixels get d = g = 1 so every term there is exactly 0 (and no inf/NaN
        # from the invalid ground truth); the deltas are masked explicitly.
        one = torch.ones((), device=pred.device)
        d = torch.where(valid, d, one)
        g = torch.where(valid, target, one)
        diff = d - g
        ratio = torch.maximum(d / g, g / d)
        vf = valid.to(torch.float32)

        def delta(t):  # a NaN ratio (NaN prediction) stays NaN instead of counting as a miss
            return torch.where(torch.isnan(ratio), ratio, (ratio < t).to(ratio.dtype)) * vf

        terms = (
            torch.stack(
                [
                    diff.abs() / g,
                    diff.square() / g,
                    diff.square(),
                    (d.log() - g.log()).square(),
                    (d.log10() - g.log10()).abs(),
                    delta(1.25),
                    delta(1.25**2),
                    delta(1.25**3),
                ]
            )
            .flatten(2)
            .to(torch.float64)
        )  # 8 x N x pixels
        per_image = terms.sum(dim=2)  # 8 x N
        self.sums += per_image.sum(dim=1)
        pixels = valid.flatten(1).sum(dim=1)  # N
        self.count += pixels.sum()
        has = pixels > 0
        means = per_image[:, has] / pixels[has]
        means[2:4] = means[2:4].sqrt()  # per-image RMSE and RMSE log
        self.image_sums += means.sum(dim=1)
        self.images += has.sum()
        self.samples += present.sum()

    @staticmethod
    def _median_scale(d, target, valid):
        scaled = []
        for i in range(d.shape[0]):
            m = valid[i].reshape(-1)
            gi = torch.where(m, target[i].reshape(-1), torch.nan)
            di = torch.where(m, d[i].reshape(-1), torch.nan)
            ratio = torch.nanquantile(gi, 0.5) / torch.nanquantile(di.clamp(min=1e-12), 0.5)
            scaled.append(d[i] * ratio)  # NaN ratio (no valid pixel) only touches masked pixels
        return torch.stack(scaled)

    def compute(self) -> dict:
        out: dict = {"samples": int(self.samples)}
        n = int(self.count)
        if n == 0:
            return out
        if self.average == "image":
            values = (self.image_sums.detach().cpu() / int(self.images)).tolist()
        else:
            mean = (self.sums.detach().cpu() / n).tolist()
            mean[2], mean[3] = math.sqrt(mean[2]), math.sqrt(mean[3])
            values = mean
        out.update(zip(self._METRICS, values))
        out.update(pixels=n, average=self.average)
        return out


@dataclass(frozen=True)
class DepthStyle:
    """How depth is drawn and written: the colour scale and the raw file's format."""

    max_depth: Optional[float] = None  # top of the colour scale (None: the task's, else the frame's)
    cmap: str = "magma"  # one of hydranet.visualize.DEPTH_CMAPS
    raw_format: Literal["png", "npy"] = "png"  # predict: uint16 millimetres, or float32 metres


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
    style_model = DepthStyle

    def read_label(self, spec, path, sources: LabelSources) -> np.ndarray:
        return read_depth(path, sources.get("depth_scale", NYUD_DEPTH_SCALE))

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

    def save(self, spec, value, out_dir, stem, style) -> dict:
        own = style.of(self)
        coloured = out_dir / f"{stem}_{spec.name}.png"
        top = display_max_depth(spec, style.config, value, own.max_depth)
        write_png(
            coloured, hstack([colorize_depth(value, top, own.cmap), depth_scale_bar(value.shape[0], top, own.cmap)])
        )
        if own.raw_format == "png":
            raw = out_dir / f"{stem}_{spec.name}_mm.png"
            write_png(raw, depth_to_png_mm(value))
        else:
            raw = out_dir / f"{stem}_{spec.name}.npy"
            buffer = io.BytesIO()  # written atomically: no partial file on a full disk
            np.save(buffer, value.astype(np.float32))
            write_bytes_atomic(raw, buffer.getvalue())
        return {spec.name: str(coloured), f"{spec.name}_raw": str(raw)}

    def pseudolabel(self, spec, logits, settings) -> np.ndarray:
        metres = logits[0].float().abs().cpu().numpy()
        return np.clip(np.round(metres * settings.depth_scale), 0, 65535).astype(np.uint16)

    def draw_map(self, spec, value, style: DrawStyle) -> list:
        own = style.of(self)
        h = value.shape[0]
        key = spec.name
        if style.fixed_range and key in style.cache:
            top, bar = style.cache[key]
        else:
            top = display_max_depth(spec, style.config, value, own.max_depth)
            bar = depth_scale_bar(h, top, own.cmap, font_scale=style.font_scale)
            style.cache[key] = (top, bar)
        panel = put_label(colorize_depth(value, top, own.cmap), spec.name, (3, 3), style.font_scale)
        return [panel, bar]


DEPTH = register_kind(Depth())
