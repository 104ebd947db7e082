"""Evaluation metrics that accumulate over the whole evaluation set.

Every accumulator keeps plain tensors of *sums and counts* (a confusion matrix, sums
of per-pixel error terms, an angle histogram) and turns them into metrics only in
:meth:`compute`. A metric is therefore the value over the whole set (every valid
pixel or sample weighted equally; depth by default every image, see
:class:`DepthMetrics`), never a mean of per-batch means: results do not depend on
how the set is split into batches.

One class per task kind, all with the same interface::

    acc = build_metrics(tasks)["segm"]
    acc.update(pred, target, present)   # tensors of one batch (any device)
    acc.compute()                        # {"miou": ..., "pixel_acc": ..., ...}
    acc.reset()

``pred`` is the model output for the task, ``target`` its label tensor and
``present`` a bool tensor of shape N (False = the sample has no label for this task;
it then contributes nothing, never a fake zero). Shapes:

==============  ======================  ==========================================
kind            prediction              target (invalid values)
==============  ======================  ==========================================
segmentation    logits N x C x H x W    int64 N x H x W (``spec.ignore_index``)
                (or labels N x H x W)
depth           raw N x 1 x H x W       float N x 1 x H x W metres (0, < 0, NaN)
                (abs is taken)
normals         raw N x 3 x H x W       float N x 3 x H x W (zero vector, NaN)
                (normalised)
classification  logits N x C            int64 N (``spec.ignore_index``)
regression      N x k (normalised units float N x k (NaN = missing)
                when ``target_mean`` /
                ``target_std`` are set)
==============  ======================  ==========================================

Conventions: accuracies, ``delta*`` and ``within_*`` are fractions in [0, 1]
(multiply by 100 for percent); angles are in degrees; depth errors in metres;
regression errors in the target's own units. Every result dict also holds
``samples``, the number of samples whose label was present. A task with no valid
label in the whole set reports ``samples`` only: no metric, never a fake zero.
Non-finite predictions on valid pixels are not hidden: they make the affected
metrics NaN.

For distributed evaluation, :meth:`MetricAccumulator.reduce` (with the trainer's
reduction) or :meth:`MetricAccumulator.all_reduce` sums the state tensors over the
processes: per-image depth averages are kept as sums of per-image values and an image
count, so every state is a sum and the reduced metrics equal one process's.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Mapping, Optional

import torch
import torch.nn.functional as F

from ..errors import ConfigError
from ..tasks import TaskSpec, parse_task
from ..tasks.depth import DEPTH_CROPS

__all__ = [
    "MetricAccumulator",
    "SegmentationMetrics",
    "DepthMetrics",
    "NormalsMetrics",
    "ClassificationMetrics",
    "RegressionMetrics",
    "MultiTaskMetrics",
    "build_metrics",
    "depth_crop_mask",
    "format_table",
    "DEPTH_CROPS",
]

# Fractional KITTI crops (rows top, rows bottom, cols left, cols right), as in the
# evaluation code of Garg et al. 2016 and Eigen et al. 2014 (monodepth / monodepth2).
_KITTI_CROPS = {
    "garg": (0.40810811, 0.99189189, 0.03594771, 0.96405229),
    "eigen": (0.3324324, 0.91351351, 0.0359477, 0.96405229),
}
# NYUDv2 Eigen crop: rows 45:471, cols 41:601 of the 480 x 640 frame.
_NYU_CROP = (45, 471, 41, 601)
_NYU_SIZE = (480, 640)


# --------------------------------------------------------------------------- helpers


def _as_bool_present(present: Any, n: int, device: torch.device) -> torch.Tensor:
    """``present`` as a bool tensor of shape (n,) on ``device``; None = all present."""
    if present is None:
        return torch.ones(n, dtype=torch.bool, device=device)
    present = torch.as_tensor(present, device=device).reshape(-1).to(torch.bool)
    if present.numel() != n:
        raise ValueError(f"present has {present.numel()} entries for a batch of {n}")
    return present


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


def _check_same_size(pred: torch.Tensor, target: torch.Tensor, name: str) -> None:
    if pred.shape[-2:] != target.shape[-2:] or pred.shape[0] != target.shape[0]:
        raise ValueError(
            f"task {name!r}: prediction {tuple(pred.shape)} and target {tuple(target.shape)} "
            "differ in batch or spatial size (upsample the prediction to the target's size, "
            "or use MultiTaskMetrics(..., resize=True))"
        )


# ----------------------------------------------------------------------- base class


class MetricAccumulator:
    """Base class: state is a few tensors (named in ``_state``) of sums and counts.

    ``DIRECTIONS`` declares every metric the accumulator reports and whether lower or higher
    is better; a per-class or per-output entry ``name/<x>`` follows its base ``name``. The
    task's ``metrics`` list (when given) selects what :meth:`report` returns; an unknown
    name there is a ConfigError naming the task.
    """

    kind: str = ""
    _state: tuple = ()
    DIRECTIONS: Mapping[str, str] = {}  # metric -> "lower" | "higher" (is better)
    COUNTS = ("samples", "pixels", "average")  # always reported, never monitored

    def __init__(self, spec: TaskSpec):
        if spec.kind != self.kind:
            raise ConfigError(
                f"task {spec.name!r}: {type(self).__name__} is for {self.kind!r} tasks, not {spec.kind!r}"
            )
        self.spec = spec
        for metric in spec.metrics or ():
            if metric.split("/", 1)[0] not in self.DIRECTIONS:
                raise ConfigError(
                    f"task {spec.name!r}: unknown metric {metric!r} in metrics; "
                    f"valid for kind {spec.kind!r}: {', '.join(self.DIRECTIONS)}"
                )
        self.reset()

    @classmethod
    def lower_is_better(cls, metric: str) -> bool:
        """Direction of ``metric`` (``mae/0`` follows ``mae``); KeyError for an unknown one."""
        base = metric.split("/", 1)[0]
        if base not in cls.DIRECTIONS:
            raise KeyError(metric)
        return cls.DIRECTIONS[base] == "lower"

    def report(self) -> dict:
        """:meth:`compute`, restricted to the task's ``metrics`` list when it has one.

        Naming a metric also keeps its per-class or per-output entries (``mae`` keeps
        ``mae/<output>``); the counts (``samples``, ``pixels``) are always kept.
        """
        out = self.compute()
        chosen = set(self.spec.metrics or ())
        if not chosen:
            return out
        return {k: v for k, v in out.items() if k in self.COUNTS or k in chosen or k.split("/", 1)[0] in chosen}

    @property
    def name(self) -> str:
        return self.spec.name

    def reset(self) -> None:
        """Clear the accumulated state (all tensors back to zero, on the CPU)."""
        self.samples = torch.zeros((), dtype=torch.int64)
        self._reset()

    def _reset(self) -> None:
        raise NotImplementedError

    def _dense_inputs(self, pred, target, present):
        """Check sizes, move the state to ``pred``'s device; float target and bool present there."""
        _check_same_size(pred, target, self.name)
        self._to(pred.device)
        target = target.to(device=pred.device, dtype=torch.float32)
        return target, _as_bool_present(present, target.shape[0], pred.device)

    def _to(self, device: torch.device) -> None:
        for key in ("samples",) + self._state:
            t = getattr(self, key)
            if t.device != device:
                setattr(self, key, t.to(device))

    def update(self, pred: torch.Tensor, target: torch.Tensor, present: Any = None) -> None:
        raise NotImplementedError

    def compute(self) -> dict:
        raise NotImplementedError

    def state_tensors(self) -> dict:
        """The accumulated state (sums and counts), by name."""
        return {key: getattr(self, key) for key in ("samples",) + self._state}

    def reduce(self, reduction: Any, device: Optional[torch.device] = None) -> None:
        """Replace the state by ``reduction.sum`` of it (e.g. over ranks; see ``hydranet.losses.LocalReduction``)."""
        if device is not None:
            self._to(torch.device(device))
        for key, t in self.state_tensors().items():
            setattr(self, key, reduction.sum(t))

    def all_reduce(self, device: Optional[torch.device] = None) -> None:
        """Sum the state over all processes of the default ``torch.distributed`` group.

        No-op when torch.distributed is not initialised. ``device`` defaults to the
        current CUDA device for the NCCL backend and the CPU otherwise.
        """
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            return
        if device is None:
            nccl = dist.get_backend() == "nccl"
            device = torch.device("cuda", torch.cuda.current_device()) if nccl else torch.device("cpu")
        self._to(torch.device(device))
        for t in self.state_tensors().values():
            dist.all_reduce(t)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(task={self.name!r})"


