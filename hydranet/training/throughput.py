"""Training throughput: images/s of a training step and of the data pipeline, in one run.

    result = train_benchmark("nyud", size=(400, 400))
    print(format_train_table(result))

Step **settings** (see :data:`TRAIN_SETTINGS`), all on the same model initialisation and the
same fixed batch, timed interleaved in 4 rounds (as ``hydranet bench`` does for inference):

* ``plain``: a plain PyTorch loop, the reference: ``zero_grad``, forward, the sum of the
  task losses, ``backward``, ``optimizer.step`` (the config's optimiser over all parameters).
* ``trainer``: the trainer's own step (:meth:`hydranet.training.trainer.Trainer._train_step`
  and the schedule step): forward, losses, the finiteness check, the loss weighting (its
  parameters learnt too), gradient clipping when configured, backward, the optimiser's
  parameter groups, the grad scaler.
* ``channels_last``, ``compile``, ``amp_bf16``, ``amp_fp16``: the trainer's step with
  ``train.channels_last``, ``train.compile``, ``train.amp`` (AMP is CUDA-only: skipped on CPU).
* ``frozen_trunk``: the trainer's step with the encoder and decoder frozen (the heads learn);
  ``cached_features``: the same heads' step on the trunk output of the same batch, computed
  once (``train.cache_features``); their ratio is the cache's speed-up of a step (loading and
  augmenting the images, which the cache also saves, is not in it).

The **data pipeline** is timed separately: the trainer's own loader (dataset, augmentation,
collation) with 0 workers (the main process: the images/s one worker gives) and any other
worker counts asked for. When the config's training data cannot be read here (e.g. NYUD not
downloaded), the synthetic scene set stands in, rendered at the crop size with the config's
transforms and tasks (``result["data"]`` says so).
"""

from __future__ import annotations

import copy
import statistics
import tempfile
import time
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Callable, Optional, Sequence

import torch

from ..config import load_config
from ..data import build_dataset
from ..data.collate import batch_to
from ..data.multi import MEMBER_KEYS
from ..errors import ConfigError, HydranetError
from ..losses import compute_losses
from ..measure import aligned_rows, interleaved_times, machine_info, percentile, timed_count
from ..models import build_model
from ..tasks import parse_tasks
from .feature_cache import trunk_output
from .trainer import Trainer

__all__ = ["TRAIN_SETTINGS", "DEFAULT_TRAIN_SETTINGS", "train_benchmark", "format_train_table", "parse_train_settings"]


@dataclass(frozen=True)
class TrainSetting:
    """One way of taking a training step: ``overrides`` of ``train.*`` for the trainer's step
    (None: the plain PyTorch loop); ``cached``: on the frozen trunk's cached output."""

    name: str
    description: str
    overrides: Optional[dict] = None
    cached: bool = False

    def unmet(self, device: torch.device) -> Optional[str]:
        """Why this setting cannot run on ``device``, or None."""
        amp = (self.overrides or {}).get("amp")
        if amp and device.type != "cuda":
            return "AMP training is CUDA-only (train.amp is ignored on CPU)"
        if amp == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
            return "this GPU has no bfloat16 support"
        return None


_FROZEN_TRUNK = {"freeze": ["encoder", "decoder"]}
#: Every training setting, in the order of the rows.
ALL_TRAIN_SETTINGS = (
    TrainSetting("plain", "plain PyTorch loop: same model and batch, sum of task losses, backward, optimiser step"),
    TrainSetting(
        "trainer",
        "Trainer's step (NCHW): forward, losses, finiteness check, loss weighting, backward, optimiser "
        "groups, schedule",
        {"channels_last": False},
    ),
    TrainSetting(
        "channels_last", "Trainer's step with train.channels_last (NHWC weights and inputs)", {"channels_last": True}
    ),
    TrainSetting(
        "decoder_channels_last",
        "Trainer's step with train.channels_last=decoder (NHWC decoder and heads; the default on CPU)",
        {"channels_last": "decoder"},
    ),
    TrainSetting("compile", "Trainer's step with train.compile (torch.compile, Inductor)", {"compile": True}),
    TrainSetting("amp_bf16", "Trainer's step with train.amp=bf16 (CUDA)", {"amp": "bf16"}),
    TrainSetting("amp_fp16", "Trainer's step with train.amp=fp16 and the grad scaler (CUDA)", {"amp": "fp16"}),
    TrainSetting(
        "frozen_trunk",
        "Trainer's step with train.freeze=[encoder, decoder]: forward through all, heads learn",
        _FROZEN_TRUNK,
    ),
    TrainSetting(
        "cached_features",
        "Trainer's step on cached trunk features (train.cache_features): the heads alone",
        _FROZEN_TRUNK,
        cached=True,
    ),
)
_BY_NAME = {s.name: s for s in ALL_TRAIN_SETTINGS}
#: Setting name -> description.
TRAIN_SETTINGS = {s.name: s.description for s in ALL_TRAIN_SETTINGS}
DEFAULT_TRAIN_SETTINGS = tuple(TRAIN_SETTINGS)


