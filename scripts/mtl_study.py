r"""Does multi-task learning pay on the synthetic scenes? Baselines, weightings, asymmetric labels.

Seeded and CPU-only. Every run trains the same MobileNetV2 + light-weight RefineNet for the
same steps on the synthetic set (hydranet/configs/synthetic.yaml, shrunk) and is evaluated
on the same synthetic validation scenes:

1. single-task baselines for segmentation, depth and normals;
2. the three-task network with equal, fixed (a small grid), uncertainty, GradNorm and DWA
   weighting; Delta_m (Maninis et al. 2019) of each against the baselines of the same seed;
3. asymmetric annotations (segmentation + depth): (a) every label, (b) depth on 25 % of the
   training images and segmentation on a disjoint 25 %, (c) as (b) with the missing labels
   filled by ``hydranet pseudolabel`` from the model of (b) as teacher. The training scenes are
   written out once as a list-file dataset (PNGs) so (b) and (c) are ordinary list files.

Writes ``study.json`` (every run) and ``study.md`` (the tables) to ``--out``; each run's
result is kept in ``--out/runs/<name>/result.json`` and reused when the script is run again.

    python scripts/mtl_study.py --seeds 0 1 2 --steps 150 --batch-size 4 --size 64x64 --width 32 \
        --jobs 2 --out runs/mtl_study
    python scripts/mtl_study.py --tiny --out /tmp/mtl_tiny        # smoke test, seconds
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

TASKS = ("segm", "depth", "normals")
# Delta_m over the metrics Multi-Task-Learning-PyTorch reports on NYUD.
DELTA_METRICS = {
    "segm": ["miou", "pixel_acc"],
    "depth": ["abs_rel", "rmse"],
    "normals": ["mean_angle", "median_angle", "within_11.25", "within_22.5", "within_30"],
}
# Fixed-weight grid (segm, depth, normals): depth's L1 in metres starts ~5x normals' loss.
FIXED_GRID = {"fixed_1-0.5-1": (1.0, 0.5, 1.0), "fixed_1-1-2": (1.0, 1.0, 2.0)}
STRATEGIES = ("equal", *FIXED_GRID, "uncertainty", "gradnorm", "dwa")
ASYM_TASKS = ("segm", "depth")
ASYM_METRICS = {"segm": ["miou", "pixel_acc"], "depth": ["abs_rel", "rmse", "delta1"]}
LABEL_FRACTION = 0.25


def base_config(args, tasks, seed: int, weighting: str = "equal", options=None, train_data=None) -> dict:
    """The shipped synthetic config, shrunk to the study's size, for ``tasks``."""
    from hydranet.config import load_config

    cfg = load_config("synthetic")
    h, w = args.size
    cfg["tasks"] = [t for t in cfg["tasks"] if t["name"] in tasks]
    cfg["model"]["width"] = args.width
    if args.width_mult != 1.0:
        cfg["model"]["encoder_options"] = {"width_mult": args.width_mult}
    transforms = dict(cfg["data"]["train"]["transforms"], size=[h, w])
    cfg["data"]["train"] = train_data or {
        "type": "synthetic",
        "split": "train",
        "num_samples": args.train_samples,
        "size": [h, w],
        "seed": 0,
    }
    cfg["data"]["train"]["transforms"] = transforms
    cfg["data"]["val"] = {
        "type": "synthetic",
        "split": "val",
        "num_samples": args.val_samples,
        "size": [h, w],
        "seed": 0,
    }
    cfg["train"].update(
        steps=args.steps,
        batch_size=args.batch_size,
        seed=seed,
        warmup_steps=max(1, args.steps // 10),
        val_every=args.steps,
        ckpt_every=args.steps,
        log_every=max(1, args.steps // 10),
        monitor="loss",
        plots=False,
        tensorboard=False,
        workers=0,
    )
    cfg["loss"] = {"weighting": weighting, "options": dict(options or {})}
    return cfg


def run_one(job: dict) -> dict:
    """Train one configuration (in a worker process) and return its result record.

    A job with ``teacher`` (setting (c)) first waits for the teacher's run, pseudo-labels the
    list of (b) with it, then trains on the completed list.
    """
    import torch

    torch.set_num_threads(1)
    from hydranet.training.trainer import Trainer

    out = Path(job["out"])
    done = out / "result.json"
    if done.is_file():
        return json.loads(done.read_text())
    t0 = time.time()
    config = job["config"]
    if job.get("teacher"):
        config = dict(config, data=dict(config["data"], train=_pseudo_labelled(job)))
    trainer = Trainer(config, out, progress=False)
    try:
        summary = trainer.fit()
    finally:
        trainer.close()
    weighting = trainer.weighting
    record = {k: job[k] for k in ("name", "group", "strategy", "seed")}
    record.update(
        metrics=summary["validation"]["metrics"],
        seconds=time.time() - t0,
        weights=weighting.weights(),
        checkpoint=summary["last"],
    )
    if hasattr(weighting, "sigma2"):
        record["sigma2"] = weighting.sigma2()
    done.write_text(json.dumps(record, indent=1))
    return record


def _pseudo_labelled(job: dict) -> dict:
    """Setting (c): the list of (b) completed by ``hydranet pseudolabel`` with the (b) model."""
    from hydranet.tools.pseudolabel import pseudolabel

    teacher = Path(job["teacher"])
    while not (teacher / "result.json").is_file():  # (b) runs earlier in the same queue
        time.sleep(2)
    folder = Path(job["out"]).parent / f"pseudo_s{job['seed']}"
    source = Path(job["config"]["data"]["train"]["list"])
    completed = folder / source.name
    if not completed.is_file():
        pseudolabel(teacher / "last.pt", source, folder, progress=False)
    return dict(job["config"]["data"]["train"], list=str(completed))


def export_list(args, out: Path) -> dict:
    """Write the training scenes as PNGs and the list files of settings (a) and (b)."""
    import numpy as np

    from hydranet.data.io import write_png
    from hydranet.data.synthetic import SyntheticScenes

    full, part = out / "train_all.txt", out / "train_asym.txt"
    if full.is_file() and part.is_file():
        return {"all": str(full), "asym": str(part)}
    data = SyntheticScenes(args.train_samples, size=args.size, seed=0, split="train")
    n = len(data)
    order = np.random.default_rng(args.label_seed).permutation(n)
    k = int(round(LABEL_FRACTION * n))
    depth_ids, segm_ids = set(order[:k].tolist()), set(order[k : 2 * k].tolist())
    rows_all, rows_part = ["# image segmentation depth"], ["# image segmentation depth"]
    for i in range(n):
        sample, _ = data.load_raw(i)
        stem = f"{i:05d}"
        write_png(out / "rgb" / f"{stem}.png", sample["image"])
        write_png(out / "segm" / f"{stem}.png", sample["segm"].astype(np.uint8))
        write_png(out / "depth" / f"{stem}.png", np.clip(np.round(sample["depth"] * 5000), 0, 65535).astype(np.uint16))
        seg, dep = f"segm/{stem}.png", f"depth/{stem}.png"
        rows_all.append(f"rgb/{stem}.png {seg} {dep}")
        rows_part.append(f"rgb/{stem}.png {seg if i in segm_ids else '-'} {dep if i in depth_ids else '-'}")
    full.write_text("\n".join(rows_all) + "\n")
    part.write_text("\n".join(rows_part) + "\n")
    return {"all": str(full), "asym": str(part)}


def list_data(path) -> dict:
    return {"type": "list", "list": str(path), "depth_scale": 5000.0}


def study_jobs(args, lists: dict) -> list:
    """Every run, seed by seed; within a seed (b) comes first so (c) never waits long for its teacher."""
    out = Path(args.out) / "runs"
    jobs = []
    for seed in args.seeds:
        asym = {
            s: base_config(args, ASYM_TASKS, seed, train_data=list_data(lists["all" if s == "a" else "asym"]))
            for s in "abc"
        }
        jobs.append({"name": f"asym_b_s{seed}", "group": "asym", "strategy": "b", "seed": seed, "config": asym["b"]})
        for task in TASKS:
            jobs.append(
                {
                    "name": f"single_{task}_s{seed}",
                    "group": "single",
                    "strategy": task,
                    "seed": seed,
                    "config": base_config(args, [task], seed),
                }
            )
        for strategy in STRATEGIES:
            weighting, options = strategy, {}
            if strategy in FIXED_GRID:
                weighting, options = "fixed", {"weights": dict(zip(TASKS, FIXED_GRID[strategy]))}
            jobs.append(
                {
                    "name": f"multi_{strategy}_s{seed}",
                    "group": "multi",
                    "strategy": strategy,
                    "seed": seed,
                    "config": base_config(args, TASKS, seed, weighting, options),
                }
            )
        jobs.append({"name": f"asym_a_s{seed}", "group": "asym", "strategy": "a", "seed": seed, "config": asym["a"]})
        jobs.append(
            {
                "name": f"asym_c_s{seed}",
                "group": "asym",
                "strategy": "c",
                "seed": seed,
                "config": asym["c"],
                "teacher": str(out / f"asym_b_s{seed}"),
            }
        )
    for job in jobs:
        job["out"] = str(out / job["name"])
    return jobs


def run_jobs(jobs: list, workers: int) -> list:
    if workers <= 1:
        return [run_one(j) for j in jobs]
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        return list(pool.map(run_one, jobs))


# ------------------------------------------------------------------------------ tables


def mean_std(values) -> tuple[float, float]:
    values = list(values)
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def fmt(values, digits: int = 3, scale: float = 1.0) -> str:
    m, s = mean_std(v * scale for v in values)
    return f"{m:.{digits}f} ± {s:.{digits}f}"


def summarize(records: list, args) -> dict:
    """Per strategy: every Delta_m metric, Delta_m against the same seed's baselines, weights, time."""
    from hydranet.evaluation.delta_m import delta_m, relative_changes

    by = {(r["group"], r["strategy"], r["seed"]): r for r in records}
    baselines = {seed: {t: by[("single", t, seed)]["metrics"][t] for t in TASKS} for seed in args.seeds}
    rows = {}
    for name in ("single-task", *STRATEGIES):
        per_seed = []
        for seed in args.seeds:
            if name == "single-task":
                metrics = baselines[seed]
                seconds = sum(by[("single", t, seed)]["seconds"] for t in TASKS)
                weights, sigma2 = {}, {}
            else:
                r = by[("multi", name, seed)]
                metrics, seconds, weights, sigma2 = r["metrics"], r["seconds"], r["weights"], r.get("sigma2", {})
            per_seed.append(
                {
                    "seed": seed,
                    "metrics": {t: {k: metrics[t][k] for k in DELTA_METRICS[t]} for t in TASKS},
                    "delta_m": delta_m(metrics, baselines[seed], DELTA_METRICS),
                    "changes": relative_changes(metrics, baselines[seed], DELTA_METRICS),
                    "seconds": seconds,
                    "weights": weights,
                    "sigma2": sigma2,
                }
            )
        rows[name] = per_seed
    asym = {}
    for setting in ("a", "b", "c"):
        asym[setting] = [
            {
                "seed": seed,
                "metrics": {
                    t: {k: by[("asym", setting, seed)]["metrics"][t][k] for k in ASYM_METRICS[t]} for t in ASYM_TASKS
                },
                "seconds": by[("asym", setting, seed)]["seconds"],
            }
            for seed in args.seeds
            if ("asym", setting, seed) in by
        ]
    return {"weighting": rows, "asymmetric": asym}


SHORT = {
    "miou": "mIoU ↑",
    "pixel_acc": "pix acc ↑",
    "abs_rel": "abs rel ↓",
    "rmse": "RMSE ↓",
    "delta1": "δ1 ↑",
    "mean_angle": "mean ° ↓",
    "median_angle": "median ° ↓",
    "within_11.25": "<11.25° ↑",
    "within_22.5": "<22.5° ↑",
    "within_30": "<30° ↑",
}


def markdown(summary: dict, settings: dict) -> str:
    lines = [
        f"Settings: {json.dumps(settings)}",
        "",
        "### Weighting strategies (mean ± std over seeds; Δm in %, + = better than single-task)",
        "",
    ]
    cols = [(t, k) for t in TASKS for k in DELTA_METRICS[t]]
    lines.append("| strategy | " + " | ".join(f"{t} {SHORT[k]}" for t, k in cols) + " | Δm % | time s |")
    lines.append("|---" * (len(cols) + 3) + "|")
    for name, per_seed in summary["weighting"].items():
        cells = [fmt([p["metrics"][t][k] for p in per_seed], 2 if "angle" in k else 3) for t, k in cols]
        cells.append(fmt([p["delta_m"] for p in per_seed], 2))
        cells.append(f"{statistics.fmean(p['seconds'] for p in per_seed):.0f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "### Per-task relative change against single-task (mean ± std over seeds, %, + = better)",
        "",
        "| strategy | " + " | ".join(f"Δ {t}" for t in TASKS) + " | Δm |",
        "|---" * (len(TASKS) + 2) + "|",
    ]
    for name, per_seed in summary["weighting"].items():
        cells = [fmt([statistics.fmean(p["changes"][t].values()) for p in per_seed], 2) for t in TASKS]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {fmt([p['delta_m'] for p in per_seed], 2)} |")
    lines += [
        "",
        "### Final loss weights (mean over seeds; uncertainty: effective weight and σ²)",
        "",
        "| strategy | " + " | ".join(f"w {t}" for t in TASKS) + " | " + " | ".join(f"σ² {t}" for t in TASKS) + " |",
        "|---" * (2 * len(TASKS) + 1) + "|",
    ]
    for name, per_seed in summary["weighting"].items():
        if name == "single-task":
            continue
        w = [f"{statistics.fmean(p['weights'][t] for p in per_seed):.3g}" for t in TASKS]
        s = [
            f"{statistics.fmean(p['sigma2'][t] for p in per_seed):.3g}" if per_seed[0]["sigma2"] else "" for t in TASKS
        ]
        lines.append(f"| {name} | " + " | ".join(w + s) + " |")
    lines += [
        "",
        "### Asymmetric annotations (segm + depth, mean ± std over seeds)",
        "",
        "(a) all labels; (b) depth on 25 % of the training images, segmentation on a disjoint 25 %; "
        "(c) (b) + pseudo-labels from the (b) model for every missing label",
        "",
    ]
    acols = [(t, k) for t in ASYM_TASKS for k in ASYM_METRICS[t]]
    lines.append("| setting | " + " | ".join(f"{t} {SHORT[k]}" for t, k in acols) + " | time s |")
    lines.append("|---" * (len(acols) + 2) + "|")
    for setting, per_seed in summary["asymmetric"].items():
        if not per_seed:
            continue
        cells = [fmt([p["metrics"][t][k] for p in per_seed]) for t, k in acols]
        cells.append(f"{statistics.fmean(p['seconds'] for p in per_seed):.0f}")
        lines.append(f"| ({setting}) | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def parse_size(text: str) -> tuple[int, int]:
    w, h = (int(v) for v in text.lower().split("x"))
    return h, w


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--size", type=parse_size, default=(64, 64), help="WIDTHxHEIGHT (default 64x64)")
    p.add_argument("--width", type=int, default=32, help="decoder width")
    p.add_argument("--width-mult", type=float, default=1.0, help="MobileNetV2 width multiplier")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--train-samples", type=int, default=160)
    p.add_argument("--val-samples", type=int, default=48)
    p.add_argument("--label-seed", type=int, default=0, help="which training images keep which label in (b)")
    p.add_argument("--jobs", type=int, default=1, help="runs in parallel (one torch thread each)")
    p.add_argument("--out", default="runs/mtl_study")
    p.add_argument("--tiny", action="store_true", help="smoke test: one seed, 3 steps, 64x64, tiny network")
    args = p.parse_args(argv)
    if args.tiny:
        args.seeds, args.steps, args.size, args.width, args.width_mult = [0], 3, (64, 64), 8, 0.35
        args.batch_size, args.train_samples, args.val_samples = 4, 8, 4
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    settings = {k: v for k, v in vars(args).items() if k not in ("out", "jobs")}
    t0 = time.time()
    lists = export_list(args, out / "data")
    records = run_jobs(study_jobs(args, lists), args.jobs)
    wall = time.time() - t0
    summary = summarize(records, args)
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs"
    text = markdown(summary, settings) + f"\nWall time: {wall:.0f} s on {machine} ({args.jobs} parallel runs).\n"
    (out / "study.md").write_text(text, encoding="utf-8")
    (out / "study.json").write_text(
        json.dumps(
            {"settings": settings, "wall_seconds": wall, "machine": machine, "summary": summary, "runs": records},
            indent=1,
        ),
        encoding="utf-8",
    )
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
