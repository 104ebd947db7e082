"""Semantic segmentation: C logits per pixel, class-id labels (``ignore_index`` = unlabelled)."""

from __future__ import annotations

from typing import Annotated, Optional

import numpy as np
import torch

from ..errors import ConfigError, DataError
from ..schema.types import Field, Int, Str, either, is_list
from .kind import (
    INIT_CLASSES_HELP,
    SOFTMAX_UW,
    DrawStyle,
    InitClasses,
    LabelSources,
    TaskKind,
    TaskOptions,
    per_sample,
    register_kind,
)


def check_class_ids(ids: np.ndarray, spec, src: str) -> None:
    """DataError naming ``src`` when ids are outside ``0..classes-1`` and not ``ignore_index``."""
    bad = (ids != spec.ignore_index) & ((ids < 0) | (ids >= spec.classes))
    if bad.any():
        values = np.unique(ids[bad])[:8].tolist()
        raise DataError(
            f"{src}: task {spec.name!r} has class ids {values} out of range "
            f"(valid 0..{spec.classes - 1}, ignore {spec.ignore_index})"
        )


def argmax_channels(y: torch.Tensor, dtype=torch.int64) -> torch.Tensor:
    """``y.argmax(1)`` of an ``N x C x H x W`` tensor, as ``dtype``, fast in either layout.

    On channels-last memory PyTorch's argmax is fast; on NCHW CPU tensors it reduces over a
    strided dimension (about 40 ms for 40 x 480 x 640 here), so there the channel maximum is
    taken first and each channel, last to first, marks where it reaches it: the first
    maximal index wins, as in ``argmax`` (about 4x faster).
    """
    if y.dim() != 4 or y.shape[1] == 1 or y.is_contiguous(memory_format=torch.channels_last) or y.device.type != "cpu":
        return y.argmax(1).to(dtype)
    top = y.amax(1)
    idx = torch.zeros(top.shape, dtype=dtype, device=y.device)
    for c in range(y.shape[1] - 1, 0, -1):
        idx.masked_fill_(y[:, c] == top, c)
    return idx


Channel = Annotated[Int, Field(ge=0, le=255)]
Palette = either(
    "a palette name or file (text), or rows of [R, G, B] from 0 to 255",
    text=(Str, lambda v: isinstance(v, str)),
    rows=(list[tuple[Channel, Channel, Channel]], is_list),
)


class SegmentationOptions(TaskOptions):
    """``options`` of a segmentation task."""

    init_classes: InitClasses = Field(None, description=INIT_CLASSES_HELP)
    palette: Optional[Palette] = Field(
        None, description="colours of the classes: a palette name, a file, or rows of [R, G, B] (null: the default)"
    )


def check_class_weights(spec, where: str) -> None:
    """ConfigError when ``loss_options.class_weights`` does not hold one weight per class."""
    weights = getattr(spec.loss_options, "class_weights", None)
    if weights is not None and len(weights) != spec.classes:
        raise ConfigError(f"{where}.loss_options.class_weights: {len(weights)} weights for {spec.classes} classes")


class Segmentation(TaskKind):
    name = "segmentation"
    dense = True
    size_field = "classes"
    losses = ("cross_entropy",)
    default_metrics = ("miou", "pixel_acc")
    metric_names = ("miou", "pixel_acc", "mean_acc", "iou")
    options_model = SegmentationOptions
    uw_form = SOFTMAX_UW
    draw_role = "overlay"
    fillable = True

    def check_spec(self, spec, where) -> None:
        check_class_weights(spec, where)
        rows = spec.options.palette
        if isinstance(rows, list) and len(rows) < spec.classes:
            raise ConfigError(f"{where}.options.palette: {len(rows)} colours for {spec.classes} classes")

    def read_label(self, spec, path, sources: LabelSources) -> np.ndarray:
        from ..data.io import read_segmentation

        return read_segmentation(path, sources.palette)

    def check_label(self, spec, value, image_hw, src) -> None:
        super().check_label(spec, value, image_hw, src)
        check_class_ids(np.asarray(value), spec, src)

    def label_to_tensor(self, spec, value) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(value, dtype=np.int64))

    def fill(self, spec, h, w) -> torch.Tensor:
        return torch.full((h, w), spec.ignore_index, dtype=torch.int64)

    def to_mask(self, spec, value) -> np.ndarray:
        return np.asarray(value, dtype=np.float32) + 1.0  # ignore_index + 1 stays > 0; padding (0) = ignore

    def from_mask(self, spec, value, linear) -> np.ndarray:
        ids = np.rint(value).astype(np.int64) - 1
        ids[ids < 0] = spec.ignore_index
        return ids

    def valid(self, spec, target, present) -> torch.Tensor:
        return (target != spec.ignore_index) & per_sample(present, target)

    def metrics(self, spec):
        from ..evaluation.metrics import SegmentationMetrics

        return SegmentationMetrics(spec)

    def to_average(self, spec, y):
        return y.softmax(1)  # probabilities are averaged, not logits

    def from_average(self, spec, average):
        return average.clamp_min(1e-12).log()  # softmax and argmax give the averaged probabilities back

    def postprocess(self, spec, y) -> list:
        dtype = torch.uint8 if spec.classes <= 256 else torch.int32
        return list(argmax_channels(y, dtype).cpu().numpy())

    def summarize(self, spec, value) -> dict:
        from ..visualize import class_names_for, present_classes

        names = class_names_for(spec)
        counts = np.bincount(value.ravel().astype(np.int64), minlength=spec.classes)
        total = float(value.size)
        return {
            "classes_present": [
                {"class_id": c, "name": names[c], "fraction": round(float(counts[c]) / total, 5)}
                for c in present_classes(value, spec.classes)
            ]
        }

    def describe(self, spec, summary) -> Optional[str]:
        top = summary["classes_present"][:3]
        return f"{spec.name}: " + ", ".join(f"{c['name']} {100 * c['fraction']:.0f}%" for c in top)

    def save(self, spec, value, out_dir, stem, style, options) -> dict:
        from ..data.io import write_png

        colours = out_dir / f"{stem}_{spec.name}.png"
        ids_file = out_dir / f"{stem}_{spec.name}_ids.png"
        write_png(colours, self.colour_mask(spec, value, style))
        write_png(ids_file, value.astype(np.uint8 if spec.classes <= 256 else np.uint16))
        return {spec.name: str(colours), f"{spec.name}_ids": str(ids_file)}

    def pseudolabel(self, spec, logits, options) -> np.ndarray:
        conf, ids = logits.float().softmax(0).max(0)
        ids = ids.to(torch.int64)
        if options.get("confidence") is not None:
            ids[conf < options["confidence"]] = spec.ignore_index
        wide = spec.classes >= 256 or spec.ignore_index >= 256
        return ids.cpu().numpy().astype(np.uint16 if wide else np.uint8)

    def _palette(self, spec, style: DrawStyle) -> np.ndarray:
        from ..visualize import resolve_palette

        key = ("palette", spec.name)
        if key not in style.cache:  # once per figure or video (a palette file is read once)
            style.cache[key] = resolve_palette(style.palette, spec)
        return style.cache[key]

    def colour_mask(self, spec, value, style: DrawStyle) -> np.ndarray:
        from ..visualize import colorize_segmentation

        return colorize_segmentation(value, self._palette(spec, style))

    def legend(self, spec, value, style: DrawStyle) -> tuple:
        from ..visualize import class_names_for, present_classes

        return present_classes(value, spec.classes), class_names_for(spec), self._palette(spec, style)


SEGMENTATION = register_kind(Segmentation())