def parse_train_settings(text) -> list[str]:
    """``"plain,trainer"`` -> list; ``"all"`` -> every setting; ConfigError for unknown names."""
    items = list(text) if isinstance(text, (list, tuple)) else [s.strip() for s in str(text).split(",") if s.strip()]
    if items == ["all"]:
        return list(DEFAULT_TRAIN_SETTINGS)
    unknown = [s for s in items if s not in TRAIN_SETTINGS]
    if unknown or not items:
        raise ConfigError(f"--settings: unknown training setting(s) {unknown}; valid: {', '.join(TRAIN_SETTINGS)}")
    return list(dict.fromkeys(items))


def _bench_config(
    config, size: Optional[tuple[int, int]], batch_size: Optional[int], synthetic: Optional[bool], samples: int
) -> tuple[dict, str]:
    """The config to train with here, and a description of the data used."""
    cfg = load_config(config)
    cfg["model"]["encoder_weights"] = None  # speed does not depend on pretrained weights
    data = dict(cfg.get("data") or {})
    train_data = data.get("train") or {}
    if isinstance(train_data, (list, tuple)):  # several data sets: time the first one's pipeline
        train_data = {k: v for k, v in dict(train_data[0]).items() if k not in MEMBER_KEYS}
    train_data = dict(train_data)
    transforms = dict(train_data.get("transforms") or {})
    if size is not None:
        transforms["size"] = [int(size[0]), int(size[1])]
    if "size" not in transforms:
        raise ConfigError("training throughput: give --size (the config's data.train.transforms has no size)")
    train_data["transforms"] = transforms
    description = f"{train_data.get('type')} (the config's data.train)"
    if synthetic is None:  # the config's data if it can be read here
        try:
            build_dataset(train_data, parse_tasks(cfg["tasks"]), train=True)
            synthetic = False
        except HydranetError as exc:
            synthetic = True
            description = f"synthetic scenes standing in: the config's data.train cannot be read here ({exc})"
    if synthetic:
        train_data = {
            "type": "synthetic",
            "split": "train",
            "num_samples": int(samples),
            "size": list(transforms["size"]),
            "seed": 0,
            "transforms": transforms,
        }
        if not description.startswith("synthetic"):
            description = "synthetic scenes (asked for)"
    cfg["data"] = {"train": train_data}  # no validation here
    train = dict(cfg.get("train") or {})
    if batch_size is not None:
        train["batch_size"] = int(batch_size)
    train.update(workers=0, plots=False, tensorboard=False, accumulate=1)
    cfg["train"] = train
    return cfg, f"{description}; crop {transforms['size'][1]}x{transforms['size'][0]}"


def _plain_step(cfg: dict, device: torch.device, batch: dict) -> Callable[[], None]:
    torch.manual_seed(int(cfg["train"].get("seed", 0)))
    model = build_model(cfg).to(device).train()
    tasks = parse_tasks(cfg["tasks"])
    lr = float(cfg["train"].get("lr", 1e-3))
    opt = (
        torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
        if cfg["train"].get("optimizer") == "sgd"
        else torch.optim.AdamW(model.parameters(), lr=lr)
    )

    def step():
        opt.zero_grad(set_to_none=True)
        b = batch_to(batch, device)
        losses = compute_losses(model(b["image"]), b, tasks)
        sum(losses.values()).backward()
        opt.step()

    return step


def _trainer_step(trainer) -> Callable[[], None]:
    def step():
        trainer._train_step([trainer.fixed_batch])
        trainer.scheduler.step()

    return step


def _cached_batch(trainer, batch: dict) -> dict:
    """``batch`` as the feature cache serves it: the frozen trunk's output instead of the images."""
    shared, global_ = trunk_output(trainer.model, batch["image"], trainer.device)
    trainer.feature_cache = SimpleNamespace(size=tuple(batch["image"].shape[-2:]))
    return {
        "shared": None if shared is None else shared.cpu(),
        "global": None if global_ is None else global_.cpu(),
        "targets": batch["targets"],
        "present": batch["present"],
    }


