#!/usr/bin/env python
"""Loss weighting when two tasks' targets differ in scale by 1000x (a small, seeded CPU toy).

A shared MLP trunk with two regression heads learns, from the same 8 inputs,
``length`` (metres, std ~1) and ``mass`` (grams, std ~1000), both with the L1 loss, so the raw
losses differ by about 1000x. Compared, with identical data, initialisation and batches:

* equal weights (= fixed weight 1 on the large task),
* fixed weights 1e-3, 1e-2, 1e-1 on the large task (1 on the small one),
* uncertainty weighting (Kendall et al. 2018; log-variances in their own Adam group, no
  weight decay), once per log-variance learning rate in ``--log-var-lrs`` (default 1e-3 = the
  network's, 2e-2 and 1e-1: they must travel about log L = 7.6 for the large task, and Adam's
  second-moment memory of the huge early gradients slows them well below lr per step),
* the same equal and uncertainty runs with the regression targets normalised
  (``options: {target_mean, target_std}`` from the training set; the head predicts z-scores).

Printed: the final test MAE of each task in its own units and divided by the task's target std
(0.80 is what predicting the mean scores on Gaussian-like targets: "unlearnt"), and for UW the
learnt sigma^2 per task.

    python scripts/weighting_experiment.py            # about 20-30 s on one CPU core
    python scripts/weighting_experiment.py --steps 300 --json out.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hydranet.losses import build_weighting, compute_losses, denormalize_prediction, weighting_param_group  # noqa: E402
from hydranet.tasks import parse_task  # noqa: E402

SCALE = 1000.0  # grams vs metres


def make_data(n: int, seed: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Inputs x (n x 8) and targets {length: n x 1 metres, mass: n x 1 grams} sharing latent features."""
    g = torch.Generator().manual_seed(1234)  # the task itself is fixed; ``seed`` draws the samples
    proj = torch.randn(8, 6, generator=g) / 8**0.5
    u_len, u_mass = torch.randn(6, 1, generator=g), torch.randn(6, 1, generator=g)
    gs = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=gs)
    h = torch.tanh(2 * x @ proj)
    length = h @ u_len + 0.5 * h[:, :1] * h[:, 1:2] + 0.02 * torch.randn(n, 1, generator=gs)
    mass = SCALE * (h @ u_mass + 0.5 * h[:, 2:3] * h[:, 3:4] + 0.02 * torch.randn(n, 1, generator=gs))
    return x, {"length": length, "mass": mass}


class TwoHeadMLP(nn.Module):
    def __init__(self, width: int = 64):
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(8, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU())
        self.heads = nn.ModuleDict({"length": nn.Linear(width, 1), "mass": nn.Linear(width, 1)})

    def forward(self, x):
        f = self.trunk(x)
        return {name: head(f) for name, head in self.heads.items()}


def make_tasks(train_targets: Optional[dict] = None):
    """The two task specs; with ``train_targets`` their targets are normalised by the train stats."""
    tasks = []
    for name in ("length", "mass"):
        raw = {"name": name, "kind": "regression", "outputs": 1, "loss": "l1"}
        if train_targets is not None:
            y = train_targets[name]
            raw["options"] = {"target_mean": float(y.mean()), "target_std": float(y.std())}
        tasks.append(parse_task(raw))
    return tasks


def run_one(
    label: str,
    strategy: str,
    options: dict,
    normalise: bool,
    data,
    steps: int,
    seed: int,
    batch_size: int,
    lr: float,
    log_var_lr: float,
) -> dict:
    (x_tr, y_tr), (x_te, y_te) = data
    tasks = make_tasks(y_tr if normalise else None)
    options = dict(options)
    log_var_lr = options.pop("log_var_lr", log_var_lr)
    torch.manual_seed(seed)
    model = TwoHeadMLP()
    weighting = build_weighting(strategy, tasks, **options)
    opt = torch.optim.Adam([{"params": model.parameters(), "lr": lr}, weighting_param_group(weighting, log_var_lr)])
    g = torch.Generator().manual_seed(seed + 1)
    for _ in range(steps):
        idx = torch.randint(0, x_tr.shape[0], (batch_size,), generator=g)
        batch = {
            "targets": {k: v[idx] for k, v in y_tr.items()},
            "present": {k: torch.ones(batch_size, dtype=torch.bool) for k in y_tr},
        }
        losses = compute_losses(model(x_tr[idx]), batch, tasks)
        total, _ = weighting(losses)
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        out = model(x_te)
    row = {"run": label, "strategy": strategy, "normalised": normalise}
    for spec in tasks:
        pred = denormalize_prediction(spec, out[spec.name])
        mae = (pred - y_te[spec.name]).abs().mean().item()
        row[f"{spec.name}_mae"] = mae
        row[f"{spec.name}_rel"] = mae / y_te[spec.name].std().item()
    if strategy == "uncertainty":
        row["sigma2"] = weighting.sigma2()
    return row


