"""The task-kind interface: everything the rest of Hydranet asks of a kind, in one object.

A kind (segmentation, depth, ...) is a :class:`TaskKind` subclass in its own module,
registered with :func:`register_kind`. Data loading, losses, weighting, metrics, inference
and drawing call its methods with the task's :class:`~hydranet.tasks.TaskSpec`; none of
them branches on a kind's name. A new kind is one module plus one ``register_kind`` call
(see ``tests/test_task_kinds.py`` for a toy kind defined in a test).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BeforeValidator

from ..errors import ConfigError, DataError
from ..schema.registry import register_options
from ..schema.types import Field, Float, Int, Name, Section

if TYPE_CHECKING:  # pragma: no cover
    from .spec import TaskSpec

__all__ = [
    "TaskKind",
    "DrawStyle",
    "LabelSources",
    "KINDS",
    "register_kind",
    "get_kind",
    "per_sample",
    "NoOptions",
    "GlobalHeadOptions",
]

# The two uncertainty-weighting forms (Kendall et al. 2018; factors in hydranet.losses.weighting.UW_FORMS):
GAUSSIAN_UW = "regression"  # 1/(2 sigma^2) L + log sigma: L1/L2-type losses; optimum sigma^2 = L
SOFTMAX_UW = "classification"  # 1/sigma^2 L + log sigma: cross-entropy; optimum sigma^2 = 2 L


@dataclass
class LabelSources:
    """How a dataset's label files are read: the palette of colour masks, depth units."""

    palette: Optional[np.ndarray] = None
    depth_scale: float = 5000.0  # hydranet.data.io.NYUD_DEPTH_SCALE (not imported: data imports tasks)


@dataclass
class DrawStyle:
    """Drawing options shared by the kinds' ``draw_*`` methods (one per figure or video).

    ``cache`` holds what a kind wants to keep between frames of a video (a fixed depth range
    and its scale bar, so colours do not jump from frame to frame).
    """

    config: dict = field(default_factory=dict)
    max_depth: Optional[float] = None
    cmap: str = "magma"
    alpha: float = 0.5
    font_scale: float = 0.45
    fixed_range: bool = False  # video: keep the first frame's range
    palette: Any = None  # segmentation colours overriding the checkpoint's (resolve_palette)
    cache: dict = field(default_factory=dict)


class TaskOptions(Section):
    """``options`` every task kind takes."""

    init_from: Optional[Name] = Field(
        None, description="train.init: this head starts from the source's head of this task (null: the same name)"
    )


def _int_keys(value: Any) -> Any:
    """``{"3": 5}`` (JSON has text keys: a config that went through a checkpoint) as ``{3: 5}``."""
    if isinstance(value, dict):
        return {int(k) if isinstance(k, str) and k.strip().isdigit() else k: v for k, v in value.items()}
    return value


InitClasses = Optional[
    Annotated[dict[Annotated[Int, Field(ge=0)], Annotated[Int, Field(ge=0)]], BeforeValidator(_int_keys)]
]
INIT_CLASSES_HELP = (
    "train.init: {new class id: source class id} for this head's classes (besides equal class names; "
    "the rest start fresh)"
)


class NoOptions(TaskOptions):
    """This kind takes no ``options`` of its own."""


MAX_HIDDEN = 65_536


class GlobalHeadOptions(TaskOptions):
    """``options`` of an image-level head (classification, regression)."""

    hidden: Int = Field(0, ge=0, le=MAX_HIDDEN, description="hidden units of the head's MLP (0: one linear layer)")
    dropout: Float = Field(0.0, ge=0, lt=1, description="dropout before the head's last layer")


