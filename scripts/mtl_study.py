r"""Does multi-task learning pay on the synthetic scenes? Baselines, weightings, gradient methods,
asymmetric labels.

Seeded and CPU-only. Every run trains the same MobileNetV2 + light-weight RefineNet for the
same steps on the synthetic set (hydranet/configs/synthetic.yaml, shrunk) and is evaluated
on the same synthetic validation scenes:

1. single-task baselines for segmentation, depth and normals;
2. the three-task network with loss weightings (equal, uncertainty, GradNorm, DWA, FAMO,
   RLW; ``--weightings``) and gradient methods (``--gradient-methods``, all eight by default,
   screened on the first seed; the ``--best`` of them by that seed's Delta_m run on the other
   seeds); Delta_m (Maninis et al. 2019) of each against the baselines of the same seed;
3. asymmetric annotations (segmentation + depth): (a) every label, (b) depth on 25 % of the
   training images and segmentation on a disjoint 25 %, (c) as (b) with the missing labels
   filled by ``hydranet pseudolabel`` from the model of (b) as teacher. The training scenes are
   written out once as a list-file dataset (PNGs) so (b) and (c) are ordinary list files.

Each run's result (final metrics, the validation curve, weights, time) is written as it
finishes to ``--records/<name>.json`` (small; commit them): a run whose record exists with the
same settings is not trained again, so the study continues where it stopped. Checkpoints and
the exported list data go to ``--out``. ``study.json``, ``study.md`` and the plots
(``delta_m.png``, ``curves.png``) are rebuilt from the records after every run;
``--report-only`` rebuilds them without training.

    nice -n 19 python scripts/mtl_study.py --records docs/mtl_study/runs --report docs/mtl_study \
        --out /tmp/mtl_study            # the converged study of docs/mtl_study.md (hours)
    python scripts/mtl_study.py --tiny --out /tmp/mtl_tiny        # smoke test, seconds
"""

from __future__ import annotations

import argparse
import itertools
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
# Fixed-weight grid (segm, depth, normals), available through --weightings.
FIXED_GRID = {"fixed_1-0.5-1": (1.0, 0.5, 1.0), "fixed_1-1-2": (1.0, 1.0, 2.0)}
WEIGHTINGS = ("equal", "uncertainty", "famo", "gradnorm", "dwa", "rlw")
GRADIENT_METHODS = ("upgrad", "nash_mtl", "cagrad", "pcgrad", "mgda", "imtl_g", "aligned_mtl", "dualproj")
# the first metric of each task: its convergence curve (val metric moving < 2 % over the last fifth)
CURVE_METRIC = {"segm": "miou", "depth": "abs_rel", "normals": "mean_angle"}
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
        lr=args.lr,
        warmup_steps=max(1, args.steps // 10),
        val_every=max(1, args.steps // args.val_points),
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
    done = Path(job["record"])
    if done.is_file():
        record = json.loads(done.read_text())
        if record.get("settings") == job["settings"]:
            return record
    t0 = time.time()
    config = job["config"]
    if job.get("teacher"):
        config = dict(config, data=dict(config["data"], train=_pseudo_labelled(job)))
    trainer = Trainer(config, out, progress=False)
    try:
        summary = trainer.fit()
    finally:
        trainer.close()
    if summary.get("status") != "completed":  # e.g. stopped by SIGTERM at the end of a sitting
        raise RuntimeError(
            f"{job['name']}: training {summary.get('status')} at step {summary.get('step')}; "
            "no record written (run the command again to train it)"
        )
    weighting = trainer.weighting
    record = {k: job[k] for k in ("name", "group", "strategy", "seed")}
    record.update(
        metrics=summary["validation"]["metrics"],
        curve=_curve(out / "log.jsonl"),
        seconds=time.time() - t0,
        weights=weighting.weights(),
        settings=job["settings"],
    )
    if hasattr(weighting, "sigma2"):
        record["sigma2"] = weighting.sigma2()
    done.parent.mkdir(parents=True, exist_ok=True)
    tmp = done.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=1))
    tmp.replace(done)
    return record


def _curve(log_file: Path) -> list:
    """``[{step, task: {metric: value}}]``: the curve metric of every task at every validation."""
    points = []
    for line in log_file.read_text().splitlines():
        entry = json.loads(line)
        if entry.get("type") == "val":
            metrics = entry["metrics"]
            points.append(
                {"step": entry["step"], **{t: metrics[t][CURVE_METRIC[t]] for t in metrics if t in CURVE_METRIC}}
            )
    return points


def _pseudo_labelled(job: dict) -> dict:
    """Setting (c): the list of (b) completed by ``hydranet pseudolabel`` with the (b) model."""
    from hydranet.tools.pseudolabel import pseudolabel

    teacher = Path(job["teacher"])
    while not (teacher / "last.pt").is_file() or not Path(job["teacher_record"]).is_file():  # (b) runs first
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


