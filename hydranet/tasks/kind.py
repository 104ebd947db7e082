"""The task-kind interface: everything the rest of Hydranet asks of a kind, in one object.

A kind (segmentation, depth, ...) is a :class:`TaskKind` subclass in its own module,
registered with :func:`~hydranet.tasks.registry.register_kind`. Data loading, losses,
weighting, metrics, inference and drawing call its methods with the task's
:class:`~hydranet.tasks.TaskSpec`; none of them branches on a kind's name. This module is
the interface only: the built-in kinds are plug-ins above the library (:mod:`hydranet.kinds`,
one file each), and a new kind is one module plus one ``register_kind`` call.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Mapping, Optional

import numpy as np
import torch
from pydantic import BeforeValidator

from ..errors import DataError
from ..schema.types import Field, Float, Int, Name, Section

if TYPE_CHECKING:  # pragma: no cover  (annotations only: never imported at run time)
    from .spec import TaskSpec

__all__ = [
    "TaskKind",
    "ClassScoreKind",
    "DrawStyle",
    "LabelSources",
    "NoStyle",
    "per_sample",
    "NoOptions",
    "GlobalHeadOptions",
]

# The two uncertainty-weighting forms (Kendall et al. 2018; factors in hydranet.losses.weighting.UW_FORMS):
GAUSSIAN_UW = "regression"  # 1/(2 sigma^2) L + log sigma: L1/L2-type losses; optimum sigma^2 = L
SOFTMAX_UW = "classification"  # 1/sigma^2 L + log sigma: cross-entropy; optimum sigma^2 = 2 L


@dataclass(frozen=True)
class LabelSources:
    """How a data set's label files are read: its label options by name (e.g. ``palette`` of
    colour masks, ``depth_scale`` of depth PNGs). Each kind reads the options it knows, with
    its own default for a missing one (:meth:`get`)."""

    options: Mapping[str, Any] = field(default_factory=dict)

    def get(self, key: str, default: Any = None) -> Any:
        """The option ``key``, or ``default`` when the data set does not set it (absent or None)."""
        value = self.options.get(key)
        return default if value is None else value


@dataclass(frozen=True)
class NoStyle:
    """The drawing options of a kind that has none of its own."""


@dataclass
class DrawStyle:
    """Drawing options of one figure or video, shared by the kinds' ``draw_*`` and ``save`` methods.

    ``kinds`` holds each kind's own options (its :attr:`TaskKind.style_model`, e.g. the depth
    colour map), by kind name; :meth:`of` gives a kind its own or their defaults. ``cache``
    holds what a kind keeps between the frames of a video (with ``fixed_range``, the first
    frame's colour scale, so that colours do not jump from frame to frame).
    """

    config: dict = field(default_factory=dict)
    alpha: float = 0.5
    font_scale: float = 0.45
    fixed_range: bool = False  # video: each kind keeps its first frame's scale
    kinds: dict = field(default_factory=dict)
    cache: dict = field(default_factory=dict)

    def of(self, kind: TaskKind) -> Any:
        """``kind``'s own drawing options: as given in ``kinds``, else its style model's defaults."""
        style = self.kinds.get(kind.name)
        return kind.style_model() if style is None else style


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
        style_model: the dataclass of the kind's own drawing options (:meth:`DrawStyle.of`).
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
    style_model: ClassVar[type] = NoStyle

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
        """A fresh metric accumulator for the task (a ``hydranet.evaluation.metrics.MetricAccumulator``)."""
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

    def save(self, spec: TaskSpec, value: Any, out_dir, stem: str, style: DrawStyle) -> dict:
        """Write a dense result's files (``hydranet predict``); returns ``{label: path}``."""
        return {}

    def pseudolabel(self, spec: TaskSpec, logits: torch.Tensor, settings: Any) -> np.ndarray:
        """A teacher's output for one image (C x H x W) as the array of a label file;
        ``settings``: the typed pseudo-labelling settings (``depth_scale``, ``confidence``)."""
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


class ClassScoreKind(TaskKind):
    """A kind whose head scores classes (segmentation per pixel, classification per image):
    the ignore index marks missing labels, and test-time augmentation averages probabilities."""

    def valid(self, spec: TaskSpec, target: torch.Tensor, present: Optional[torch.Tensor]) -> torch.Tensor:
        return (target != spec.ignore_index) & per_sample(present, target)

    def to_average(self, spec: TaskSpec, y: torch.Tensor) -> torch.Tensor:
        return y.softmax(1)  # probabilities are averaged, not logits

    def from_average(self, spec: TaskSpec, average: torch.Tensor) -> torch.Tensor:
        return average.clamp_min(1e-12).log()  # softmax and argmax give the averaged probabilities back