def per_sample(present: Optional[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
    """``present`` (N bools, or None = all) reshaped to broadcast against ``target``."""
    n = target.shape[0]
    if present is None:
        return torch.ones(n, dtype=torch.bool, device=target.device).view(n, *[1] * (target.dim() - 1))
    present = torch.as_tensor(present, device=target.device).bool()
    if present.shape != (n,):
        raise ValueError(f"present must have shape ({n},) (one flag per sample), got {tuple(present.shape)}")
    return present.view(n, *[1] * (target.dim() - 1))


class TaskKind:
    """Base class of the task kinds. Class attributes describe the kind; methods take the spec.

    Attributes:
        name: the ``kind`` string of a task config.
        dense: one value per pixel (read from the decoder) or per image (pooled encoder feature).
        size_field: the spec field holding the channel count (``classes``, ``outputs``), or None.
        fixed_channels: the channel count when ``size_field`` is None.
        losses: the loss names the kind accepts (``hydranet.losses.LOSSES``); the first is the default.
        default_metrics: the metric names reported when the task names none.
        uw_form: the uncertainty-weighting form (Gaussian ``"regression"`` or softmax ``"classification"``).
        draw_role: ``"overlay"`` (blended over the frame), ``"map"`` (a panel of its own) or None.
        draw_priority: among ``"map"`` kinds, the lower is drawn when only one panel fits.
        fillable: a teacher's prediction can stand in for a missing label (pseudo-labels).
        vocabulary: image-level labels may be class names, looked up in a class vocabulary.
        options_model: the schema of the task's ``options`` (a :class:`~hydranet.schema.Section`).
        metric_names: the metrics the kind reports (``metrics`` entries are these, or ``name/part``).
    """

    name: ClassVar[str] = ""
    dense: ClassVar[bool] = True
    size_field: ClassVar[Optional[str]] = None
    fixed_channels: ClassVar[Optional[int]] = None
    losses: ClassVar[tuple] = ()
    default_metrics: ClassVar[tuple] = ()
    uw_form: ClassVar[str] = GAUSSIAN_UW
    draw_role: ClassVar[Optional[str]] = None
    draw_priority: ClassVar[int] = 100
    fillable: ClassVar[bool] = False
    vocabulary: ClassVar[bool] = False
    options_model: ClassVar[type] = NoOptions
    metric_names: ClassVar[tuple] = ()

    # ------------------------------------------------------------------ the head
    def channels(self, spec: TaskSpec) -> int:
        return self.fixed_channels if self.size_field is None else getattr(spec, self.size_field)

    def check_spec(self, spec: TaskSpec, where: str) -> None:
        """Checks across the fields of a parsed task (e.g. a list option's length against
        ``outputs``); ConfigError naming the field under ``where`` (e.g. ``tasks[1]``)."""

    # ------------------------------------------------------------------ data
    def read_label(self, spec: TaskSpec, path, sources: LabelSources) -> np.ndarray:
        """A dense label from its file (dense kinds)."""
        raise DataError(f"task {spec.name!r}: {self.name} labels are not read from files")

    def parse_value(self, spec: TaskSpec, value: Any, where: str, vocabulary: Optional[dict] = None) -> Any:
        """An image-level label from list-file text or a JSON value (image-level kinds)."""
        raise DataError(f"{where}: task {spec.name!r} ({self.name}) takes a label file path, got {value!r}")

    def check_label(self, spec: TaskSpec, value: Any, image_hw: tuple, src: str) -> None:
        """DataError naming ``src`` when a raw label does not fit the spec (its size against
        the image's is checked before, for every dense kind alike)."""

    def label_to_tensor(self, spec: TaskSpec, value: Any) -> torch.Tensor:
        """One raw label -> its tensor form (a dataset item's entry)."""
        raise NotImplementedError

    def fill(self, spec: TaskSpec, h: int, w: int) -> torch.Tensor:
        """The invalid stand-in for a missing label, so that a batch stacks."""
        raise NotImplementedError

    def to_mask(self, spec: TaskSpec, value: np.ndarray) -> np.ndarray:
        """A dense label as a float32 mask for joint augmentation (0 = fill of padding)."""
        return np.ascontiguousarray(value, dtype=np.float32)

    def from_mask(self, spec: TaskSpec, value: np.ndarray, linear: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`to_mask` after augmentation; ``linear`` is the applied 2x2 map."""
        return value.astype(np.float32)

    # ------------------------------------------------------------------ losses
    def valid(self, spec: TaskSpec, target: torch.Tensor, present: Optional[torch.Tensor]) -> torch.Tensor:
        """Mask of the elements that carry a label (broadcastable to the loss's terms)."""
        raise NotImplementedError

    def loss_target(self, spec: TaskSpec, target: torch.Tensor) -> torch.Tensor:
        """The batch target in the form and units the head is trained on."""
        return target

    def normalize(self, spec: TaskSpec, y: torch.Tensor) -> torch.Tensor:
        """A target in the head's units (identity unless the kind normalises targets)."""
        return y

    def denormalize(self, spec: TaskSpec, pred: torch.Tensor) -> torch.Tensor:
        """A prediction in the target's units (inverse of any target normalisation)."""
        return pred

    # ------------------------------------------------------------------ evaluation
    def metrics(self, spec: TaskSpec):
        """A fresh metric accumulator for the task (``hydranet.evaluation.metrics``)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ inference
    def postprocess(self, spec: TaskSpec, y: torch.Tensor) -> list:
        """The network output of a batch (dense: at frame size, float) -> one result per frame."""
        raise NotImplementedError

    def to_average(self, spec: TaskSpec, y: torch.Tensor) -> torch.Tensor:
        """What temporal smoothing averages over video frames (the raw output by default)."""
        return y

    def from_average(self, spec: TaskSpec, average: torch.Tensor) -> torch.Tensor:
        """An average of :meth:`to_average` back in the form :meth:`postprocess` takes."""
        return average

    def summarize(self, spec: TaskSpec, value: Any) -> Any:
        """A result as plain data for JSON."""
        return {"shape": list(np.shape(value))}

    def describe(self, spec: TaskSpec, summary: Any) -> Optional[str]:
        """One short phrase for a log line, or None."""
        return None

    def save(self, spec: TaskSpec, value: Any, out_dir, stem: str, style: DrawStyle, options: dict) -> dict:
        """Write a dense result's files (``hydranet predict``); returns ``{label: path}``."""
        return {}

    def pseudolabel(self, spec: TaskSpec, logits: torch.Tensor, options: dict) -> np.ndarray:
        """A teacher's output for one image (C x H x W) as the array of a label file."""
        raise DataError(f"task {spec.name!r}: {self.name} labels cannot be filled by a teacher")

    # ------------------------------------------------------------------ drawing
    def draw_map(self, spec: TaskSpec, value: Any, style: DrawStyle) -> list:
        """Panels (RGB uint8) of a ``"map"`` kind's result, the colour scale included."""
        return []

    def colour_mask(self, spec: TaskSpec, value: Any, style: DrawStyle) -> np.ndarray:
        """An ``"overlay"`` kind's colours, to blend over the frame."""
        raise NotImplementedError

    def legend(self, spec: TaskSpec, value: Any, style: DrawStyle) -> Optional[tuple]:
        """``(ids present, names, palette)`` for a legend, or None."""
        return None

    def __repr__(self) -> str:
        return f"<task kind {self.name!r}>"


# ---------------------------------------------------------------------- registry

KINDS: dict[str, TaskKind] = {}


def register_kind(kind: TaskKind) -> TaskKind:
    """Make ``kind`` available to task configs under ``kind.name``; checks it is complete."""
    if not isinstance(kind, TaskKind) or not kind.name:
        raise ConfigError(f"register_kind: {kind!r} is not a named TaskKind instance")
    if kind.size_field is None and not kind.fixed_channels:
        raise ConfigError(f"task kind {kind.name!r}: needs size_field or fixed_channels")
    if not kind.losses or not kind.default_metrics:
        raise ConfigError(f"task kind {kind.name!r}: needs losses and default_metrics")
    KINDS[kind.name] = kind
    register_options("task", kind.name, kind.options_model)
    return kind


def get_kind(name: str) -> TaskKind:
    try:
        return KINDS[name]
    except KeyError:
        raise ConfigError(f"unknown task kind {name!r}; valid kinds: {', '.join(KINDS)}") from None


def resize_dense(y: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Bilinear resize (align_corners=False) of an N x C x h x w output to ``size``."""
    if tuple(y.shape[-2:]) == tuple(size):
        return y
    return F.interpolate(y, size=tuple(size), mode="bilinear", align_corners=False)
