"""The training loop behind ``hydranet train``: single process or torchrun/DDP.

What it guarantees:
* checkpoints (``last.pt`` every ``ckpt_every`` steps and at the end, ``best.pt`` on the
  monitored validation value) are written atomically by rank 0 and hold everything a
  resume needs: model, weighting, optimiser, scheduler, grad scaler, step, RNG states;
* ``resume`` continues exactly: the batch order is a function of (seed, epoch) and each
  sample's augmentation of (seed, epoch, index), so N steps straight equal N/2 + N/2;
* SIGINT/SIGTERM finish the current step, save ``last.pt`` and stop;
* a NaN or infinite task loss stops training with the task and step named (or skips the
  update, ``train.on_nan: skip``); no checkpoint is written from a poisoned state; a run
  that skipped more than ``train.max_skipped`` of its updates ends as ``too_many_skipped``;
* a resume with a config (or ``train.steps``) other than the checkpoint's is refused, naming
  the fields, unless ``allow_changes``; the logs then hold each step once;
* the run folder is checked for writing before any work, and temporary files that a killed
  run left there are removed;
* under torchrun, N processes of batch B train the model one process trains with batch N x B
  (losses of the global batch, see :func:`hydranet.losses.finish_losses`; BatchNorm frozen
  or synchronised, see :mod:`.batchnorm`), validate on shards with all-reduced metrics, and
  rank 0 alone writes and prints.
"""

from __future__ import annotations

import random
import signal
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ..checkpoint import atomic_save, model_checkpoint, read_model_checkpoint
from ..config import parse_config, save_config
from ..data import make_collate
from ..data.base import dataset_source, require_labels
from ..data.collate import batch_to
from ..data.io import writable_dir
from ..data.multi import build_train_data, build_val_sets
from ..data.transforms import Normalization
from ..errors import CheckpointError, ConfigError, HydranetError
from ..evaluation import MultiTaskMetrics, evaluate, format_table
from ..losses import build_weighting, clip_head_gradients, compute_losses
from ..models import build_model
from ..tasks import parse_tasks
from .batchnorm import prepare_batchnorm, set_train_mode
from .distributed import (
    DistContext,
    any_rank,
    cleanup,
    device_for,
    find_unused_parameters,
    init_distributed,
    reduction_for,
    task_reach,
)
from .feature_cache import FeatureCache, cached_batch_to, check_cacheable, collate_cached
from .freeze import freeze
from .init import init_model, write_report
from .logger import RunLogger
from .optim import build_optimizer, build_scheduler, param_groups
from .sampler import ResumableBatchSampler, SeededSamples
from .settings import config_changes


class TrainingError(HydranetError, RuntimeError):
    """Training cannot continue (e.g. a non-finite loss); the message names task and step."""


def _rng_state() -> dict:
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": random.getstate(),
    }


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state(
        ("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"])
    )
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class RunInterrupted(KeyboardInterrupt):
    """A signal stopped the run where it stood (see :class:`_StopRequest`)."""


class _StopRequest:
    """SIGINT/SIGTERM handling for a training run.

    Inside the training loop (``graceful``) the first signal sets a flag: the loop finishes
    the current step, saves ``last.pt`` and stops. If that takes more than ``GRACE_SECONDS``
    (a long step, a slow validation or checkpoint write), or at a second signal, or anywhere
    outside the loop (building the model and data), :class:`RunInterrupted` is raised at
    once: the atomic writers then remove their temporary file, so no partial file is left,
    and ``last.pt`` stays the previous whole checkpoint. Nested uses share the outer one.
    """

    GRACE_SECONDS = 10.0
    current: Optional[_StopRequest] = None

    def __init__(self):
        self.signal: Optional[int] = None
        self.graceful = False
        self._previous = {}
        self._outer: Optional[_StopRequest] = None

    def __enter__(self):
        self._outer = _StopRequest.current
        if self._outer is not None:
            return self._outer
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGALRM):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread
                pass
        _StopRequest.current = self
        return self

    def _handle(self, signum, frame):
        if signum == signal.SIGALRM:
            raise RunInterrupted(f"signal {self.signal}: the run did not stop within {self.GRACE_SECONDS:g} s")
        if not self.graceful or self.signal is not None:
            raise RunInterrupted(f"signal {signum}")
        self.signal = signum
        signal.setitimer(signal.ITIMER_REAL, self.GRACE_SECONDS)

    def settle(self) -> None:
        """Leave the loop's graceful mode: the stop it asked for is done (disarm the deadline)."""
        self.graceful = False
        if self._previous:
            signal.setitimer(signal.ITIMER_REAL, 0)

    def __exit__(self, *exc):
        if self._outer is not None:
            return
        _StopRequest.current = None
        self.settle()
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


