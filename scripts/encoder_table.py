"""Parameters, GMACs and CPU latency of each encoder: the README's "Encoders" table.

    PYTHONPATH=. python scripts/encoder_table.py mobilenet_v2,vit_b_16,timm:convnext_tiny [--json rows.json]

The nyud config with each encoder (weights not loaded), 640x480, batch 1: ``summarize`` for
parameters and multiply-adds, then the default fast path (``optimize_for_inference``) timed
over 3 calls after one warm-up (median). Run it on a quiet machine: it is not a benchmark of
settings (``hydranet bench`` is), only a side-by-side of encoders in one process.
"""

import argparse
import json
import statistics
import time

import torch

import hydranet
from hydranet.inference.fast import optimize_for_inference
from hydranet.tools.summary import summarize


def measure(name: str, reps: int = 3) -> dict:
    cfg = hydranet.load_config("nyud")
    cfg["model"].update(encoder=name, encoder_weights=None, encoder_options={})
    torch.manual_seed(0)
    model = hydranet.build_model(cfg, progress=False).eval()
    info = summarize(model, 480, 640)
    fast = optimize_for_inference(model)
    x = torch.randn(1, 3, 480, 640)
    fast(x)  # warm-up
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fast(x)
        times.append(time.perf_counter() - start)
    return {
        "encoder": name,
        "params_m": info["parameters"] / 1e6,
        "encoder_params_m": info["parameters_by_part"]["encoder"] / 1e6,
        "gmacs": info["gmacs"],
        "ms_median": 1000 * statistics.median(times),
        "ms_all": [1000 * t for t in times],
        "folded_bn": fast.report["folded_batchnorms"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("encoders", help="comma-separated encoder names")
    parser.add_argument("--json", help="write the rows here")
    args = parser.parse_args()
    rows = []
    for name in args.encoders.split(","):
        rows.append(measure(name))
        print(json.dumps(rows[-1]), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