def _weighting_job(args, seed: int, strategy: str) -> dict:
    weighting, options = strategy, {}
    if strategy in FIXED_GRID:
        weighting, options = "fixed", {"weights": dict(zip(TASKS, FIXED_GRID[strategy]))}
    return {
        "name": f"multi_{strategy}_s{seed}",
        "group": "multi",
        "strategy": strategy,
        "seed": seed,
        "config": base_config(args, TASKS, seed, weighting, options),
    }


def study_jobs(args, lists: dict) -> list:
    """Every run in the order they are trained, seed by seed: single-task baselines, loss
    weightings, gradient methods (all screened on the first seed; on the later seeds a
    placeholder the runner resolves to the ``--best`` by the first seed's Delta_m), then the
    asymmetric-label runs ((b) before (c), whose teacher it is)."""
    out, records = Path(args.out) / "runs", Path(args.records)
    jobs = []
    for k, seed in enumerate(args.seeds):
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
        if k == 0:
            gradient = [_weighting_job(args, seed, m) for m in args.gradient_methods]
        else:
            gradient = [{"pick": rank, "seed": seed} for rank in range(min(args.best, len(args.gradient_methods)))]
        # loss weightings and gradient methods alternate, so a study stopped early has some of both
        weighting = [_weighting_job(args, seed, w) for w in args.weightings]
        for pair in itertools.zip_longest(weighting, gradient):
            jobs += [j for j in pair if j is not None]
        if not args.no_asym:
            asym = {
                s: base_config(args, ASYM_TASKS, seed, train_data=list_data(lists["all" if s == "a" else "asym"]))
                for s in "abc"
            }
            for setting in "bac":
                job = {
                    "name": f"asym_{setting}_s{seed}",
                    "group": "asym",
                    "strategy": setting,
                    "seed": seed,
                    "config": asym[setting],
                }
                if setting == "c":
                    job["teacher"] = str(out / f"asym_b_s{seed}")
                    job["teacher_record"] = str(records / f"asym_b_s{seed}.json")
                jobs.append(job)
    return [finish_job(args, j) for j in jobs]


def finish_job(args, job: dict) -> dict:
    if "pick" in job:
        return job
    job["out"] = str(Path(args.out) / "runs" / job["name"])
    job["record"] = str(Path(args.records) / f"{job['name']}.json")
    job["settings"] = run_settings(args)
    return job


def run_settings(args) -> dict:
    """What makes two runs of the same name comparable (a record with other settings is redone)."""
    keys = ("steps", "size", "width", "width_mult", "batch_size", "train_samples", "val_samples", "lr", "label_seed")
    return {k: list(v) if isinstance(v, tuple) else v for k, v in vars(args).items() if k in keys}


def best_gradient_methods(args, records: list) -> list:
    """The gradient methods ranked by Delta_m on the first seed (the screening)."""
    from hydranet.evaluation.delta_m import delta_m

    seed = args.seeds[0]
    by = {(r["group"], r["strategy"], r["seed"]): r for r in records}
    base = {t: by[("single", t, seed)]["metrics"][t] for t in TASKS}
    scores = {m: delta_m(by[("multi", m, seed)]["metrics"], base, DELTA_METRICS) for m in args.gradient_methods}
    return sorted(scores, key=scores.get, reverse=True)


def run_jobs(jobs: list, args, on_record=None) -> list:
    """Train the jobs one after the other (``--jobs 1``) or in a pool; ``on_record`` after each."""
    records: list = []

    def resolve(job):
        if "pick" not in job:
            return job
        method = best_gradient_methods(args, records)[job["pick"]]
        return finish_job(args, _weighting_job(args, job["seed"], method))

    if args.jobs <= 1:
        for job in jobs:
            records.append(run_one(resolve(job)))
            if on_record:
                on_record(records)
        return records
    first = [j for j in jobs if "pick" not in j]
    with ProcessPoolExecutor(max_workers=args.jobs, mp_context=get_context("spawn")) as pool:
        records = list(pool.map(run_one, first))
        records += list(pool.map(run_one, [resolve(j) for j in jobs if "pick" in j]))
    if on_record:
        on_record(records)
    return records


def load_records(args) -> list:
    """The finished runs' records of the current settings (for --report-only)."""
    settings = run_settings(args)
    found = []
    for path in sorted(Path(args.records).glob("*.json")):
        record = json.loads(path.read_text())
        if record.get("settings") == settings:
            found.append(record)
    return found


# ------------------------------------------------------------------------------ tables


