"""The sections of a config that do not depend on a plug-in: model, train, loss, transforms, meta.

What varies by plug-in (a task kind's ``options``, a loss's ``loss_options``, a data set
type's options, a weighting's ``loss.options``, an encoder's ``encoder_options``) is
declared by the plug-in next to its code and registered with it; see
:mod:`hydranet.schema.config` for how the parts are put together.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Optional, Union

from pydantic import BeforeValidator, Field, model_validator

from ..limits import MAX_BATCH, MAX_SCALE, MAX_WORKERS
from .types import Bool, Float, Int, Name, OpenSection, PixelSize, Section, Str, either, is_list, is_mapping, is_number

MAX_WIDTH = 4096  # decoder channels; far above any real model, far below an allocation attack
MAX_CRP_STAGES = 16


class ModelSection(Section):
    """``model``: the network's architecture (what a checkpoint fixes)."""

    encoder: Name = Field("mobilenet_v2", description="encoder name (see `hydranet summary`), or timm:MODEL")
    encoder_weights: Optional[Str] = Field(
        None, description="pretrained encoder weights: null (random), 'imagenet', or a local state-dict file"
    )
    encoder_options: Any = Field(default_factory=dict, description="the encoder's own options (see the encoder tables)")
    decoder: Name = Field("lightweight", description="decoder: lightweight (Light-Weight RefineNet) or refinenet")
    width: Int = Field(256, ge=1, le=MAX_WIDTH, description="decoder channels")
    crp_stages: Optional[Int] = Field(
        None, ge=1, le=MAX_CRP_STAGES, description="chained residual pooling stages (null: the decoder's default)"
    )


def _pair_of_numbers(value: Any) -> Any:
    if isinstance(value, (int, float, str)) and not isinstance(value, bool):
        return [value, value]
    return value


class ColorJitter(Section):
    """``transforms.color_jitter`` as a mapping: each strength in [0, ...), ``p`` the probability."""

    brightness: Float = Field(0.0, ge=0, le=1, description="brightness factor range 1 +- value")
    contrast: Float = Field(0.0, ge=0, le=1, description="contrast factor range 1 +- value")
    saturation: Float = Field(0.0, ge=0, le=1, description="saturation factor range 1 +- value")
    hue: Float = Field(0.0, ge=0, le=0.5, description="hue shift range +- value")
    p: Float = Field(0.8, ge=0, le=1, description="probability of applying the jitter")


class TransformsSection(Section):
    """``data.<split>.transforms``: augmentation (train) and resizing (eval)."""

    size: Optional[PixelSize] = Field(
        None, description="[height, width] of the crop (train) or of the resize (eval); one integer for a square"
    )
    scale: Optional[
        Annotated[tuple[Float, Float], BeforeValidator(_pair_of_numbers), Field(description="[low, high]")]
    ] = Field(None, description=f"random rescale factors [low, high], 0 < low <= high <= {MAX_SCALE:g} (train)")
    hflip: Float = Field(0.5, ge=0, le=1, description="probability of a horizontal flip (train)")
    rotate: Float = Field(0.0, ge=0, le=180, description="maximum rotation in degrees (train)")
    color_jitter: either(
        "one strength (a number) or a mapping of brightness, contrast, saturation, hue, p",
        number=(Float, is_number),
        mapping=(ColorJitter, is_mapping),
    ) = Field(0.0, description="photometric jitter: one strength >= 0, or a mapping (brightness, contrast, ...)")
    eval_resize: Bool = Field(True, description="eval: resize to size (false: keep the image's own size)")
    seed: Optional[Int] = Field(None, ge=0, description="seed of the augmentation (null: from the sample)")

    @model_validator(mode="after")
    def _check(self) -> TransformsSection:
        if self.scale is not None and not 0 < self.scale[0] <= self.scale[1] <= MAX_SCALE:
            raise ValueError(f"scale: need 0 < low <= high <= {MAX_SCALE:g}, got {list(self.scale)}")
        if isinstance(self.color_jitter, float) and self.color_jitter < 0:
            raise ValueError(f"color_jitter: must be >= 0, got {self.color_jitter}")
        return self


MAX_LR = 100.0  # learning rates: no real run comes near; far beyond, a step overflows float32