def run_experiment(
    steps: int = 2000,
    seed: int = 0,
    batch_size: int = 128,
    lr: float = 1e-3,
    log_var_lrs: Sequence[float] = (1e-3, 2e-2, 1e-1),
    n_train: int = 4096,
    n_test: int = 2048,
) -> list[dict]:
    """Train every configuration once; returns one row per run (see ``main`` for the table).

    UW runs once per log-variance learning rate in ``log_var_lrs``; the normalised-target UW
    run uses the last one.
    """
    data = (make_data(n_train, seed), make_data(n_test, seed + 100))
    runs = [("equal (= fixed 1)", "equal", {}, False)]
    runs += [(f"fixed mass={w:g}", "fixed", {"weights": {"mass": w}}, False) for w in (1e-3, 1e-2, 1e-1)]
    runs += [(f"uncertainty, log-var lr {v:g}", "uncertainty", {"log_var_lr": v}, False) for v in log_var_lrs]
    runs += [
        ("equal, normalised targets", "equal", {}, True),
        (f"uncertainty, normalised, lr {log_var_lrs[-1]:g}", "uncertainty", {"log_var_lr": log_var_lrs[-1]}, True),
    ]
    rows = []
    for label, strategy, options, normalise in runs:
        rows.append(run_one(label, strategy, options, normalise, data, steps, seed, batch_size, lr, log_var_lrs[-1]))
    y_tr, y_te = data[0][1], data[1][1]
    base = {"run": "predict the train mean", "strategy": "-", "normalised": False}
    for name in ("length", "mass"):
        mae = (y_te[name] - y_tr[name].mean()).abs().mean().item()
        base[f"{name}_mae"], base[f"{name}_rel"] = mae, mae / y_te[name].std().item()
    rows.append(base)
    return rows


def format_table(rows: Sequence[dict]) -> str:
    head = (
        f"| {'run':<32} | {'length MAE (m)':>14} | {'length MAE/std':>14} | {'mass MAE (g)':>12} | "
        f"{'mass MAE/std':>12} | {'UW sigma^2 (length, mass)':>25} |"
    )
    lines = [head, "|" + "|".join("-" * (len(c)) for c in head.split("|")[1:-1]) + "|"]
    for r in rows:
        s2 = r.get("sigma2")
        s2_text = f"{s2['length']:.3g}, {s2['mass']:.3g}" if s2 else ""
        lines.append(
            f"| {r['run']:<32} | {r['length_mae']:>14.4f} | {r['length_rel']:>14.3f} | "
            f"{r['mass_mae']:>12.1f} | {r['mass_rel']:>12.3f} | {s2_text:>25} |"
        )
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate of the network")
    parser.add_argument(
        "--log-var-lrs",
        default="0.001,0.02,0.1",
        help="Adam learning rates of the UW log-variances, one UW run each (comma-separated)",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: leave as is)")
    parser.add_argument("--json", type=Path, help="also write the rows to this file")
    args = parser.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    log_var_lrs = [float(v) for v in args.log_var_lrs.split(",") if v.strip()]
    rows = run_experiment(args.steps, args.seed, args.batch_size, args.lr, log_var_lrs)
    print(
        f"steps={args.steps} seed={args.seed} batch={args.batch_size} lr={args.lr} "
        f"({time.perf_counter() - start:.1f} s)"
    )
    print(format_table(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return rows


if __name__ == "__main__":
    main()