# --------------------------------------------------------------------- segmentation


class SegmentationMetrics(MetricAccumulator):
    """Confusion matrix over the whole set (rows = ground truth, columns = prediction).

    Metrics:
        ``miou``: mean IoU over the classes that occur in the ground truth *or* the
            prediction of the evaluated pixels. A class with union 0 (never labelled and
            never predicted) has an undefined IoU and is excluded from the mean rather
            than counted as 0 or 1.
        ``pixel_acc``: correctly labelled pixels / labelled pixels.
        ``mean_acc``: mean over the classes present in the ground truth of the per-class
            accuracy (recall).
        ``iou/<class name>``: per-class IoU (class ids when the spec has no names), for
            the classes counted in ``miou``.

    Pixels whose target is ``spec.ignore_index``, and all pixels of samples whose
    label is absent, are excluded. Any other target outside ``0..C-1`` is an error.
    """

    kind = "segmentation"
    _state = ("confusion",)
    DIRECTIONS = {"miou": "higher", "pixel_acc": "higher", "mean_acc": "higher", "iou": "higher"}

    def _reset(self) -> None:
        c = self.spec.classes
        self.confusion = torch.zeros(c, c, dtype=torch.int64)

    def update(self, pred, target, present=None) -> None:
        c = self.spec.classes
        if target.dim() == 4 and target.shape[1] == 1:
            target = target[:, 0]
        if target.dim() != 3:
            raise ValueError(f"task {self.name!r}: segmentation target must be N x H x W, got {tuple(target.shape)}")
        if pred.dim() == 4:
            if pred.shape[1] != c:
                raise ValueError(f"task {self.name!r}: logits have {pred.shape[1]} channels for {c} classes")
            labels = pred.argmax(dim=1)
        elif pred.dim() == 3 and not pred.is_floating_point():
            labels = pred
        else:
            raise ValueError(
                f"task {self.name!r}: segmentation prediction must be N x C x H x W "
                f"logits or N x H x W labels, got {tuple(pred.shape)}"
            )
        _check_same_size(labels, target, self.name)
        device = labels.device
        self._to(device)
        target = target.to(device=device, dtype=torch.int64)
        labels = labels.to(torch.int64)
        present = _as_bool_present(present, target.shape[0], device)

        valid = present[:, None, None] & (target != self.spec.ignore_index)
        bad = valid & ((target < 0) | (target >= c))
        if bool(bad.any()):
            bad_ids = torch.unique(target[bad]).tolist()[:10]
            raise ValueError(
                f"task {self.name!r}: target class ids {bad_ids} are outside 0..{c - 1} "
                f"and are not the ignore index {self.spec.ignore_index}"
            )
        if labels.numel() and bool(((labels < 0) | (labels >= c)).any()):
            raise ValueError(f"task {self.name!r}: predicted labels outside 0..{c - 1}")
        # Invalid pixels go to an extra bin (index c*c) that is dropped afterwards:
        # no boolean indexing, so no host-device synchronisation beyond the checks above.
        index = torch.where(valid, target * c + labels, torch.full_like(target, c * c))
        counts = torch.bincount(index.reshape(-1), minlength=c * c + 1)[: c * c]
        self.confusion += counts.reshape(c, c)
        self.samples += present.sum()

    def compute(self) -> dict:
        cm = self.confusion.detach().to("cpu", torch.float64)
        out: dict = {"samples": int(self.samples)}
        total = cm.sum()
        if total == 0:
            return out
        tp = cm.diagonal()
        gt = cm.sum(dim=1)
        pr = cm.sum(dim=0)
        union = gt + pr - tp
        counted = union > 0
        iou = tp[counted] / union[counted]
        out["miou"] = float(iou.mean())
        out["pixel_acc"] = float(tp.sum() / total)
        labelled = gt > 0
        out["mean_acc"] = float((tp[labelled] / gt[labelled]).mean())
        names = self.spec.class_names
        for i in torch.nonzero(counted).reshape(-1).tolist():
            key = names[i] if names else str(i)
            out[f"iou/{key}"] = float(tp[i] / union[i])
        return out