class TrainSection(Section):
    """``train``: the optimisation (read by ``hydranet train``)."""

    steps: Int = Field(2000, ge=1, description="optimiser steps")
    batch_size: Int = Field(8, ge=1, le=MAX_BATCH, description="images per optimiser micro-batch (per process)")
    optimizer: Literal["adamw", "sgd"] = Field("adamw", description="adamw, or sgd (Nesterov momentum)")
    lr: Float = Field(1e-3, gt=0, le=MAX_LR, description="learning rate of the decoder and heads")
    encoder_lr: Optional[Float] = Field(
        None, ge=0, le=MAX_LR, description="encoder learning rate (null: lr x encoder_lr_mult)"
    )
    encoder_lr_mult: Float = Field(0.1, ge=0, le=1000, description="encoder learning rate as a fraction of lr")
    weight_decay: Float = Field(1e-4, ge=0, description="weight decay (decoupled for adamw)")
    momentum: Float = Field(0.9, ge=0, le=1, description="SGD momentum (> 0 with sgd)")
    schedule: Literal["poly", "cosine", "constant"] = Field("poly", description="learning-rate schedule")
    poly_power: Float = Field(0.9, gt=0, description="exponent of the poly schedule")
    warmup_steps: Int = Field(0, ge=0, description="linear warm-up steps")
    accumulate: Int = Field(1, ge=1, description="micro-batches per optimiser step")
    amp: Literal["none", "fp16", "bf16"] = Field("none", description="mixed precision (CUDA only)")
    channels_last: Union[Bool, Literal["auto", "decoder"]] = Field(
        "auto",
        description="NHWC memory layout: true (the whole model and its inputs), decoder (the decoder and heads; "
        "the encoder and its BatchNorm layers stay NCHW), false, or auto: decoder on CPU (about 2x faster steps, "
        "gradients as exact as NCHW; see docs/benchmarks.md), false on CUDA",
    )
    compile: Bool = Field(False, description="torch.compile the training forward")
    max_grad_norm: Optional[Float] = Field(None, gt=0, description="global gradient clipping (null: none)")
    val_every: Int = Field(500, ge=1, description="steps between validations (and best.pt updates)")
    ckpt_every: Int = Field(500, ge=1, description="steps between last.pt writes (also written at the end)")
    log_every: Int = Field(
        1,
        ge=1,
        description="steps between step records in log.jsonl and steps.csv (1: every step; first and last always kept)",
    )
    monitor: Str = Field("loss", description="'loss' (validation loss, lower is better) or 'task/metric'")
    on_nan: Literal["stop", "skip"] = Field("stop", description="a non-finite loss: stop the run or skip the step")
    max_skipped: Float = Field(
        0.5, ge=0, le=1, description="on_nan skip: a run that skipped more than this fraction of its steps fails"
    )
    sync_bn: Bool = Field(False, description="SyncBatchNorm over the processes (torchrun on CUDA only)")
    freeze_bn: Bool = Field(False, description="BatchNorm layers in eval mode: fixed running statistics")
    init: Optional[Str] = Field(
        None,
        description="start a new run from a model: a Hydranet checkpoint, an original Multi-Task RefineNet file or a "
        "known model name (mtrn-nyud-joint ...); tensors copied by name where shapes match (docs/training.md)",
    )
    init_strict: Bool = Field(False, description="train.init: refuse to skip any tensor (a shape mismatch)")
    freeze: Annotated[list[Name], BeforeValidator(lambda v: [v] if isinstance(v, str) else v)] = Field(
        default_factory=list,
        description="module paths kept fixed (no gradient, BatchNorm in eval mode): encoder, decoder, heads.segm, ...",
    )
    cache_features: Bool = Field(
        False, description="encoder and decoder frozen, no random augmentation: their output computed once, on disk"
    )
    cache_max_gb: Float = Field(16.0, gt=0, description="train.cache_features: refuse a cache larger than this (GB)")
    seed: Int = Field(0, ge=0, description="seed of the run (data order, augmentation, initialisation)")
    workers: Int = Field(0, ge=0, le=MAX_WORKERS, description="data-loader worker processes")
    plots: Bool = Field(True, description="write the training-curve figures at the end")
    tensorboard: Bool = Field(True, description="write TensorBoard events (when tensorboard is installed)")

    @model_validator(mode="after")
    def _check(self) -> TrainSection:
        if self.sync_bn and self.freeze_bn:
            raise ValueError(
                "sync_bn and train.freeze_bn: choose one (frozen BatchNorm layers compute no batch "
                "statistics to synchronise)"
            )
        if self.monitor != "loss" and "/" not in self.monitor:
            raise ValueError(f"monitor: 'loss' or 'task/metric', got {self.monitor!r}")
        if self.optimizer == "sgd" and self.momentum <= 0:
            raise ValueError(
                f"momentum: SGD here uses Nesterov momentum, which needs momentum > 0, got {self.momentum!r}"
            )
        return self


