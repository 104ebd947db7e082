"""Image-level regression: ``outputs`` values per image, in the target's units.

Targets may be normalised for training (``options: {target_mean, target_std}``, a number or a
list of ``outputs`` values each): the head learns ``(y - mean) / std`` and predictions are
mapped back with :meth:`Regression.denormalize`. NaN marks a missing value. This module is
the whole kind: its options, label values, metrics and results.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Optional

import numpy as np
import torch
from pydantic import AliasChoices

from ..errors import ConfigError, DataError
from ..evaluation.metrics import MetricAccumulator
from ..schema.types import Field, Float, Str, either, is_list, is_number
from ..tasks.kind import GAUSSIAN_UW, GlobalHeadOptions, TaskKind, per_sample
from ..tasks.registry import register_kind

Positive = Annotated[Float, Field(gt=0)]


class RegressionOptions(GlobalHeadOptions):
    """``options`` of a regression task: target normalisation and output names."""

    target_mean: Optional[
        either("a number or a list of numbers (one per output)", number=(Float, is_number), list=(list[Float], is_list))
    ] = Field(
        None,
        validation_alias=AliasChoices("target_mean", "mean"),
        description="the head learns (y - target_mean) / target_std: one number or one per output (null: 0)",
    )
    target_std: Optional[
        either(
            "a number > 0 or a list of numbers > 0 (one per output)",
            number=(Positive, is_number),
            list=(list[Positive], is_list),
        )
    ] = Field(
        None,
        validation_alias=AliasChoices("target_std", "std"),
        description="target standard deviation, > 0: one number or one per output (null: 1)",
    )
    output_names: Optional[list[Str]] = Field(None, description="names of the outputs in metrics (null: 0, 1, ...)")


def _norm_stats(spec, like: torch.Tensor):
    mean, std = spec.options.target_mean, spec.options.target_std
    if mean is None and std is None:
        return None
    mean_t = torch.as_tensor(0.0 if mean is None else mean, dtype=like.dtype, device=like.device)
    std_t = torch.as_tensor(1.0 if std is None else std, dtype=like.dtype, device=like.device)
    return mean_t, std_t


class RegressionMetrics(MetricAccumulator):
    """MAE and RMSE in the target's units, per output and pooled over all outputs.

    Predictions are converted back from normalised units with
    :func:`hydranet.losses.denormalize_prediction` when ``spec.options`` holds ``target_mean`` and
    ``target_std``. A target value that is NaN, or a sample whose label is absent, is
    skipped. ``mae`` / ``rmse`` pool every valid (sample, output) value;
    with more than one output, ``mae/<name>`` and ``rmse/<name>`` are reported per
    output, named by ``options.output_names`` or by the output's index.
    """

    kind = "regression"
    _state = ("abs_sum", "sq_sum", "count")
    DIRECTIONS = {"mae": "lower", "rmse": "lower"}

    def _reset(self) -> None:
        k = self.spec.outputs
        self.abs_sum = torch.zeros(k, dtype=torch.float64)
        self.sq_sum = torch.zeros(k, dtype=torch.float64)
        self.count = torch.zeros(k, dtype=torch.int64)

    def update(self, pred, target, present=None) -> None:
        k = self.spec.outputs
        n = pred.shape[0]
        pred = pred.detach().float().reshape(n, -1)
        target = torch.as_tensor(target).reshape(n, -1)
        if pred.shape[1] != k or target.shape[1] != k:
            raise ValueError(
                f"task {self.name!r}: regression prediction and target must be N x {k}, "
                f"got {tuple(pred.shape)} and {tuple(target.shape)}"
            )
        target, present = self._inputs_on_device(pred, target, present, torch.float32)
        y = self.spec.task_kind.denormalize(self.spec, pred)
        valid = torch.isfinite(target) & present[:, None]
        err = torch.where(valid, y - torch.nan_to_num(target), torch.zeros((), device=pred.device))
        self.abs_sum += err.abs().sum(dim=0, dtype=torch.float64)
        self.sq_sum += err.square().sum(dim=0, dtype=torch.float64)
        self.count += valid.sum(dim=0)
        self.samples += present.sum()

    def compute(self) -> dict:
        out: dict = {"samples": int(self.samples)}
        count = self.count.detach().cpu()
        n = int(count.sum())
        if n == 0:
            return out
        abs_sum, sq_sum = self.abs_sum.detach().cpu(), self.sq_sum.detach().cpu()
        out["mae"] = float(abs_sum.sum()) / n
        out["rmse"] = math.sqrt(float(sq_sum.sum()) / n)
        k = self.spec.outputs
        if k > 1:
            names = self.spec.options.output_names or [str(i) for i in range(k)]
            for i in range(k):
                ci = int(count[i])
                if ci:
                    out[f"mae/{names[i]}"] = float(abs_sum[i]) / ci
                    out[f"rmse/{names[i]}"] = math.sqrt(float(sq_sum[i]) / ci)
        return out


class Regression(TaskKind):
    name = "regression"
    dense = False
    size_field = "outputs"
    losses = ("l1", "mse", "smooth_l1")
    default_metrics = ("mae", "rmse")
    metric_names = ("mae", "rmse")
    uw_form = GAUSSIAN_UW
    options_model = RegressionOptions

    def check_spec(self, spec, where) -> None:
        for key in ("target_mean", "target_std", "output_names"):
            value = getattr(spec.options, key)
            if isinstance(value, list) and len(value) != spec.outputs:
                raise ConfigError(f"{where}.options.{key}: {len(value)} values for {spec.outputs} outputs")

    def parse_value(self, spec, value: Any, where: str, vocabulary: Optional[dict] = None) -> list:
        """Numbers from comma-separated text, a number, or a list of numbers."""
        if isinstance(value, str):
            try:
                return [float(v) for v in value.split(",")]
            except ValueError:
                raise DataError(f"{where}: task {spec.name!r} value {value!r} is not comma-separated numbers") from None
        values = value if isinstance(value, list) else [value]
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            raise DataError(f"{where}: task {spec.name!r} must be a number or a list of numbers, got {value!r}")
        return np.asarray(values, dtype=np.float64).tolist()

    def check_label(self, spec, value, image_hw, src) -> None:
        arr = np.asarray(value, dtype=np.float64).reshape(-1)
        if arr.size != spec.outputs:
            raise DataError(f"{src}: task {spec.name!r} expects {spec.outputs} value(s), got {arr.size}")
        if not np.isfinite(arr).all():
            raise DataError(f"{src}: task {spec.name!r} has a non-finite value {arr.tolist()}")

    def label_to_tensor(self, spec, value) -> torch.Tensor:
        return torch.as_tensor(np.asarray(value, dtype=np.float32).reshape(-1))

    def fill(self, spec, h, w) -> torch.Tensor:
        return torch.full((spec.outputs,), float("nan"), dtype=torch.float32)

    def valid(self, spec, target, present) -> torch.Tensor:
        return torch.isfinite(target) & per_sample(present, target)

    def loss_target(self, spec, target) -> torch.Tensor:
        return self.normalize(spec, target.float())

    def normalize(self, spec, y: torch.Tensor) -> torch.Tensor:
        """Target in the head's units: z = (y - mean) / std (unchanged without options)."""
        stats = _norm_stats(spec, y)
        return y if stats is None else (y - stats[0]) / stats[1]

    def denormalize(self, spec, pred) -> torch.Tensor:
        stats = _norm_stats(spec, pred)
        return pred if stats is None else pred * stats[1] + stats[0]

    def metrics(self, spec):
        return RegressionMetrics(spec)

    def postprocess(self, spec, y) -> list:
        return list(self.denormalize(spec, y).cpu().numpy().astype(np.float32))

    def summarize(self, spec, value) -> list:
        return [float(v) for v in np.ravel(value)]

    def describe(self, spec, summary) -> Optional[str]:
        return f"{spec.name}=" + ",".join(f"{v:.3g}" for v in summary)


REGRESSION = register_kind(Regression())