# ---------------------------------------------------------------------------- depth


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
        opts = spec.options  # typed and checked by the task's schema (hydranet.tasks.depth.DepthOptions)
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


# -------------------------------------------------------------------------- normals


class NormalsMetrics(MetricAccumulator):
    """Angular error between predicted and true surface normals, over the whole set.

    The prediction and the target are normalised to unit length; the angle is
    ``atan2(|p x g|, p . g)`` in degrees (accurate for small angles, unlike acos).
    Target pixels that are the zero vector or hold a NaN are invalid. A predicted
    zero vector has no direction and scores 90 degrees.

    Metrics: ``mean_angle``, ``median_angle`` (degrees), ``within_11.25``,
    ``within_22.5``, ``within_30`` (fraction of valid pixels with angle < t).

    The median is taken over every valid pixel of the set without storing them: the
    angles are counted in a histogram of bins ``options.angle_bin`` degrees wide
    (default 0.01, 18000 bins over 0..180). The reported median is the centre of the
    bin that holds the median pixel (the mean of the two middle pixels' bin centres
    for an even count), so it is within half a bin width (0.005 deg) of the exact
    median. The mean and the ``within`` fractions are exact.
    """

    kind = "normals"
    _state = ("hist", "angle_sum", "within", "count")
    DIRECTIONS = {
        "mean_angle": "lower",
        "median_angle": "lower",
        "within_11.25": "higher",
        "within_22.5": "higher",
        "within_30": "higher",
    }
    THRESHOLDS = (11.25, 22.5, 30.0)

    def __init__(self, spec: TaskSpec):
        self.bin_width = spec.options.angle_bin
        self.bins = int(math.ceil(180.0 / self.bin_width - 1e-9))
        super().__init__(spec)

    def _reset(self) -> None:
        # bins [0, B) hold angles; bin B collects invalid pixels (dropped); bin B+1
        # counts valid pixels with a non-finite angle (non-finite prediction).
        self.hist = torch.zeros(self.bins + 2, dtype=torch.int64)
        self.angle_sum = torch.zeros((), dtype=torch.float64)
        self.within = torch.zeros(len(self.THRESHOLDS), dtype=torch.int64)
        self.count = torch.zeros((), dtype=torch.int64)

    def update(self, pred, target, present=None) -> None:
        if pred.dim() != 4 or pred.shape[1] != 3 or target.dim() != 4 or target.shape[1] != 3:
            raise ValueError(
                f"task {self.name!r}: normals prediction and target must be N x 3 x H x W, "
                f"got {tuple(pred.shape)} and {tuple(target.shape)}"
            )
        target, present = self._dense_inputs(pred, target, present)
        finite = torch.isfinite(target).all(dim=1)
        tnorm = torch.linalg.vector_norm(torch.nan_to_num(target), dim=1)
        valid = finite & (tnorm > 1e-6) & present[:, None, None]

        g = F.normalize(torch.nan_to_num(target), dim=1, eps=1e-12)
        p = F.normalize(pred.detach().float(), dim=1, eps=1e-12)
        cross = torch.linalg.vector_norm(torch.cross(p, g, dim=1), dim=1)
        dot = (p * g).sum(dim=1)
        angle = torch.rad2deg(torch.atan2(cross, dot))  # N x H x W, in [0, 180]
        # A zero prediction has no direction: score it 90 deg (not atan2(0, 0) = 0).
        pnorm = torch.linalg.vector_norm(pred.detach().float(), dim=1)
        angle = torch.where(pnorm == 0, torch.full_like(angle, 90.0), angle)

        finite_angle = torch.isfinite(angle)
        index = (torch.nan_to_num(angle) / self.bin_width).floor().long().clamp(0, self.bins - 1)
        index = torch.where(finite_angle, index, torch.full_like(index, self.bins + 1))
        index = torch.where(valid, index, torch.full_like(index, self.bins))
        self.hist += torch.bincount(index.reshape(-1), minlength=self.bins + 2)
        self.angle_sum += torch.where(valid, angle, torch.zeros((), device=pred.device)).sum(dtype=torch.float64)
        self.within += torch.stack([((angle < t) & valid).sum() for t in self.THRESHOLDS])
        self.count += valid.sum()
        self.samples += present.sum()

    def _median(self) -> float:
        hist = self.hist.detach().cpu()
        if int(hist[self.bins + 1]) > 0:
            return float("nan")
        counts = hist[: self.bins]
        n = int(counts.sum())
        cum = torch.cumsum(counts, 0)
        lo = int(torch.searchsorted(cum, (n - 1) // 2, right=True))  # 0-based rank (n-1)//2
        hi = int(torch.searchsorted(cum, n // 2, right=True))  # 0-based rank n//2
        return (lo + hi + 1) * 0.5 * self.bin_width  # mean of the two bin centres

    def compute(self) -> dict:
        out: dict = {"samples": int(self.samples)}
        n = int(self.count)
        if n == 0:
            return out
        out["mean_angle"] = float(self.angle_sum) / n
        out["median_angle"] = self._median()
        for t, c in zip(self.THRESHOLDS, self.within.detach().cpu().tolist()):
            out[f"within_{t:g}"] = c / n
        out["pixels"] = n
        return out


# ------------------------------------------------------------------- classification


class ClassificationMetrics(MetricAccumulator):
    """Top-1 accuracy, and top-5 accuracy when the task has more than 5 classes.

    Only samples whose label is present (and not ``spec.ignore_index``) count.
    """

    kind = "classification"
    _state = ("correct", "count")
    DIRECTIONS = {"top1": "higher", "top5": "higher"}

    def __init__(self, spec: TaskSpec):
        self.topk = (1, 5) if spec.classes > 5 else (1,)
        super().__init__(spec)

    def _reset(self) -> None:
        self.correct = torch.zeros(len(self.topk), dtype=torch.int64)
        self.count = torch.zeros((), dtype=torch.int64)

    def update(self, pred, target, present=None) -> None:
        c = self.spec.classes
        target = target.reshape(-1)
        if pred.dim() != 2 or pred.shape[1] != c or pred.shape[0] != target.shape[0]:
            raise ValueError(
                f"task {self.name!r}: classification logits must be N x {c} for "
                f"N = {target.shape[0]} targets, got {tuple(pred.shape)}"
            )
        device = pred.device
        self._to(device)
        target = target.to(device=device, dtype=torch.int64)
        present = _as_bool_present(present, target.shape[0], device)
        valid = present & (target != self.spec.ignore_index)
        bad = valid & ((target < 0) | (target >= c))
        if bool(bad.any()):
            raise ValueError(f"task {self.name!r}: target class ids {target[bad].tolist()[:10]} are outside 0..{c - 1}")
        top = pred.detach().topk(max(self.topk), dim=1).indices  # N x kmax
        hit = top == target[:, None]
        self.correct += torch.stack([(hit[:, :k].any(dim=1) & valid).sum() for k in self.topk])
        self.count += valid.sum()
        self.samples += present.sum()

    def compute(self) -> dict:
        out: dict = {"samples": int(self.samples)}
        n = int(self.count)
        if n == 0:
            return out
        for k, c in zip(self.topk, self.correct.detach().cpu().tolist()):
            out[f"top{k}"] = c / n
        return out


# ----------------------------------------------------------------------- regression


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
        device = pred.device
        self._to(device)
        target = target.to(device=device, dtype=torch.float32)
        present = _as_bool_present(present, n, device)
        y = self.spec.task_kind.denormalize(self.spec, pred)
        valid = torch.isfinite(target) & present[:, None]
        err = torch.where(valid, y - torch.nan_to_num(target), torch.zeros((), device=device))
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


# ------------------------------------------------------------------------ multi-task


def _specs(tasks: Iterable[Any]) -> list[TaskSpec]:
    return [parse_task(t, f"tasks[{i}]") for i, t in enumerate(tasks)]


def build_metrics(tasks: Iterable[Any]) -> dict:
    """One accumulator per task: ``{task name: MetricAccumulator}`` (specs or mappings)."""
    return {spec.name: spec.task_kind.metrics(spec) for spec in _specs(tasks)}


class MultiTaskMetrics:
    """The accumulators of all tasks, fed with model outputs and batches.

    ``update(outputs, batch)``: ``outputs`` is the model's ``{task name: tensor}``;
    the targets are read from ``batch["targets"][name]`` when the batch has a
    ``"targets"`` mapping, else from ``batch[name]``; the presence flags from
    ``batch["present"][name]`` (all present when missing). A task missing from the
    outputs or the batch is skipped for that batch.

    Args:
        tasks: task specs (or their mappings).
        resize: when True, dense predictions whose spatial size differs from the
            target's are bilinearly resized to it (align_corners=False) before
            scoring, e.g. for ``model(images, upsample=False)`` outputs or
            full-resolution ground truth. When False (default) a size mismatch is an
            error.
    """

    def __init__(self, tasks: Iterable[Any], resize: bool = False):
        self.specs = {s.name: s for s in _specs(tasks)}
        self.metrics = build_metrics(self.specs.values())
        self.resize = resize

    def __getitem__(self, name: str) -> MetricAccumulator:
        return self.metrics[name]

    def __iter__(self):
        return iter(self.metrics)

    def reset(self) -> None:
        for m in self.metrics.values():
            m.reset()

    @staticmethod
    def _lookup(batch: Mapping, name: str):
        targets = batch.get("targets") if isinstance(batch.get("targets"), Mapping) else batch
        present = batch.get("present")
        present = present.get(name) if isinstance(present, Mapping) else None
        return targets.get(name), present

    def update(self, outputs: Mapping[str, torch.Tensor], batch: Mapping) -> None:
        for name, acc in self.metrics.items():
            if name not in outputs:
                continue
            target, present = self._lookup(batch, name)
            if target is None:
                continue
            pred = outputs[name]
            spec = self.specs[name]
            if self.resize and spec.dense and pred.dim() == 4 and pred.shape[-2:] != target.shape[-2:]:
                pred = F.interpolate(pred.float(), size=tuple(target.shape[-2:]), mode="bilinear", align_corners=False)
            acc.update(pred, target, present)

    def compute(self) -> dict:
        """``{task name: {metric: value}}`` over everything seen since the last reset.

        A task with a ``metrics`` list reports those (see :meth:`MetricAccumulator.report`).
        """
        return {name: acc.report() for name, acc in self.metrics.items()}

    def reduce(self, reduction: Any, device: Optional[torch.device] = None) -> None:
        """Sum every accumulator's state with ``reduction`` (over ranks under torchrun)."""
        for acc in self.metrics.values():
            acc.reduce(reduction, device)

    def lower_is_better(self, monitor: str) -> bool:
        """Direction of ``"task/metric"`` (e.g. ``count/mae/0``); ConfigError when unknown."""
        task, _, metric = monitor.partition("/")
        if task not in self.metrics:
            raise ConfigError(f"train.monitor: {monitor!r} names no task; tasks: {', '.join(self.metrics)}")
        try:
            return self.metrics[task].lower_is_better(metric)
        except KeyError:
            raise ConfigError(
                f"train.monitor: task {task!r} has no metric {metric!r}; valid: "
                f"{', '.join(type(self.metrics[task]).DIRECTIONS)}"
            ) from None

    def all_reduce(self, device: Optional[torch.device] = None) -> None:
        """Sum every accumulator's state over the distributed processes (see the base class)."""
        for acc in self.metrics.values():
            acc.all_reduce(device)


# ---------------------------------------------------------------------------- table


def _fmt(value: Any) -> str:
    if isinstance(value, bool) or isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return f"{value:.4f}"
    return str(value)


def format_table(results: Mapping[str, Mapping[str, Any]], detail: bool = True) -> str:
    """A plain-text table of ``{task: {metric: value}}`` (one row per metric).

    ``detail=False`` leaves out per-class and per-output entries (keys with a ``/``).
    Floats are shown with 4 decimals; the counts (``samples``, ``pixels``) come last,
    as integers; a task without any label in the set shows ``(no labels)``.
    """
    rows = []
    counts = ("samples", "pixels", "average")
    for task, metrics in results.items():
        first = True
        items = [(k, v) for k, v in metrics.items() if k not in counts and (detail or "/" not in k)]
        if not any(k not in counts for k in metrics):
            items.append(("(no labels)", ""))
        items += [(k, metrics[k]) for k in counts if k in metrics]
        for key, value in items:
            rows.append((task if first else "", key, _fmt(value)))
            first = False
    header = ("task", "metric", "value")
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(3)]
    lines = [
        f"{header[0]:<{widths[0]}}  {header[1]:<{widths[1]}}  {header[2]:>{widths[2]}}",
        "  ".join("-" * w for w in widths),
    ]
    for task, key, value in rows:
        lines.append(f"{task:<{widths[0]}}  {key:<{widths[1]}}  {value:>{widths[2]}}")
    return "\n".join(lines)