def _per_task_numbers(value: Any) -> Any:
    """``"0,0.5"`` and ``"segm=1,depth=0.1"`` (command-line forms) as a list or a mapping."""
    if isinstance(value, str):
        parts = [p.strip() for p in value.split(",") if p.strip()]
        if parts and all("=" in p for p in parts):
            return {k.strip(): v.strip() for k, v in (p.split("=", 1) for p in parts)}
        return parts
    return value


def per_task(value: Any) -> Any:
    """Per-task values of type ``value``: one, a list in task order, or a mapping {task: value}."""
    return Annotated[
        either(
            "one number, a list of numbers in task order, or a mapping {task: number}",
            number=(value, is_number),
            list=(list[value], is_list),
            mapping=(dict[Str, value], is_mapping),
        ),
        BeforeValidator(_per_task_numbers),
    ]


PerTaskNumbers = per_task(Float)
# s = log sigma^2 enters the loss as exp(-s): beyond +-30 (sigma^2 of 1e-13 .. 1e13) the
# weight of a task is 0 or overflows float32 at the first step.
LOG_VAR_LIMIT = 30.0
PerTaskLogVariances = per_task(Annotated[Float, Field(ge=-LOG_VAR_LIMIT, le=LOG_VAR_LIMIT)])


class LossSection(Section):
    """``loss``: how the task losses are weighted and clipped."""

    weighting: Name = Field(
        "uncertainty",
        description="weighting strategy (uncertainty, fixed, equal, gradnorm, dwa, famo, rlw) or gradient method "
        "(pcgrad, mgda, cagrad, nash_mtl, imtl_g, aligned_mtl, upgrad, dualproj)",
    )
    options: Any = Field(default_factory=dict, description="the weighting's own options (see the weighting tables)")
    initial_log_vars: Optional[PerTaskLogVariances] = Field(
        None, description="uncertainty: initial log-variance per task, within +-30 (null: 0, i.e. sigma^2 = 1)"
    )
    log_var_lr: Optional[Float] = Field(
        0.01, gt=0, le=MAX_LR, description="learning rate of the weighting's parameters"
    )
    gradient_normalization: Bool = Field(False, description="clip each head's gradient to max_head_grad_norm")
    max_head_grad_norm: Float = Field(1.0, gt=0, description="the per-head gradient-norm cap")


class Normalization(Section):
    """``meta.normalization``: the input mean and std (RGB in [0, 1]) every front end applies."""

    mean: tuple[Float, Float, Float] = Field((0.485, 0.456, 0.406), description="per-channel mean (R, G, B)")
    color: Literal["RGB"] = Field("RGB", description="channel order of the input (always RGB)")
    scale: Float = Field(1 / 255, description="pixel scale before mean and std: 1/255 (uint8 to [0, 1])")
    std: tuple[Annotated[Float, Field(gt=0)], Annotated[Float, Field(gt=0)], Annotated[Float, Field(gt=0)]] = Field(
        (0.229, 0.224, 0.225), description="per-channel standard deviation (R, G, B), > 0"
    )


class DepthMeta(OpenSection):
    """``meta.depth``: depth conventions of converted weights (other keys kept as written)."""

    max_depth: Optional[Float] = Field(None, gt=0, description="top of the depth colour scale in metres")


class MetaSection(OpenSection):
    """``meta``: facts about the weights, written by Hydranet's tools (converters record their
    source here); the keys below are read, any other plain-data key is kept as it is."""

    normalization: Optional[Normalization] = Field(None, description="input normalisation (null: ImageNet's)")
    depth: Optional[DepthMeta] = Field(None, description="depth conventions (converted weights)")