def mean_std(values) -> tuple[float, float]:
    values = list(values)
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def fmt(values, digits: int = 3, scale: float = 1.0) -> str:
    m, s = mean_std(v * scale for v in values)
    return f"{m:.{digits}f} ± {s:.{digits}f}"


def summarize(records: list, args) -> dict:
    """Per strategy and seed (where the runs have finished): every Delta_m metric, Delta_m
    against the same seed's baselines, per-task changes, weights, time; the asymmetric runs."""
    from hydranet.evaluation.delta_m import delta_m, relative_changes

    by = {(r["group"], r["strategy"], r["seed"]): r for r in records}
    seeds_with_base = [s for s in args.seeds if all(("single", t, s) in by for t in TASKS)]
    baselines = {seed: {t: by[("single", t, seed)]["metrics"][t] for t in TASKS} for seed in seeds_with_base}
    names = ["single-task", *args.weightings, *args.gradient_methods]
    rows = {}
    for name in names:
        per_seed = []
        for seed in seeds_with_base:
            if name == "single-task":
                metrics = baselines[seed]
                seconds = sum(by[("single", t, seed)]["seconds"] for t in TASKS)
                weights, sigma2 = {}, {}
            elif ("multi", name, seed) in by:
                r = by[("multi", name, seed)]
                metrics, seconds, weights, sigma2 = r["metrics"], r["seconds"], r["weights"], r.get("sigma2", {})
            else:
                continue
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
        if per_seed:
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
    return {"weighting": rows, "asymmetric": asym, "convergence": convergence(records)}


def convergence(records: list) -> dict:
    """Single-task runs: how much the curve metric moves over the last fifth of training (%).

    ``change_pct``: last value against the first one of the window; ``trend_pct``: the
    least-squares line through the window's points, its rise over the window relative to
    the window's mean (less sensitive to one noisy validation). Converged: trend below 2 %.
    """
    out = {}
    singles = [r for r in records if r["group"] == "single" and len(r.get("curve", [])) >= 2]
    for r in singles:
        out[r["name"]] = _window_movement(r["curve"], r["strategy"])
    for task in TASKS:  # the seeds' mean curve: one validation's noise divided by sqrt(seeds)
        runs = [r for r in singles if r["strategy"] == task]
        steps = sorted(set.intersection(*(set(p["step"] for p in r["curve"]) for r in runs))) if runs else []
        if len(runs) > 1 and len(steps) >= 2:
            by_step = [{p["step"]: p[task] for p in r["curve"]} for r in runs]
            mean = [{"step": t, task: statistics.fmean(b[t] for b in by_step)} for t in steps]
            out[f"single_{task} (mean of {len(runs)} seeds)"] = _window_movement(mean, task)
    return out


def _window_movement(curve: list, task: str) -> dict:
    """How much ``curve`` (points ``{"step", task}``) moves over its last fifth (see :func:`convergence`)."""
    last = curve[-1]["step"]
    window = [p for p in curve if p["step"] >= 0.8 * last]
    if len(window) < 2:
        window = curve[-2:]
    xs, ys = [p["step"] for p in window], [p[task] for p in window]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    from hydranet.evaluation.delta_m import metric_lower_is_better

    lower_is_better = metric_lower_is_better(CURVE_METRIC[task])
    return {
        "metric": CURVE_METRIC[task],
        "from_step": window[0]["step"],
        "to_step": last,
        "change_pct": abs(ys[-1] - ys[0]) / abs(ys[0]) * 100,
        "trend_pct": abs(slope * (xs[-1] - xs[0])) / abs(my) * 100,
        # a line still going the good way is unfinished training; the other way, noise or overfitting
        "improving": slope < 0 if lower_is_better else slope > 0,
    }


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
    conv = summary.get("convergence", {})
    if conv:
        lines += [
            "",
            "### Convergence of the single-task runs (validation metric over the last fifth of training)",
            "",
            "| run | metric | from step | to step | change % (end points) | trend % (fitted line) | line goes |",
            "|---|---|---|---|---|---|---|",
        ]
        for n, c in sorted(conv.items()):
            span = f"{c['from_step']} | {c['to_step']}"
            way = "better" if c.get("improving") else "worse"
            lines.append(f"| {n} | {c['metric']} | {span} | {c['change_pct']:.2f} | {c['trend_pct']:.2f} | {way} |")
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