class Trainer:
    """Builds model, weighting, data and optimiser from a config and runs the loop.

    Args:
        config: a config mapping or YAML path (see ``hydranet/configs/synthetic.yaml``).
        out_dir: run folder: ``last.pt``, ``best.pt``, ``config.yaml``, logs and plots.
        device: ``cpu`` or ``cuda`` (under torchrun each rank takes ``cuda:LOCAL_RANK``).
        resume: a checkpoint to continue from (``True`` = ``out_dir/last.pt``).
        progress: show a tqdm bar (rank 0 only).
        allow_changes: resume although the config differs from the checkpoint's (the new
            values, e.g. ``train.lr`` or ``train.steps``, then apply from the resumed step).
    """

    def __init__(
        self,
        config: Any,
        out_dir: str | Path,
        device: str = "cpu",
        resume: Any = None,
        progress: bool = True,
        allow_changes: bool = False,
    ):
        parsed = parse_config(config)  # every value checked once, here; typed sections below
        self.cfg = parsed.to_dict()
        self.train_cfg, self.loss_cfg = parsed.train, parsed.loss
        if "data" not in self.cfg or "train" not in (self.cfg.get("data") or {}):
            raise ConfigError("data.train: missing (what to train on; see hydranet/configs/synthetic.yaml)")
        self.out_dir = Path(out_dir)
        self._setup_device(device)
        self.progress = progress and self.ctx.is_main
        self.allow_changes = allow_changes
        if self.ctx.is_main:
            writable_dir(self.out_dir)
            remove_stale_temporaries(self.out_dir)
        self.tasks = parse_tasks(self.cfg["tasks"])

        _seed_everything(self.train_cfg.seed)  # before anything draws random numbers
        self._setup_model(init=not resume)
        self._setup_weighting()
        self._setup_data()
        tc = self.train_cfg
        self.optimizer = build_optimizer(param_groups(self.model, self.weighting, tc, self.loss_cfg), tc)
        self.scheduler = build_scheduler(self.optimizer, tc)
        self.amp_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(tc.amp)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)

        self.step = 0
        self.best: Optional[float] = None
        self.epoch_loss_sums: dict[str, float] = {}
        self.epoch_loss_counts: dict[str, int] = {}
        self.skipped_steps = 0
        if resume:
            self._resume(self.out_dir / "last.pt" if resume is True else Path(resume))
        self._setup_forward()

    def _setup_device(self, device: str) -> None:
        """The process group (under torchrun), this rank's device, and what that device allows."""
        self.ctx: DistContext = init_distributed(device)
        self.device = device_for(self.ctx, device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise ConfigError(f"--device {device}: CUDA is not available on this machine")
        if self.train_cfg.amp != "none" and self.device.type != "cuda":
            raise ConfigError(
                f"train.amp: {self.train_cfg.amp} mixed precision runs on CUDA only "
                f"(this run is on {self.device.type}); set train.amp: none"
            )

    def _setup_model(self, init: bool) -> None:
        """The model: built, initialised from ``train.init`` (``init``: not when resuming, which
        restores every tensor from its own checkpoint) and laid out in memory."""
        tc = self.train_cfg
        # The input normalisation is written into the config, so every checkpoint carries it.
        self.normalization = Normalization.from_config(self.cfg)
        self.cfg.setdefault("meta", {})["normalization"] = self.normalization.to_dict()
        self.model = build_model(self.cfg).to(self.device)
        self.init_report = None
        self.weights_from = None  # the file the starting weights came from, named when a step fails
        if tc.init and init:
            self.init_report = init_model(self.model, tc.init, strict=tc.init_strict)
            self.weights_from = f"train.init {tc.init}"
            if self.ctx.is_main:
                tqdm.write(self.init_report.table())
        self.layout = memory_layout(tc.channels_last, self.device)
        self.channels_last = self.layout == "all"  # the input batches too
        if self.layout == "all":
            self.model.to(memory_format=torch.channels_last)
        elif self.layout == "decoder":
            self.model.decoder.to(memory_format=torch.channels_last)
            self.model.heads.to(memory_format=torch.channels_last)

    def _setup_weighting(self) -> None:
        """The loss weighting; then the model's batch norm prepared and its frozen parts frozen, and
        the weighting bound to what stays shared (the order of the original set-up, kept)."""
        w_opts = self.loss_cfg.options.model_dump(exclude_unset=True)
        if self.loss_cfg.initial_log_vars is not None:
            w_opts["initial_log_vars"] = self.loss_cfg.initial_log_vars
        self.weighting = build_weighting(self.loss_cfg.weighting, self.tasks, **w_opts).to(self.device)
        self.weighting.check_distributed(self.ctx.world_size)
        self.reduction = reduction_for(self.ctx)
        self.model = prepare_batchnorm(self.model, self.train_cfg, self.ctx, self.device)
        self.frozen = freeze(self.model, self.train_cfg.freeze)
        if (
            self.frozen
            and self.loss_cfg.weighting == "gradnorm"
            and not any(p.requires_grad for p in self.shared_params)
        ):
            raise ConfigError("train.freeze: gradnorm takes gradient norms on the frozen encoder's last layer")
        self.weighting.bind(self.model)  # gradient methods: what is shared (after freezing; before DDP)

    def _setup_data(self) -> None:
        """The training set, the validation sets, the collation and the steps of an epoch."""
        tc = self.train_cfg
        data_cfg = self.cfg["data"]
        self.feature_cache = None
        if tc.cache_features:
            check_cacheable(self.model, data_cfg["train"], self.ctx.world_size)
        self.train_set = SeededSamples(
            build_train_data(data_cfg["train"], self.tasks, normalization=self.normalization), tc.seed
        )
        require_labels(self.train_set.dataset, "data.train")
        self.val_sets = (
            build_val_sets(data_cfg["val"], self.tasks, self.normalization, train_cfg=data_cfg["train"])
            if data_cfg.get("val")
            else {}
        )
        self.val_set = self.val_sets[None][0] if None in self.val_sets else None
        # metric names of the tasks and the monitored one are checked now, not at the first validation
        self.monitor_lower = self._monitor_direction(MultiTaskMetrics(self.tasks))
        self.collate = make_collate(self.tasks)
        self.steps_per_epoch = (
            ResumableBatchSampler.batches_per_epoch(len(self.train_set), tc.batch_size, self.ctx.world_size)
            // tc.accumulate
        )
        if self.steps_per_epoch < 1:
            raise ConfigError(
                f"data.train{dataset_source(self.train_set.dataset)}: {len(self.train_set)} samples make less "
                f"than one step of "
                f"{tc['batch_size']} x {tc['accumulate']} x {self.ctx.world_size} process(es)"
            )

    def _setup_forward(self) -> None:
        """The training forward: the model, under DDP with several processes, compiled with ``train.compile``.
        The checkpoint keeps the plain module's state either way."""
        self.ddp = None
        self.find_unused = False
        self.task_params: dict[str, set[int]] = {}
        if self.ctx.enabled:
            reach = self._probe_reach()
            self.task_params = reach or {}
            self.find_unused = find_unused_parameters(self.model, reach, self.weighting)
            self.ddp = DistributedDataParallel(
                self.model,
                device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=self.find_unused,
            )
        self.forward = self.ddp or self.model
        if self.train_cfg["compile"]:
            self.forward = torch.compile(self.forward)

    def _probe_reach(self) -> Optional[dict]:
        """Which trainable parameters each task's output reaches (see :func:`task_reach`), at the
        training crop size; None when the probe cannot run (DDP then searches every step)."""
        train = (self.cfg.get("data") or {}).get("train") or {}
        first = (train[0] if train else {}) if isinstance(train, list) else train  # several data sets
        size = (first.get("transforms") or {}).get("size") or first.get("size") or (64, 64)
        example = torch.zeros(1, 3, int(size[0]), int(size[1]), device=self.device)
        if self.channels_last:
            example = example.contiguous(memory_format=torch.channels_last)
        try:
            return task_reach(self.model, example)
        except Exception:  # e.g. an encoder that needs another input size: keep DDP's own search
            return None

    def _backward(self, loss: Optional[torch.Tensor], outputs: dict, losses: dict) -> None:
        """``loss.backward()``; under DDP without the unused-parameter search, the outputs of
        tasks with no label in the whole batch are tied in with zero gradients, so that every
        parameter DDP waits for gets one (their parameters' gradients are set back to None
        by :meth:`_release_unreached`, as a single process leaves them)."""
        absent = [n for n in outputs if n not in losses] if self.ddp is not None and not self.find_unused else []
        tensors = ([loss] if loss is not None else []) + [outputs[n] for n in absent]
        grads = ([None] if loss is not None else []) + [torch.zeros_like(outputs[n]) for n in absent]
        if tensors:
            torch.autograd.backward(tensors, grads)

    def _release_unreached(self, present: set) -> None:
        """Gradients of parameters no present task reached back to None (see :meth:`_backward`)."""
        if self.ddp is None or self.find_unused:
            return
        reached = set().union(*(self.task_params.get(n, set()) for n in present))
        for p in self.model.parameters():
            if p.requires_grad and id(p) not in reached:
                p.grad = None

    # --- checkpoints --------------------------------------------------------------------
    def _state(self) -> dict:
        return model_checkpoint(
            self.model,
            weighting=self.weighting.state_dict(),
            weighting_name=self.loss_cfg["weighting"],
            optimizer=self.optimizer.state_dict(),
            scheduler=self.scheduler.state_dict(),
            scaler=self.scaler.state_dict(),
            step=self.step,
            epoch=self.step // self.steps_per_epoch,
            best=self.best,
            epoch_losses={"sums": dict(self.epoch_loss_sums), "counts": dict(self.epoch_loss_counts)},
            rng=_rng_state(),
            skipped_steps=self.skipped_steps,
        )

    def _save(self, name: str, state: Optional[dict] = None) -> Path:
        path = self.out_dir / name
        if self.ctx.is_main:
            for p in list(self.model.parameters()) + list(self.weighting.parameters()):
                if not torch.isfinite(p).all():
                    raise TrainingError(f"step {self.step}: parameters are not finite; {path} was not written")
            atomic_save(state or self._state(), path)
        return path

    def _resume(self, path: Path) -> None:
        ckpt, _ = read_model_checkpoint(path)
        self.weights_from = f"--resume {path}"
        for key in ("optimizer", "scheduler", "step", "weighting", "rng"):
            if key not in ckpt:
                raise CheckpointError(
                    f"{path}: not a training checkpoint (no {key!r}); use it as --weights / model init instead"
                )
        changes = config_changes(ckpt["config"], self.cfg)
        if changes and not self.allow_changes:
            raise ConfigError(
                f"--resume {path}: the config differs from the checkpoint's in "
                f"{'; '.join(changes)}. Resume with the same config and --steps, or pass "
                f"--allow-changes to continue with the new values from step {ckpt['step']}"
            )
        # the new config's hyper-parameters (with initial_lr, the schedule's base learning rate)
        fresh_groups = [{k: v for k, v in g.items() if k not in ("params", "lr")} for g in self.optimizer.param_groups]
        try:
            self.model.load_state_dict(ckpt["model"])
            self.weighting.load_state_dict(ckpt["weighting"])
            self.optimizer.load_state_dict(ckpt["optimizer"])
            self.scheduler.load_state_dict(ckpt["scheduler"])
        except (RuntimeError, ValueError, KeyError, TypeError) as exc:
            raise CheckpointError(f"{path}: does not match this config ({exc})") from exc
        if changes:  # the optimiser's state came back with the old hyper-parameters: apply the new ones
            for group, fresh in zip(self.optimizer.param_groups, fresh_groups):
                group.update(fresh)
            # the new schedule at the resumed step: it sets each group's learning rate from its initial_lr
            self.scheduler = build_scheduler(self.optimizer, self.train_cfg, step=self.scheduler.last_epoch)
            tqdm.write(f"resuming {path} with changed config: {'; '.join(changes)}")
        self.scaler.load_state_dict(ckpt["scaler"])
        self.step = int(ckpt["step"])
        self.best = ckpt.get("best")
        self.skipped_steps = int(ckpt.get("skipped_steps", 0))
        self.epoch_loss_sums = dict(ckpt["epoch_losses"]["sums"])
        self.epoch_loss_counts = dict(ckpt["epoch_losses"]["counts"])
        _set_rng_state(ckpt["rng"])

    def build_feature_cache(self) -> None:
        """Compute the frozen trunk's output over the training set once (``train.cache_features``)."""
        self.train_set.epoch = 0  # one fixed copy per image: that of epoch 0
        self.feature_cache = FeatureCache.build(
            self.model,
            self.train_set,
            self.tasks,
            self.out_dir / "features",
            int(self.train_cfg["batch_size"]),
            self.device,
            float(self.train_cfg["cache_max_gb"]),
            log=tqdm.write if self.ctx.is_main else (lambda msg: None),
        )

    # --- one optimiser step ---------------------------------------------------------------
    def _loader(self, epoch: int, start_batch: int) -> DataLoader:
        tc = self.train_cfg
        self.train_set.epoch = epoch
        sampler = ResumableBatchSampler(
            len(self.train_set),
            tc.batch_size,
            tc.seed,
            epoch,
            self.ctx.rank,
            self.ctx.world_size,
            start_batch=start_batch,
            order=getattr(self.train_set.dataset, "epoch_order", None),
        )
        if self.feature_cache is not None:
            return DataLoader(self.feature_cache, batch_sampler=sampler, collate_fn=collate_cached)
        return DataLoader(
            self.train_set,
            batch_sampler=sampler,
            collate_fn=self.collate,
            num_workers=tc.workers,
            pin_memory=self.device.type == "cuda",
            generator=torch.Generator().manual_seed(tc.seed + epoch),
        )

    def _check_finite(self, losses: dict) -> Optional[str]:
        for name, value in losses.items():
            if not torch.isfinite(value.detach()).all():
                return f"task {name!r} loss is {float(value.detach())} at step {self.step + 1}"
        return None

    def _sync_weighting_grads(self) -> None:
        """Average the weighting's gradients over ranks; a task no rank saw keeps grad None."""
        if not self.ctx.enabled:
            return
        params = list(self.weighting.parameters())
        if not params:
            return
        flat = torch.stack(
            [p.grad.sum() if p.grad is not None else torch.zeros((), device=self.device) for p in params]
            + [torch.tensor(float(p.grad is not None), device=self.device) for p in params]
        )
        dist.all_reduce(flat)
        n = len(params)
        for i, p in enumerate(params):
            count = flat[n + i]
            p.grad = None if count == 0 else (flat[i] / count).reshape(p.shape).to(p.dtype)

    def _train_step(self, batches) -> Optional[dict]:
        tc, lc = self.train_cfg, self.loss_cfg
        accumulate = tc.accumulate
        self.optimizer.zero_grad(set_to_none=True)  # None grads keep absent tasks' parameters still
        totals, reports, present = [], [], set()
        for i, batch in enumerate(batches):
            cached = "shared" in batch
            batch = cached_batch_to(batch, self.device) if cached else batch_to(batch, self.device)
            sync = nullcontext() if self.ddp is None or i == accumulate - 1 else self.ddp.no_sync()
            with sync:
                with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
                    if cached:  # the trunk's output was computed once (train.cache_features)
                        outputs = self.model.forward_heads(batch["shared"], batch["global"], self.feature_cache.size)
                    else:
                        image = batch["image"]
                        if self.channels_last:
                            image = image.contiguous(memory_format=torch.channels_last)
                        outputs = self.forward(image)
                outputs = {k: v.float() for k, v in outputs.items()}
                losses = compute_losses(outputs, batch, self.tasks, self.reduction)
                problem = self._check_finite(losses)
                if problem:
                    if tc["on_nan"] == "skip":
                        self.optimizer.zero_grad(set_to_none=True)
                        self.skipped_steps += 1
                        if self.ctx.is_main:
                            tqdm.write(f"warning: {problem}: update skipped ({self.skipped_steps} so far)")
                        return None
                    origin = f"; the weights came from {self.weights_from}" if self.weights_from else ""
                    raise TrainingError(
                        f"{problem}{origin}; training stopped, last checkpoint left as it was "
                        f"(set train.on_nan: skip to skip such steps)"
                    )
                total, report = self.weighting(losses)
                if total is None:
                    self._backward(None, outputs, losses)  # under DDP every forward needs its backward
                    continue
                present.update(losses)
                # gradients a weighting writes itself are unscaled with the rest, so scaled like them
                scale = self.scaler.get_scale() if self.scaler.is_enabled() else 1.0
                self.weighting.before_backward(losses, self.shared_params, grad_scale=scale / accumulate)
                self._backward(self.scaler.scale(total / accumulate), outputs, losses)
            # the losses are the global batch's (identical on every rank), so the epoch means
            # below are those of one process on the global batch, with no further reduction
            for name, value in losses.items():
                self.epoch_loss_sums[name] = self.epoch_loss_sums.get(name, 0.0) + float(value.detach())
                self.epoch_loss_counts[name] = self.epoch_loss_counts.get(name, 0) + 1
            totals.append(float(total.detach()))
            reports.append(report)
        self._release_unreached(present)
        if not totals:
            return None
        self._sync_weighting_grads()
        head_norms = {}
        if lc["gradient_normalization"] or tc["max_grad_norm"]:
            self.scaler.unscale_(self.optimizer)
        if lc["gradient_normalization"]:
            head_norms = clip_head_gradients(self.model.heads, lc.max_head_grad_norm)
        if tc["max_grad_norm"]:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), tc.max_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return {"total": sum(totals) / len(totals), "report": reports[-1], "head_grad_norm": head_norms}

    @property
    def shared_params(self) -> list:
        """The last shared layer (the encoder's, which every task reads), for weighting hooks."""
        return self.model.encoder.shared_parameters()

    # --- validation ----------------------------------------------------------------------------
    def validate(self) -> Optional[dict]:
        """Metrics and losses of the validation set; under torchrun every rank scores its shard
        (samples rank, rank + W, ...) and the sums are all-reduced, so all ranks return the
        numbers of the whole set, equal to one process's."""
        if not self.val_sets:
            return None
        self.model.eval()
        results = {}
        for name, (dataset, tasks) in self.val_sets.items():
            shard = torch.utils.data.Subset(dataset, range(self.ctx.rank, len(dataset), self.ctx.world_size))
            loader = DataLoader(
                shard,
                batch_size=int(self.train_cfg["batch_size"]),
                shuffle=False,
                collate_fn=make_collate(tasks),
                num_workers=int(self.train_cfg["workers"]),
            )
            results[name] = evaluate(
                self.model, loader, tasks, self.device, autocast_dtype=self.amp_dtype, reduction=self.reduction
            )
        set_train_mode(self.model, self.train_cfg)
        if None in results:
            return results[None]
        # several named sets: metrics and losses keyed "<set>/<task>" (e.g. nyud/segm)
        return {
            part: {f"{name}/{task}": value for name, r in results.items() for task, value in r[part].items()}
            for part in ("metrics", "loss")
        }

    def _monitor_direction(self, metrics: MultiTaskMetrics) -> bool:
        monitor = self.train_cfg["monitor"]
        if monitor == "loss":
            return True
        named = [n for n in self.val_sets if n is not None]
        if named:  # "<set>/<task>/<metric>"
            name, _, rest = monitor.partition("/")
            if name not in named:
                raise ConfigError(
                    f"train.monitor: {monitor!r}: with named validation sets, '<set>/<task>/<metric>' "
                    f"where <set> is one of {', '.join(named)}"
                )
            labelled = [t.name for t in self.val_sets[name][1]]
            if rest.partition("/")[0] not in labelled:
                raise ConfigError(f"train.monitor: {monitor!r}: data set {name!r} labels only {', '.join(labelled)}")
            return metrics.lower_is_better(rest)
        first = monitor.partition("/")[0]
        if monitor.count("/") >= 2 and first not in metrics.metrics:
            raise ConfigError(
                f"train.monitor: {monitor!r} reads as '<set>/<task>/<metric>', but data.val names no "
                f"validation set (tasks: {', '.join(metrics.metrics)})"
            )
        return metrics.lower_is_better(monitor)

    def _monitored(self, result: dict) -> float:
        """The value ``best.pt`` tracks, as 'smaller is better' (each metric declares its direction)."""
        monitor = self.train_cfg["monitor"]
        if monitor == "loss":
            return sum(result["loss"].values())
        named = any(n is not None for n in self.val_sets)
        parts = monitor.split("/")
        task, metric = ("/".join(parts[:2]), "/".join(parts[2:])) if named else (parts[0], "/".join(parts[1:]))
        try:
            value = float(result["metrics"][task][metric])
        except KeyError as exc:
            raise ConfigError(
                f"train.monitor: {monitor!r} is not among the validation metrics (is it in the task's metrics list?)"
            ) from exc
        return value if self.monitor_lower else -value

    # --- the loop ---------------------------------------------------------------------------------
    def fit(self, until: Optional[int] = None) -> dict:
        """Train to ``train.steps``; returns a summary (final validation, paths, status).

        ``until`` stops early at that step, saving ``last.pt`` as an interruption would
        (the schedule still runs to ``train.steps``), so a later resume continues the run.
        """
        tc = self.train_cfg
        total_steps = tc.steps
        stop_step = min(total_steps, until) if until else total_steps
        logger = None
        if self.ctx.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            save_config(self.cfg, self.out_dir / "config.yaml")
            logger = RunLogger(self.out_dir, tensorboard=tc.tensorboard, start_step=self.step)
            if self.init_report is not None and self.step == 0:
                write_report(self.init_report, self.out_dir)
                logger.log("init", 0, source=self.init_report.source, **self.init_report.counts())
            if self.frozen and self.step == 0:
                logger.log("freeze", 0, paths=list(tc.freeze), parameters=len(self.frozen))
        if tc.cache_features and self.feature_cache is None:
            self.build_feature_cache()
        bar = tqdm(total=total_steps, initial=self.step, desc="train", disable=not self.progress, dynamic_ncols=True)
        status, last_val, t0 = "completed", None, time.time()
        set_train_mode(self.model, tc)
        try:
            with _StopRequest() as stop:
                stop.graceful = True
                while self.step < stop_step and not any_rank(stop.signal is not None, self.ctx, self.device):
                    epoch, in_epoch = divmod(self.step, self.steps_per_epoch)
                    iterator = iter(self._loader(epoch, in_epoch * tc.accumulate))
                    for _ in range(in_epoch, self.steps_per_epoch):
                        batches = [next(iterator) for _ in range(tc.accumulate)]
                        out = self._train_step(batches)
                        self.scheduler.step()
                        self.step += 1
                        bar.update(1)
                        if out is not None:
                            self._log_step(out, logger, bar)
                        if self.step % self.steps_per_epoch == 0:
                            self._epoch_end(logger)
                        if self.step % tc.val_every == 0 or self.step == total_steps:
                            last_val = self._validate_and_keep_best(logger)
                        if self.step % tc.ckpt_every == 0 or self.step == total_steps:
                            self._save("last.pt")
                        if self.step >= stop_step or any_rank(stop.signal is not None, self.ctx, self.device):
                            break
                if self.step < total_steps:
                    status = "interrupted" if self.step < stop_step else "paused"
                    path = self._save("last.pt")
                    if self.ctx.is_main and status == "interrupted":
                        tqdm.write(
                            f"stopped by signal {stop.signal or 'on another rank'} at step {self.step}; saved {path}"
                        )
                stop.settle()
        finally:
            bar.close()
            if logger is not None:
                logger.close()
        if status == "completed" and self.skipped_steps > tc.max_skipped * self.step:
            status = "too_many_skipped"
        summary = {
            "status": status,
            "step": self.step,
            "seconds": time.time() - t0,
            "skipped_steps": self.skipped_steps,
            "out_dir": str(self.out_dir),
            "last": str(self.out_dir / "last.pt"),
            "best": str(self.out_dir / "best.pt"),
            "validation": last_val,
            "rank": self.ctx.rank,
        }
        if self.ddp is not None:
            summary["ddp_find_unused_parameters"] = self.find_unused
        if self.ctx.is_main and status == "completed" and tc["plots"]:
            from .plots import plot_run

            summary["plots"] = [str(p) for p in plot_run(self.out_dir)]
        return summary

    def _log_step(self, out: dict, logger: Optional[RunLogger], bar) -> None:
        report = out["report"]
        if self.progress:
            bar.set_postfix_str(
                " ".join(
                    f"{name}:{r['loss']:.3g}"
                    + (f" s2={r['sigma2']:.2g}" if "sigma2" in r else "")
                    + f" w={r['weight']:.2g}"
                    for name, r in report.items()
                )
            )
        every = self.train_cfg.log_every
        if logger is None or (self.step % every and self.step not in (1, self.train_cfg.steps)):
            return
        fields = {"loss": {}, "weight": {}, "weighted": {}, "sigma2": {}}
        for name, r in report.items():
            for key in fields:
                if key in r:
                    fields[key][name] = float(r[key])
        logger.log(
            "step",
            self.step,
            total=out["total"],
            lr=self.optimizer.param_groups[0]["lr"],
            **{k: v for k, v in fields.items() if v},
            **({"head_grad_norm": out["head_grad_norm"]} if out["head_grad_norm"] else {}),
        )

    def _validate_and_keep_best(self, logger: Optional[RunLogger]) -> Optional[dict]:
        result = self.validate()
        if result is None:
            return None
        value = self._monitored(result)
        if logger is not None:
            logger.log("val", self.step, metrics=result["metrics"], loss=result["loss"])
        if self.progress:
            tqdm.write(f"step {self.step} validation:\n{format_table(result['metrics'], detail=False)}")
        if self.best is None or value < self.best:
            self.best = value
            self._save("best.pt")
        return result

    def _epoch_end(self, logger: Optional[RunLogger]) -> None:
        means = {k: self.epoch_loss_sums[k] / self.epoch_loss_counts[k] for k in self.epoch_loss_sums}
        self.weighting.epoch_end(means)
        if logger is not None:
            logger.log("epoch", self.step, epoch=self.step // self.steps_per_epoch, loss=means)
        self.epoch_loss_sums, self.epoch_loss_counts = {}, {}

    def close(self) -> None:
        cleanup(self.ctx)


def memory_layout(channels_last, device: torch.device) -> str:
    """``train.channels_last`` as the layout the trainer uses: ``"all"``, ``"decoder"`` or ``"none"``.

    ``auto`` is ``decoder`` on the CPU: PyTorch's max pooling and convolutions run several
    times faster in channels_last there, but its train-mode BatchNorm in channels_last computes
    batch statistics about 30x less accurately than in NCHW (docs/benchmarks.md), which took
    the first gradient of the nyud network from 0.6% to 5% away from the float64 one; the
    decoder and heads have no BatchNorm, so in channels_last they keep the NCHW accuracy and
    most of the speed. On CUDA ``auto`` is off until measured there (scripts/gpu_check.sh).
    """
    if channels_last == "auto":
        return "decoder" if device.type == "cpu" else "none"
    if channels_last == "decoder":
        return "decoder"
    return "all" if channels_last else "none"


def remove_stale_temporaries(out_dir: Path) -> list[Path]:
    """Remove the temporary files of checkpoint and log writes that a killed run left in ``out_dir``."""
    removed = []
    for pattern in (".*.pt.*.tmp", ".log.jsonl.*.tmp", ".steps.csv.*.tmp", ".hydranet-probe.*"):
        for path in Path(out_dir).glob(pattern):
            if path.is_file():
                path.unlink(missing_ok=True)
                removed.append(path)
    return removed


def train(
    config: Any,
    out_dir: str | Path,
    device: str = "cpu",
    resume: Any = None,
    progress: bool = True,
    until: Optional[int] = None,
    allow_changes: bool = False,
) -> dict:
    """Train from ``config`` into ``out_dir`` (see :class:`Trainer`); returns the run summary.

    ``until``: stop at that step with ``last.pt`` saved (see :meth:`Trainer.fit`).
    """
    with _StopRequest():  # a signal while the run is being set up stops it at once
        trainer = Trainer(config, out_dir, device=device, resume=resume, progress=progress, allow_changes=allow_changes)
        try:
            return trainer.fit(until=until)
        finally:
            trainer.close()
