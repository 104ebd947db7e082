"""Is channels_last (and bf16 autocast) training equivalent to the NCHW fp32 default? (issue 28)

    OMP_WAIT_POLICY=PASSIVE python scripts/train_layout_study.py --out docs/benchmarks/train_layout_study.json

Two measurements, each arm on the same inputs:

1. **Gradient agreement at the nyud size**: the nyud config (width 256, 40 classes + depth,
   train-mode BatchNorm) at its 400x400 crop, one batch of synthetic scenes with nyud's tasks;
   the gradient of the summed task losses at initialisation under each arm against the NCHW
   fp32 one: cosine of the whole gradient, the smallest per-tensor cosine, the relative norm
   of the difference. ``nchw_1thread`` (NCHW again with another thread count: a different
   summation order) is the floor that any reordering of floating-point sums reaches.
2. **Final metrics of short runs**: the synthetic config trained by the Trainer for
   ``--steps`` steps with seeds 0..``--seeds``-1 under each arm, interleaved (seed 0 of every
   arm, then seed 1, ...), validated at the end; the step time comes from the same runs.

Arms: ``nchw`` (today's default), ``channels_last`` (``train.channels_last: true``),
``channels_last_bf16`` (the same under ``torch.autocast("cpu", torch.bfloat16)``; only on
CPUs with AVX512-BF16 or AMX).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hydranet.config import load_config  # noqa: E402
from hydranet.training import apply_overrides  # noqa: E402

ARMS = ("nchw", "channels_last", "channels_last_bf16")


def bf16_ok() -> bool:
    from hydranet.inference.fast import cpu_reduced_precision_unsupported

    return cpu_reduced_precision_unsupported(torch.bfloat16) is None


def _flat(model) -> dict:
    return {n: p.grad.detach().double().flatten().clone() for n, p in model.named_parameters() if p.grad is not None}


def gradients(batch_size: int, size: int, seed: int) -> dict:
    """Cosines of each arm's first gradient against NCHW fp32 at the nyud size."""
    from hydranet.data import build_dataset, make_collate
    from hydranet.losses import compute_losses
    from hydranet.models import build_model
    from hydranet.tasks import parse_tasks

    cfg = load_config("nyud")
    cfg["model"]["encoder_weights"] = None
    tasks = parse_tasks(cfg["tasks"])
    data = build_dataset(
        {"type": "synthetic", "split": "train", "num_samples": batch_size, "size": [size, size], "seed": seed},
        tasks,
        train=False,
    )
    batch = make_collate(tasks)([data[i] for i in range(batch_size)])
    torch.manual_seed(seed)
    init = build_model(cfg).train()
    threads = torch.get_num_threads()

    def grad_of(arm: str) -> tuple[dict, float]:
        model = copy.deepcopy(init)
        image = batch["image"]
        if arm.startswith("channels_last"):
            model = model.to(memory_format=torch.channels_last)
            image = image.contiguous(memory_format=torch.channels_last)
        torch.set_num_threads(1 if arm == "nchw_1thread" else threads)
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=arm.endswith("bf16")):
            out = model(image)
        out = {k: v.float() for k, v in out.items()}
        sum(compute_losses(out, batch, tasks).values()).backward()
        seconds = time.perf_counter() - t0
        torch.set_num_threads(threads)
        return _flat(model), seconds

    ref, ref_s = grad_of("nchw")
    result = {"batch": batch_size, "size": f"{size}x{size}", "arms": {"nchw": {"seconds": ref_s}}}
    ref_all = torch.cat([ref[k] for k in sorted(ref)])
    arms = ["nchw_1thread", "channels_last"] + (["channels_last_bf16"] if bf16_ok() else [])
    for arm in arms:
        got, seconds = grad_of(arm)
        got_all = torch.cat([got[k] for k in sorted(ref)])
        per = {k: float(torch.nn.functional.cosine_similarity(ref[k], got[k], dim=0)) for k in ref if ref[k].norm() > 0}
        worst = min(per, key=per.get)
        result["arms"][arm] = {
            "cosine": float(torch.nn.functional.cosine_similarity(ref_all, got_all, dim=0)),
            "relative_difference": float((ref_all - got_all).norm() / ref_all.norm()),
            "min_tensor_cosine": per[worst],
            "min_tensor": worst,
            "seconds": seconds,
        }
        print(arm, json.dumps(result["arms"][arm]), flush=True)
    return result


