"""Inter-task affinity by lookahead (TAG: Fifty, Amid, Zhao, Yu, Anil and Finn, "Efficiently
identifying task groupings for multi-task learning", NeurIPS 2021), and task groupings from it.

During one ordinary training run, every ``every`` steps and before the real update, each task
``i`` in turn takes a *lookahead* step on the shared parameters (encoder and decoder) with its
own gradient only; the affinity of ``i`` onto ``j`` is the relative drop of ``j``'s loss on
the same batch::

    Z[i -> j] = 1 - L_j(batch; shared - step_i, head_j) / L_j(batch; shared, head_j)

averaged over the measured steps. Positive: ``i``'s update helps ``j``; negative: it hurts.
The lookahead step has the size of a real step: the paper's SGD step ``lr * g_i`` for SGD,
and for Adam(W) ``lr * g_i / (sqrt(v_hat) + eps)``, ``v_hat`` the optimiser's bias-corrected
second moments updated with ``g_i`` as Adam would (no momentum: the step is the task's own).
BatchNorm statistics are restored after each lookahead forward, so the run itself is the run
``hydranet train`` would do.

Groupings (:func:`best_groupings`): for k = 1 .. T networks, the partition of the tasks into
k groups with the highest total affinity, where a task's score in its group is the mean
affinity onto it from the group's other members (0 alone), as TAG scores a group.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any, Optional, Sequence

import torch

from ..config import load_config
from ..data.collate import batch_to
from ..data.io import writable_dir
from ..errors import ConfigError
from ..losses import compute_losses
from .trainer import Trainer


def _lookahead_step(optimizer: torch.optim.Optimizer, params: list, grads: list) -> list:
    """The parameter change one real step along ``grads`` alone would make (see the module docstring)."""
    steps = []
    for p, g in zip(params, grads):
        group = next(gr for gr in optimizer.param_groups if any(q is p for q in gr["params"]))
        lr = float(group["lr"])
        if g is None:
            steps.append(None)
        elif "betas" in group:  # Adam(W): the task's gradient through the optimiser's second moments
            state = optimizer.state.get(p, {})
            beta2, t = group["betas"][1], float(state.get("step", 0)) + 1
            v = state.get("exp_avg_sq", torch.zeros_like(g))
            v_hat = (beta2 * v + (1 - beta2) * g * g) / (1 - beta2**t)
            steps.append(lr * g / (v_hat.sqrt() + group["eps"]))
        else:
            steps.append(lr * g)
    return steps


def _affinity_once(trainer, batch) -> torch.Tensor:
    """One lookahead measurement on ``batch``: ``Z`` (T x T, NaN where a task has no label)."""

    model = trainer.model
    names = [t.name for t in trainer.tasks]
    heads = {id(p) for p in model.heads.parameters()}
    shared = [p for p in model.parameters() if p.requires_grad and id(p) not in heads]
    batch = batch_to(batch, trainer.device)
    buffers = {k: v.clone() for k, v in model.named_buffers()}
    losses = compute_losses(model(batch["image"]), batch, trainer.tasks)
    present = [n for n in names if n in losses]
    base = {n: float(losses[n].detach()) for n in present}
    z = torch.full((len(names), len(names)), float("nan"))
    # every task's gradient before any parameter moves (the lookaheads change them in place)
    all_grads = {i: torch.autograd.grad(losses[i], shared, retain_graph=True, allow_unused=True) for i in present}
    del losses
    for i in present:
        steps = _lookahead_step(trainer.optimizer, shared, list(all_grads[i]))
        with torch.no_grad():
            for p, s in zip(shared, steps):
                if s is not None:
                    p.sub_(s)
            after = compute_losses(model(batch["image"]), batch, trainer.tasks)
            for p, s in zip(shared, steps):
                if s is not None:
                    p.add_(s)
        for j in present:
            if j in after and base[j] != 0:
                z[names.index(i), names.index(j)] = 1.0 - float(after[j]) / base[j]
    with torch.no_grad():  # the lookahead forwards must not move BatchNorm's running statistics
        for k, v in model.named_buffers():
            v.copy_(buffers[k])
    return z


def measure_affinity(config: Any, out_dir: str | Path, steps: Optional[int] = None, every: int = 5, device="cpu"):
    """Train ``config`` (``steps`` overrides ``train.steps``) and measure TAG affinities.

    Returns ``{"tasks", "affinity" (T x T list, row i onto column j), "measured_steps",
    "groupings", "run"}``. Single process only.
    """

    if every < 1:
        raise ConfigError(f"--every: must be >= 1, got {every}")
    cfg = load_config(config)
    if steps is not None:
        cfg.setdefault("train", {})["steps"] = int(steps)
    if len(cfg.get("tasks") or []) < 2:
        raise ConfigError("tasks: affinity needs at least two tasks")
    cfg.setdefault("train", {}).update(plots=False)
    writable_dir(Path(out_dir))
    trainer = Trainer(cfg, out_dir, device=device, progress=False)
    if trainer.ctx.world_size > 1:
        raise ConfigError("hydranet affinity: run it as one process (not under torchrun)")
    names = [t.name for t in trainer.tasks]
    total, count = torch.zeros(len(names), len(names)), torch.zeros(len(names), len(names))
    measured = 0
    try:
        n_steps = int(trainer.train_cfg.steps)
        while trainer.step < n_steps:
            epoch, _ = divmod(trainer.step, trainer.steps_per_epoch)
            for batch in trainer._loader(epoch, 0):
                if trainer.step >= n_steps:
                    break
                if trainer.step % every == 0:
                    z = _affinity_once(trainer, batch)
                    ok = ~torch.isnan(z)
                    total[ok] += z[ok]
                    count[ok] += 1
                    measured += 1
                trainer._train_step([batch])
                trainer.scheduler.step()
                trainer.step += 1
        trainer._save("last.pt")
    finally:
        trainer.close()
    affinity = torch.where(count > 0, total / count.clamp_min(1), torch.full_like(total, float("nan")))
    matrix = [[float(v) for v in row] for row in affinity]
    return {
        "tasks": names,
        "affinity": matrix,
        "measured_steps": measured,
        "every": every,
        "steps": n_steps,
        "groupings": best_groupings(names, matrix),
        "run": str(out_dir),
    }


def _partitions(items: Sequence[str]):
    """Every partition of ``items`` into non-empty groups (Bell(n) of them)."""
    if not items:
        yield []
        return
    first, rest = items[0], items[1:]
    for part in _partitions(rest):
        for i in range(len(part)):
            yield part[:i] + [[first, *part[i]]] + part[i + 1 :]
        yield [[first], *part]


def group_score(group: Sequence[str], names: Sequence[str], affinity) -> float:
    """Sum over the group's tasks of the mean affinity onto each from the others (0 alone)."""
    score = 0.0
    for j in group:
        others = [affinity[names.index(i)][names.index(j)] for i in group if i != j]
        others = [v for v in others if not math.isnan(v)]
        score += sum(others) / len(others) if others else 0.0
    return score


