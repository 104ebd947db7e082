"""One torchrun training step with DDP's unused-parameter search on and off, alternately (issue 28).

    OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE python -m torch.distributed.run --nproc_per_node 2 \\
        scripts/ddp_step_time.py --out docs/benchmarks/ddp_step_time.json

Each rank builds two trainers from the same config, one with ``find_unused_parameters=True``
(the former default, "before") and one as the trainer decides now ("after": off when every
trainable parameter is reached), and times their step on the same fixed batch in
alternating blocks (before, after, before, after, ...). Rank 0 writes the medians.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import hydranet.training.trainer as trainer_module  # noqa: E402
from hydranet.config import load_config  # noqa: E402
from hydranet.training import apply_overrides  # noqa: E402


def build(cfg, workdir: str, search: bool):
    decide = trainer_module.find_unused_parameters
    if search:
        trainer_module.find_unused_parameters = lambda *args, **kwargs: True
    try:
        trainer = trainer_module.Trainer(cfg, workdir, progress=False)
    finally:
        trainer_module.find_unused_parameters = decide
    trainer.model.train()
    return trainer


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--config", default="synthetic")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--steps", type=int, default=3, help="timed steps per block")
    ap.add_argument("--set", action="append", default=[])
    args = ap.parse_args()
    dist.init_process_group("gloo")
    cfg = load_config(
        apply_overrides(load_config(args.config), ["train.plots=false", "train.tensorboard=false"] + args.set)
    )
    with tempfile.TemporaryDirectory(prefix="hydranet-ddp-") as tmp:
        trainers = {"before (search on)": build(cfg, tmp, True), "after (search off)": build(cfg, tmp, False)}
        batch = next(iter(next(iter(trainers.values()))._loader(0, 0)))
        times = {name: [] for name in trainers}
        for t in trainers.values():  # warm-up
            t._train_step([batch])
        for _ in range(args.rounds):
            for name, t in trainers.items():
                t._train_step([batch])  # untimed: the switch
                for _ in range(args.steps):
                    dist.barrier()
                    t0 = time.perf_counter()
                    t._train_step([batch])
                    times[name].append(time.perf_counter() - t0)
        flags = {name: t.find_unused for name, t in trainers.items()}
    if dist.get_rank() == 0:
        report = {
            "command": " ".join(sys.argv),
            "world_size": dist.get_world_size(),
            "config": args.config,
            "overrides": args.set,
            "batch_per_rank": int(cfg["train"]["batch_size"]),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "loadavg": os.getloadavg(),
            "find_unused_parameters": flags,
            "step_ms_median": {n: 1000 * statistics.median(v) for n, v in times.items()},
            "step_ms": {n: [round(1000 * x, 1) for x in v] for n, v in times.items()},
        }
        names = list(times)
        report["after_vs_before"] = report["step_ms_median"][names[0]] / report["step_ms_median"][names[1]]
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=2))
        print(json.dumps({k: report[k] for k in ("find_unused_parameters", "step_ms_median", "after_vs_before")}))
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