def _loader_rate(trainer, workers: int, batches: int) -> dict:
    """Images/s of the trainer's loader with ``workers`` processes (the first batch untimed)."""
    trainer.train_cfg.workers = int(workers)
    loader = iter(trainer._loader(0, 0))
    next(loader)  # worker start-up and the first batch are left out

    def batch_sizes(batch_iter):
        for _ in range(int(batches)):
            try:
                yield len(next(batch_iter)["image"])
            except StopIteration:
                return

    images, seconds = timed_count(batch_sizes(loader))
    del loader
    rate = images / seconds if seconds > 0 else None
    return {
        "workers": int(workers),
        "images": images,
        "seconds": round(seconds, 3),
        "images_per_s": rate,
        "images_per_s_per_worker": rate / max(1, int(workers)) if rate else None,
        "ms_per_image": 1000.0 * seconds / images if images else None,
    }


def train_benchmark(
    config="nyud",
    device="cpu",
    size: Optional[tuple[int, int]] = None,
    batch_size: Optional[int] = None,
    settings: Sequence[str] = DEFAULT_TRAIN_SETTINGS,
    warmup: int = 2,
    reps: int = 8,
    loader_workers: Sequence[int] = (0,),
    loader_batches: int = 8,
    synthetic: Optional[bool] = None,
    log: Optional[Callable[[str], None]] = None,
) -> dict:
    """Time the training step under each setting and the data pipeline (see the module docstring).

    Args:
        config: a config (path, shipped name or mapping).
        device: ``cpu`` or ``cuda[:N]``.
        size: ``(height, width)`` of the training crops (default: the config's
            ``data.train.transforms.size``).
        batch_size: images per step (default: ``train.batch_size``).
        settings: names from :data:`TRAIN_SETTINGS` (``plain`` is always measured: the ratios are
            against it).
        warmup, reps: untimed and timed steps per setting (``compile`` compiles in the warm-up).
        loader_workers: worker counts the loader is timed with; ``loader_batches`` batches each.
        synthetic: True: train on synthetic scenes; None: only when the config's data cannot
            be read.
        log: called with progress messages.

    Returns:
        ``{"machine", "config", "data", "batch", "size", "rows", "loader"}``: one row per
        setting (``step_ms_median``, ``step_ms_p90``, ``images_per_s``, ``vs_plain``,
        ``setup_s``, ``status``, ``reason``), one loader entry per worker count.
    """
    log = log or (lambda msg: None)
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device {device}: CUDA is not available on this machine (use --device cpu)")
    device = torch.device(device)
    settings = parse_train_settings(settings)
    if "plain" not in settings:
        settings = ["plain"] + settings
    if warmup < 0 or reps < 1 or loader_batches < 1:
        raise ConfigError("--warmup must be >= 0, --reps and the loader's batches >= 1")
    probe = load_config(config)
    batch = int(batch_size or (probe.get("train") or {}).get("batch_size") or 8)
    cfg, data_note = _bench_config(config, size, batch, synthetic, samples=max(64, batch * (loader_batches + 2)))
    machine = machine_info(device)
    h, w = cfg["data"]["train"]["transforms"]["size"]
    rows, steps = {}, {}
    workdir = tempfile.mkdtemp(prefix="hydranet-trainbench-")
    fixed = None
    for name in settings:
        setting = _BY_NAME[name]
        rows[name] = row = _empty_row(setting, device, batch, f"{w}x{h}")
        reason = setting.unmet(device)
        if reason:
            row.update(status="skipped", reason=reason)
            continue
        log(f"[train {batch} x {w}x{h}] preparing {name}")
        start = time.perf_counter()
        try:
            if fixed is None:  # one batch from the trainer's own loader, used by every setting
                fixed = _first_batch(cfg, workdir, device)
            step = _step_of(setting, cfg, device, fixed, workdir)
            for _ in range(max(1, warmup)):  # compile and allocate here, not in the timing
                step()
        except Exception as exc:  # one setting failing must not take the others with it
            row.update(status="failed", reason=f"{type(exc).__name__}: {exc}")
            continue
        row["setup_s"] = round(time.perf_counter() - start, 2)
        steps[name] = step
    log(f"[train {batch} x {w}x{h}] timing {', '.join(steps)} ({reps} steps each in 4 rounds)")
    times = interleaved_times(steps, device, 0, reps, events=device.type == "cuda")
    for name, t in times.items():
        rows[name].update(step_ms_median=statistics.median(t), step_ms_p90=percentile(t, 90))
        rows[name]["images_per_s"] = batch * 1000.0 / rows[name]["step_ms_median"]
    plain = rows["plain"].get("images_per_s")
    for row in rows.values():
        if row["images_per_s"] and plain:
            row["vs_plain"] = row["images_per_s"] / plain
    loader = []
    if loader_workers:
        probe_trainer = Trainer(cfg, workdir, device=str(device), progress=False)
        for workers in loader_workers:
            log(f"[train {batch} x {w}x{h}] timing the data loader with {workers} worker(s)")
            loader.append(_loader_rate(probe_trainer, workers, loader_batches))
    machine["loadavg_after"] = machine_info(device)["loadavg"]
    return {
        "machine": machine,
        "config": cfg,
        "data": data_note,
        "batch": batch,
        "size": f"{w}x{h}",
        "settings": {s: TRAIN_SETTINGS[s] for s in settings},
        "timing": "warm-up steps, then 4 rounds over the settings, each an untimed step then reps/4 timed steps; "
        "median and p90",
        "rows": list(rows.values()),
        "loader": loader,
    }


