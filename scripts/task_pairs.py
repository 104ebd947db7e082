r"""Which tasks should share a network? The exhaustive reference against ``hydranet affinity``.

On the synthetic scenes, trains every task alone and every pair of tasks together (the same
network, steps and data for every run), and takes each pair's Delta_m against its two
single-task runs as the *measured* benefit of training the pair together. One more run with
all the tasks measures the TAG affinities (:mod:`hydranet.training.affinity`, what
``hydranet affinity`` does); the *predicted* benefit of a pair is the mean of its two
affinities. The report gives both per pair, Spearman's rank correlation between them, and
the grouping the affinities propose next to the one the pairs' Delta_m would choose.

Each run's result is written to ``--out/records/<name>.json`` as it finishes; a second call
reuses them.

    nice -n 19 python scripts/task_pairs.py --out /tmp/task_pairs --report docs/task_pairs
    python scripts/task_pairs.py --tiny --out /tmp/pairs_tiny      # smoke test
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import time
from pathlib import Path

# the metrics of Delta_m per task (pixel accuracy, RMSE: never 0 on a trained model, unlike delta1)
PAIR_METRICS = {
    "segm": ["miou", "pixel_acc"],
    "depth": ["abs_rel", "rmse"],
    "normals": ["mean_angle", "median_angle"],
    "count": ["mae", "rmse"],
    "dominant": ["top1"],
}
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def config(args, tasks) -> dict:
    """The shipped synthetic config shrunk to the study's size, for ``tasks``."""
    from hydranet.config import load_config

    cfg = load_config("synthetic")
    h, w = args.size
    cfg["tasks"] = [t for t in cfg["tasks"] if t["name"] in tasks]
    cfg["model"]["width"] = args.width
    cfg["model"]["encoder_options"] = {"width_mult": args.width_mult}
    train = {"type": "synthetic", "split": "train", "num_samples": args.train_samples, "size": [h, w], "seed": 0}
    train["transforms"] = dict(cfg["data"]["train"]["transforms"], size=[h, w])
    cfg["data"] = {
        "train": train,
        "val": {"type": "synthetic", "split": "val", "num_samples": args.val_samples, "size": [h, w], "seed": 0},
    }
    cfg["train"].update(
        steps=args.steps,
        batch_size=args.batch_size,
        seed=args.seed,
        lr=args.lr,
        warmup_steps=max(1, args.steps // 10),
        val_every=args.steps,
        ckpt_every=args.steps,
        log_every=max(1, args.steps // 10),
        monitor="loss",
        plots=False,
        tensorboard=False,
    )
    cfg["loss"] = {"weighting": "equal"}
    return cfg


def settings(args) -> dict:
    keys = ("tasks", "steps", "size", "width", "width_mult", "batch_size", "lr", "train_samples", "val_samples", "seed")
    return {k: list(v) if isinstance(v, tuple) else v for k, v in vars(args).items() if k in keys}


def run(args, name: str, tasks) -> dict:
    """Train one task set (or reuse its record); returns ``{"name", "tasks", "metrics", "seconds"}``."""
    import torch

    from hydranet.training.trainer import Trainer

    record = Path(args.out) / "records" / f"{name}.json"
    if record.is_file():
        done = json.loads(record.read_text())
        if done.get("settings") == settings(args):
            return done
    torch.set_num_threads(1)
    t0 = time.time()
    trainer = Trainer(config(args, tasks), Path(args.out) / "runs" / name, progress=False)
    try:
        summary = trainer.fit()
    finally:
        trainer.close()
    result = {
        "name": name,
        "tasks": list(tasks),
        "metrics": summary["validation"]["metrics"],
        "seconds": time.time() - t0,
        "settings": settings(args),
    }
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps(result, indent=1))
    return result


def affinity_run(args) -> dict:
    from hydranet.training.affinity import measure_affinity

    record = Path(args.out) / "records" / "affinity.json"
    if record.is_file():
        done = json.loads(record.read_text())
        if done.get("settings") == settings(args):
            return done
    t0 = time.time()
    result = measure_affinity(config(args, args.tasks), Path(args.out) / "runs" / "affinity", every=args.every)
    result.update(seconds=time.time() - t0, settings=settings(args))
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps(result, indent=1))
    return result


