"""torch.distributed set-up for ``torchrun``: one process per device, rank 0 writes."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional

import torch
import torch.distributed as dist

from ..losses import LocalReduction


@dataclass
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False  # this process created the group (and destroys it in cleanup)

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str) -> DistContext:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1), else single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext()
    ctx = DistContext(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(ctx.local_rank)
        dist.init_process_group(backend=backend)
        ctx.owns_group = True
    return ctx


def device_for(ctx: DistContext, device: str) -> torch.device:
    """Each rank uses its own GPU (cuda:LOCAL_RANK); CPU ranks share the CPU."""
    if device.startswith("cuda") and ctx.enabled:
        return torch.device("cuda", ctx.local_rank)
    return torch.device(device)


def any_rank(flag: bool, ctx: DistContext, device: torch.device | str = "cpu") -> bool:
    """True on every rank when ``flag`` is true on any rank (e.g. a stop request)."""
    if not ctx.enabled:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


class RankReduction:
    """Sums and maxima over all ranks (detached copies), for :func:`hydranet.losses.compute_losses`."""

    def __init__(self, ctx: DistContext):
        self.world_size = ctx.world_size

    def _reduce(self, t: torch.Tensor, op) -> torch.Tensor:
        t = t.detach().clone()
        dist.all_reduce(t, op=op)
        return t

    def sum(self, t: torch.Tensor) -> torch.Tensor:
        return self._reduce(t, dist.ReduceOp.SUM)

    def max(self, t: torch.Tensor) -> torch.Tensor:
        return self._reduce(t, dist.ReduceOp.MAX)


def reduction_for(ctx: DistContext):
    """The loss-statistics reduction of this process: over all ranks under torchrun, else local."""

    return RankReduction(ctx) if ctx.enabled else LocalReduction()


def cleanup(ctx: DistContext) -> None:
    """Leave the process group if this process created it (a caller's own group stays)."""
    if ctx.enabled and ctx.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def task_reach(model: torch.nn.Module, example: torch.Tensor) -> dict[str, set[int]]:
    """``{task: ids of the trainable parameters its output depends on}``, from one probe
    forward (eval mode: no BatchNorm statistics change) and one backward per task."""
    modes = {m: m.training for m in model.modules()}  # frozen BatchNorm layers stay as they were
    model.eval()
    trainable = [p for p in model.parameters() if p.requires_grad]
    saved = [p.grad for p in trainable]
    reach: dict[str, set[int]] = {}
    try:
        outputs = model(example)
        names = list(outputs)
        for i, name in enumerate(names):
            for p in trainable:
                p.grad = None
            outputs[name].float().sum().backward(retain_graph=i < len(names) - 1)
            reach[name] = {id(p) for p in trainable if p.grad is not None}
    finally:
        for p, g in zip(trainable, saved):
            p.grad = g
        for m, mode in modes.items():
            m.training = mode
    return reach


def find_unused_parameters(model: torch.nn.Module, reach: Optional[dict], weighting=None) -> bool:
    """DDP's ``find_unused_parameters`` for this model: needed only when some trainable parameter
    is reached from no task's output (``reach`` from :func:`task_reach`; None: the probe failed),
    or when the weighting back-propagates through parts of the model itself (its
    ``ddp_find_unused_parameters`` attribute). Otherwise every parameter gets a gradient every
    step: a task without labels on this rank contributes zero sums tied to its prediction
    (:func:`hydranet.losses.finish_losses`), and the trainer ties the outputs of tasks absent
    from the whole batch in with zero gradients, so the per-step graph search is not needed."""
    if reach is None or getattr(weighting, "ddp_find_unused_parameters", False):
        return True
    reached = set().union(*reach.values()) if reach else set()
    return any(id(p) not in reached for p in model.parameters() if p.requires_grad)