def _empty_row(setting: TrainSetting, device: torch.device, batch: int, size: str) -> dict:
    return {
        "setting": setting.name,
        "description": setting.description,
        "status": "ok",
        "reason": None,
        "device": str(device),
        "batch": batch,
        "size": size,
        "step_ms_median": None,
        "step_ms_p90": None,
        "images_per_s": None,
        "vs_plain": None,
        "setup_s": None,
    }


def _first_batch(cfg: dict, workdir: str, device: torch.device) -> dict:
    """The first batch of the trainer's own loader."""
    first = Trainer(cfg, workdir, device=str(device), progress=False)
    return next(iter(first._loader(0, 0)))


def _step_of(setting: TrainSetting, cfg: dict, device: torch.device, fixed: dict, workdir: str) -> Callable[[], None]:
    """One training step of ``setting`` on the batch ``fixed``."""
    if setting.overrides is None:
        return _plain_step(copy.deepcopy(cfg), device, fixed)
    sub = copy.deepcopy(cfg)
    sub["train"].update(copy.deepcopy(setting.overrides))
    trainer = Trainer(sub, workdir, device=str(device), progress=False)
    trainer.fixed_batch = fixed
    trainer.model.train()
    if setting.cached:
        trainer.fixed_batch = _cached_batch(trainer, fixed)
    return _trainer_step(trainer)


def format_train_table(result: dict) -> str:
    """The step rows and the loader rates as text."""
    lines = [f"training step, batch {result['batch']} x {result['size']} ({result['data']})", ""]
    header = ("setting", "step ms", "p90", "images/s", "vs plain", "setup s")
    table = [header]
    notes = []
    for row in result["rows"]:
        if row["status"] != "ok":
            table.append((row["setting"], row["status"], "", "", "", ""))
            notes.append(f"  {row['setting']}: {row['status']}: {row['reason']}")
            continue
        table.append(
            (
                row["setting"],
                f"{row['step_ms_median']:.1f}",
                f"{row['step_ms_p90']:.1f}",
                f"{row['images_per_s']:.2f}",
                f"{row['vs_plain']:.2f}x" if row["vs_plain"] else "-",
                f"{row['setup_s']:.1f}",
            )
        )
    lines += aligned_rows(table)
    rows = {r["setting"]: r for r in result["rows"]}
    frozen, cached = rows.get("frozen_trunk"), rows.get("cached_features")
    if frozen and cached and frozen["images_per_s"] and cached["images_per_s"]:
        lines.append(
            f"cached_features vs frozen_trunk: {cached['images_per_s'] / frozen['images_per_s']:.2f}x "
            "(the step alone; the cache also saves loading and augmenting the images)"
        )
    for entry in result.get("loader", []):
        lines.append(
            f"data loader, {entry['workers']} worker(s): {entry['images_per_s']:.1f} images/s "
            f"({entry['images_per_s_per_worker']:.1f} per worker, {entry['ms_per_image']:.1f} ms per image)"
        )
    m = result.get("machine", {})
    lines.append(
        f"{m.get('cpu')} ({m.get('cpu_count')} cpus, {m.get('torch_threads')} torch threads), "
        f"torch {m.get('torch')}" + (f", {m['gpu']}" if m.get("gpu") else "")
    )
    if notes:
        lines.append("not measured:")
        lines.extend(notes)
    return "\n".join(lines)