def best_groupings(names: Sequence[str], affinity) -> list:
    """For each k = 1 .. T: the partition into k groups of the highest total affinity."""
    if len(names) > 10:
        raise ConfigError(f"tasks: grouping {len(names)} tasks exhaustively is too many (at most 10)")
    best: dict[int, tuple] = {}
    for part in _partitions(list(names)):
        score = sum(group_score(g, names, affinity) for g in part)
        k = len(part)
        if k not in best or score > best[k][0] + 1e-12:
            best[k] = (score, sorted((sorted(g, key=list(names).index) for g in part), key=lambda g: names.index(g[0])))
    return [{"k": k, "groups": best[k][1], "score": best[k][0]} for k in sorted(best)]


def pair_benefit(names: Sequence[str], affinity) -> dict:
    """``{"a+b": (Z[a->b] + Z[b->a]) / 2}``: the predicted benefit of training a and b together."""
    out = {}
    for a, b in itertools.combinations(names, 2):
        i, j = names.index(a), names.index(b)
        out[f"{a}+{b}"] = (affinity[i][j] + affinity[j][i]) / 2
    return out


def heatmap(names: Sequence[str], affinity, path: str | Path) -> Path:
    """Draw the affinity matrix (rows: the task whose step is taken; columns: the task measured)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    values = torch.tensor(affinity).numpy()
    # the colour scale follows the off-diagonal entries (a task's effect on itself dwarfs them)
    n = len(names)
    off = [abs(values[i, j]) for i in range(n) for j in range(n) if i != j and values[i, j] == values[i, j]]
    bound = float(max(off, default=0.0) or 1.0)
    fig, ax = plt.subplots(figsize=(1.1 * len(names) + 2, 1.0 * len(names) + 1.5))
    im = ax.imshow(values, cmap="RdBu", vmin=-bound, vmax=bound)
    ax.set_xticks(range(len(names)), names, rotation=40, ha="right")
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("onto task (loss measured)")
    ax.set_ylabel("step of task")
    for i in range(len(names)):
        for j in range(len(names)):
            ax.text(j, i, f"{values[i, j]:.2g}", ha="center", va="center", fontsize=8)
    fig.colorbar(im, ax=ax, shrink=0.8)
    ax.set_title("inter-task affinity (TAG lookahead)\ncolours scaled to the off-diagonal entries", fontsize=10)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def format_affinity(result: dict) -> str:
    """The matrix and the groupings as text."""
    names, z = result["tasks"], result["affinity"]
    width = max(8, *(len(n) for n in names)) + 1
    lines = [
        f"inter-task affinity Z[row -> column] over {result['measured_steps']} lookahead steps "
        f"(+ = the row task's step lowers the column task's loss)",
        " " * width + "".join(n.rjust(width) for n in names),
    ]
    for name, row in zip(names, z):
        lines.append(name.ljust(width) + "".join(f"{v:+.4f}".rjust(width) for v in row))
    lines.append("")
    lines.append("groupings by total affinity:")
    for g in result["groupings"]:
        groups = " | ".join(", ".join(group) for group in g["groups"])
        lines.append(f"  k={g['k']}: {groups}   (score {g['score']:+.4f})")
    return "\n".join(lines)