def plots(records: list, summary: dict, out: Path) -> list:
    """``delta_m.png`` (Delta_m per method, every seed and mean +- std) and ``curves.png``
    (validation curves of the single-task runs); returns the files written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    rows = {k: v for k, v in summary["weighting"].items() if k != "single-task"}
    if rows:
        fig, ax = plt.subplots(figsize=(max(5, 0.7 * len(rows) + 2), 3.6))
        for i, per_seed in enumerate(rows.values()):
            values = [p["delta_m"] for p in per_seed]
            m, sd = mean_std(values)
            ax.errorbar([i], [m], yerr=[sd], fmt="o", color="C0", capsize=4)
            ax.scatter([i] * len(values), values, color="C1", s=12, zorder=3)
        ax.axhline(0, color="grey", lw=0.8)
        ax.set_xticks(range(len(rows)), list(rows), rotation=40, ha="right")
        ax.set_ylabel("Δm % vs single-task (+ = better)")
        ax.set_title("mean ± std over seeds (blue), each seed (orange)")
        fig.tight_layout()
        fig.savefig(out / "delta_m.png", dpi=110)
        plt.close(fig)
        written.append(out / "delta_m.png")
    singles = [r for r in records if r["group"] == "single" and r.get("curve")]
    if singles:
        fig, axes = plt.subplots(1, len(TASKS), figsize=(4 * len(TASKS), 3.2))
        for ax, task in zip(axes, TASKS):
            for r in (r for r in singles if r["strategy"] == task):
                ax.plot([p["step"] for p in r["curve"]], [p[task] for p in r["curve"]], label=f"seed {r['seed']}")
            ax.set_title(f"single-task {task}: val {CURVE_METRIC[task]}")
            ax.set_xlabel("step")
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out / "curves.png", dpi=110)
        plt.close(fig)
        written.append(out / "curves.png")
    return written


def report(records: list, args, wall: float) -> str:
    """study.md, study.json and the plots in ``--report`` from the records so far."""
    out = Path(args.report)
    out.mkdir(parents=True, exist_ok=True)
    summary = summarize(records, args)
    settings = run_settings(args)
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs"
    done = {r["name"] for r in records}
    text = markdown(summary, settings)
    text += f"\nRuns finished: {len(done)}. Wall time this session: {wall:.0f} s on {machine}.\n"
    (out / "study.md").write_text(text, encoding="utf-8")
    (out / "study.json").write_text(
        json.dumps({"settings": settings, "machine": machine, "summary": summary}, indent=1), encoding="utf-8"
    )
    plots(records, summary, out)
    return text


def parse_size(text: str) -> tuple[int, int]:
    w, h = (int(v) for v in text.lower().split("x"))
    return h, w


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=None, help="default 0 1 2 (0 with --tiny)")
    p.add_argument("--steps", type=int, default=2400)
    p.add_argument("--size", type=parse_size, default=(64, 64), help="WIDTHxHEIGHT (default 64x64)")
    p.add_argument("--width", type=int, default=16, help="decoder width")
    p.add_argument("--width-mult", type=float, default=0.5, help="MobileNetV2 width multiplier")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=0.002)
    p.add_argument("--train-samples", type=int, default=320)
    p.add_argument("--val-samples", type=int, default=96)
    p.add_argument("--val-points", type=int, default=24, help="validations per run (the curves)")
    p.add_argument("--weightings", nargs="+", default=list(WEIGHTINGS), help="loss weightings (and fixed_* grid)")
    p.add_argument("--gradient-methods", nargs="*", default=list(GRADIENT_METHODS), help="screened on the first seed")
    p.add_argument("--best", type=int, default=3, help="gradient methods run on the other seeds")
    p.add_argument("--no-asym", action="store_true", help="leave out the asymmetric-label runs")
    p.add_argument("--label-seed", type=int, default=0, help="which training images keep which label in (b)")
    p.add_argument("--jobs", type=int, default=1, help="runs in parallel (one torch thread each)")
    p.add_argument("--out", default="runs/mtl_study", help="checkpoints and the exported list data")
    p.add_argument("--records", default=None, help="one JSON per finished run (default OUT/records)")
    p.add_argument("--report", default=None, help="study.md, study.json, plots (default OUT)")
    p.add_argument("--report-only", action="store_true", help="rebuild the report from the records, train nothing")
    p.add_argument("--tiny", action="store_true", help="smoke test: one seed, 3 steps, 64x64, tiny network")
    args = p.parse_args(argv)
    if args.tiny:
        args.seeds = args.seeds or [0]
        args.steps, args.size, args.width, args.width_mult = 3, (64, 64), 8, 0.35
        args.batch_size, args.train_samples, args.val_samples, args.val_points = 4, 8, 4, 3
    args.seeds = args.seeds or [0, 1, 2]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    args.records = args.records or str(out / "records")
    args.report = args.report or str(out)
    t0 = time.time()
    if args.report_only:
        print(report(load_records(args), args, 0.0))
        return 0
    lists = export_list(args, out / "data")
    records = run_jobs(study_jobs(args, lists), args, on_record=lambda rs: report(rs, args, time.time() - t0))
    print(report(records, args, time.time() - t0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