def against_fp64(size: int = 160, batch_size: int = 2) -> dict:
    """Where channels_last loses accuracy: the first gradient of each arm against the exact
    (float64 NCHW) one, per part of the network, with only the encoder or only the decoder and
    heads in channels_last; then train-mode BatchNorm alone, NCHW against channels_last."""
    import torch.nn.functional as F

    from hydranet.data import build_dataset, make_collate
    from hydranet.losses import compute_losses
    from hydranet.models import build_model
    from hydranet.tasks import parse_tasks

    cl, nchw = torch.channels_last, torch.contiguous_format
    cfg = load_config("nyud")
    cfg["model"]["encoder_weights"] = None
    tasks = parse_tasks(cfg["tasks"])
    data = build_dataset(
        {"type": "synthetic", "split": "train", "num_samples": batch_size, "size": [size, size], "seed": 0},
        tasks,
        train=False,
    )
    batch = make_collate(tasks)([data[i] for i in range(batch_size)])
    torch.manual_seed(0)
    init = build_model(cfg).train()

    def to(feats, fmt):
        return [f.contiguous(memory_format=fmt) for f in feats]

    def grad(arm: str, dtype=torch.float32) -> dict:
        model, image = copy.deepcopy(init).to(dtype), batch["image"].to(dtype)
        if arm in ("channels_last", "encoder_only"):
            model.encoder.to(memory_format=cl)
            image = image.contiguous(memory_format=cl)
        if arm == "encoder_only":
            model.encoder.register_forward_hook(lambda m, i, o: to(o, nchw))
        if arm in ("channels_last", "decoder_heads_only"):
            model.decoder.to(memory_format=cl)
            model.heads.to(memory_format=cl)
        if arm == "decoder_heads_only":
            model.encoder.register_forward_hook(lambda m, i, o: to(o, cl))
        out = {k: v.float() for k, v in model(image).items()}
        sum(compute_losses(out, batch, tasks).values()).backward()
        return {n: p.grad.detach().double() for n, p in model.named_parameters()}

    exact = grad("nchw", torch.float64)
    result = {"size": f"{size}x{size}", "batch": batch_size, "gradient_error_vs_fp64": {}}
    for arm in ("nchw", "channels_last", "encoder_only", "decoder_heads_only"):
        g = grad(arm)
        result["gradient_error_vs_fp64"][arm] = {
            part: float(
                sum(((exact[k] - g[k]) ** 2).sum() for k in exact if k.startswith(part)).sqrt()
                / sum((exact[k] ** 2).sum() for k in exact if k.startswith(part)).sqrt()
            )
            for part in ("encoder", "decoder", "heads")
        }
        print(arm, result["gradient_error_vs_fp64"][arm], flush=True)
    torch.manual_seed(0)
    bn = {}
    for mean, std in ((0.0, 1.0), (3.0, 0.1), (30.0, 0.1)):
        x64 = torch.randn(2, 32, 200, 200, dtype=torch.float64) * std + mean
        ref = F.batch_norm(x64, None, None, training=True)
        bn[f"mean {mean:g}, std {std:g}"] = {
            fmt_name: float(
                (F.batch_norm(x64.float().contiguous(memory_format=fmt), None, None, training=True).double() - ref)
                .abs()
                .max()
            )
            for fmt_name, fmt in (("nchw", nchw), ("channels_last", cl))
        }
    result["batchnorm_train_output_error_vs_fp64"] = bn
    print(bn, flush=True)
    return result