def summarize(args, singles: dict, pairs: dict, affinity: dict) -> dict:
    from scipy.stats import spearmanr

    from hydranet.evaluation.delta_m import delta_m
    from hydranet.training.affinity import best_groupings, pair_benefit

    predicted = pair_benefit(affinity["tasks"], affinity["affinity"])
    measured = {}
    for (a, b), r in pairs.items():
        base = {a: singles[a]["metrics"][a], b: singles[b]["metrics"][b]}
        measured[f"{a}+{b}"] = delta_m(r["metrics"], base, {t: PAIR_METRICS[t] for t in (a, b)})
    keys = list(measured)
    rho, p = spearmanr([predicted[k] for k in keys], [measured[k] for k in keys]) if len(keys) > 2 else (None, None)
    # the grouping the measured pair Delta_m would choose: the same group score with Delta_m as affinity
    names = list(args.tasks)
    pair_matrix = [
        [0.0 if i == j else measured.get(f"{i}+{j}", measured.get(f"{j}+{i}")) for j in names] for i in names
    ]
    return {
        "pairs": {k: {"predicted": predicted[k], "measured_delta_m": measured[k]} for k in keys},
        "spearman": rho if rho is None else float(rho),
        "spearman_p": p if p is None else float(p),
        "groupings_affinity": affinity["groupings"],
        "groupings_pairs": best_groupings(names, pair_matrix),
        "affinity": affinity["affinity"],
        "tasks": names,
        "seconds": sum(r["seconds"] for r in [*singles.values(), *pairs.values()]) + affinity.get("seconds", 0),
    }


def markdown(summary: dict, args) -> str:
    lines = [
        f"Settings: {json.dumps(settings(args))}",
        "",
        "| pair | predicted (mean TAG affinity) | measured Δm % (pair vs its single-task runs) |",
        "|---|---|---|",
    ]
    for k, v in sorted(summary["pairs"].items(), key=lambda kv: -kv[1]["measured_delta_m"]):
        lines.append(f"| {k} | {v['predicted']:+.4f} | {v['measured_delta_m']:+.2f} |")
    rho = summary["spearman"]
    lines += [
        "",
        f"Spearman rank correlation (predicted vs measured, {len(summary['pairs'])} pairs): "
        + ("n/a" if rho is None else f"{rho:+.3f} (p = {summary['spearman_p']:.3f})"),
        "",
    ]
    lines += ["| k | grouping by TAG affinity | grouping by measured pair Δm |", "|---|---|---|"]
    for a, b in zip(summary["groupings_affinity"], summary["groupings_pairs"]):
        fa = " \\| ".join(", ".join(g) for g in a["groups"])
        fb = " \\| ".join(", ".join(g) for g in b["groups"])
        lines.append(f"| {a['k']} | {fa} | {fb} |")
    lines += ["", f"Compute: {summary['seconds']:.0f} s of training in all."]
    return "\n".join(lines) + "\n"


def parse_size(text: str) -> tuple[int, int]:
    w, h = (int(v) for v in text.lower().split("x"))
    return h, w


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tasks", nargs="+", default=["segm", "depth", "normals", "count", "dominant"])
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--size", type=parse_size, default=(64, 64), help="WIDTHxHEIGHT")
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--width-mult", type=float, default=0.5)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=0.002)
    p.add_argument("--train-samples", type=int, default=320)
    p.add_argument("--val-samples", type=int, default=48)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--every", type=int, default=5, help="affinity run: measure every N steps")
    p.add_argument("--out", default="runs/task_pairs")
    p.add_argument("--report", default=None, help="folder for pairs.md and pairs.json (default OUT)")
    p.add_argument("--tiny", action="store_true", help="smoke test: 3 tasks, 3 steps, tiny network")
    args = p.parse_args(argv)
    if args.tiny:
        args.tasks, args.steps, args.width, args.width_mult = ["segm", "depth", "count"], 3, 8, 0.35
        args.batch_size, args.train_samples, args.val_samples, args.every = 4, 8, 4, 1
    report = Path(args.report or args.out)
    report.mkdir(parents=True, exist_ok=True)
    affinity = affinity_run(args)
    singles = {t: run(args, f"single_{t}", [t]) for t in args.tasks}
    pairs = {(a, b): run(args, f"pair_{a}+{b}", [a, b]) for a, b in itertools.combinations(args.tasks, 2)}
    summary = summarize(args, singles, pairs, affinity)
    text = markdown(summary, args)
    (report / "pairs.md").write_text(text, encoding="utf-8")
    (report / "pairs.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
    print(text)
    print(
        "mean measured pair Δm:", f"{statistics.fmean(v['measured_delta_m'] for v in summary['pairs'].values()):+.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