def short_run(arm: str, seed: int, steps: int, workdir: str, size: tuple = (120, 160)) -> dict:
    from hydranet.training.trainer import Trainer

    overrides = [
        f"train.steps={steps}",
        f"train.seed={seed}",
        f"train.val_every={steps}",
        f"train.ckpt_every={steps}",
        f"train.warmup_steps={max(1, steps // 10)}",
        "train.plots=false",
        "train.tensorboard=false",
        "data.val.num_samples=64",
        f"data.train.size=[{size[0]}, {size[1]}]",
        f"data.train.transforms.size=[{size[0]}, {size[1]}]",
        f"data.val.size=[{size[0]}, {size[1]}]",
        f"train.channels_last={str(arm != 'nchw').lower()}",
    ]
    cfg = load_config(apply_overrides(load_config("synthetic"), overrides))
    trainer = Trainer(cfg, os.path.join(workdir, f"{arm}_{seed}"), progress=False)
    if arm.endswith("bf16"):
        trainer.amp_dtype = torch.bfloat16  # the trainer's autocast, on the CPU
    try:
        summary = trainer.fit()
    finally:
        trainer.close()
    metrics = summary["validation"]["metrics"]
    keep = {
        "segm/miou": metrics["segm"]["miou"],
        "depth/abs_rel": metrics["depth"]["abs_rel"],
        "depth/rmse": metrics["depth"]["rmse"],
        "normals/mean_angle": metrics["normals"].get("mean_angle", metrics["normals"].get("mean")),
        "count/mae": metrics["count"].get("mae"),
        "dominant/top1": metrics["dominant"].get("top1", metrics["dominant"].get("accuracy")),
    }
    return {"arm": arm, "seed": seed, "steps": steps, "seconds": summary["seconds"], "metrics": keep}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--steps", type=int, default=250)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--grad-batch", type=int, default=2)
    ap.add_argument("--grad-size", type=int, default=400)
    ap.add_argument("--skip-gradients", action="store_true")
    ap.add_argument(
        "--cause-only", action="store_true", help="only the float64 comparison (where the difference comes from)"
    )
    ap.add_argument("--arms", default=",".join(ARMS), help="comma-separated arms of the short runs")
    ap.add_argument("--run-size", default="120x160", help="HxW of the short runs' crops and validation scenes")
    args = ap.parse_args()
    report = {
        "command": " ".join(sys.argv),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "loadavg_start": os.getloadavg(),
        "bf16_supported": bf16_ok(),
        "run_size": args.run_size,
    }
    out = Path(args.out)

    def save():
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2))

    if args.cause_only:
        report["against_fp64"] = against_fp64()
        save()
        return 0
    if not args.skip_gradients:
        report["gradients"] = gradients(args.grad_batch, args.grad_size, seed=0)
        save()
    arms = [a for a in args.arms.split(",") if not a.endswith("bf16") or bf16_ok()]
    runs = []
    with tempfile.TemporaryDirectory(prefix="hydranet-layout-") as tmp:
        for seed in range(args.seeds):
            for arm in arms:
                size = tuple(int(v) for v in args.run_size.split("x"))
                run = short_run(arm, seed, args.steps, tmp, size)
                run["loadavg"] = os.getloadavg()
                runs.append(run)
                print(json.dumps(run), flush=True)
                report["runs"] = runs
                save()
    summary = {}
    for arm in arms:
        mine = [r for r in runs if r["arm"] == arm]
        summary[arm] = {
            "seconds_median": statistics.median(r["seconds"] for r in mine),
            **{
                k: {
                    "mean": statistics.mean(r["metrics"][k] for r in mine),
                    "stdev": statistics.stdev(r["metrics"][k] for r in mine) if len(mine) > 1 else 0.0,
                }
                for k in mine[0]["metrics"]
                if all(r["metrics"][k] is not None for r in mine)
            },
        }
    report["summary"] = summary
    report["loadavg_end"] = os.getloadavg()
    save()
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
