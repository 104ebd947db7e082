"""Flicker of the video demo with and without temporal smoothing, on the built-in synthetic clip.

    python scripts/flicker.py [--alphas 0,0.5,0.8] [--frames 48] [--json out.json]

For each smoothing alpha, runs the bundled checkpoint over the clip (a camera gliding through
one synthetic room, 320x240) and reports, over consecutive frame pairs: the mean absolute
frame-to-frame change of the predicted depth (metres), the same for the true depth (the
motion that is really there), the fraction of pixels whose predicted class changes, and the
error against the true depth (abs rel), which shows what the averaging costs in lag.
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def measure(alpha: float, frames: int, size=(240, 320), seed: int = 0) -> dict:
    from hydranet.data.synthetic import render_clip
    from hydranet.inference import Predictor, resolve_weights

    predictor = Predictor(resolve_weights(None), smooth=alpha)
    depth_change, true_change, class_flips, abs_rel = [], [], [], []
    prev = None
    for rgb, depth_true, _labels in render_clip(frames, size, seed):
        pred = predictor.predict(rgb)
        depth, ids = pred["depth"], pred["segm"]
        valid = np.isfinite(depth_true) & (depth_true > 0)
        abs_rel.append(float(np.mean(np.abs(depth[valid] - depth_true[valid]) / depth_true[valid])))
        if prev is not None:
            depth_change.append(float(np.mean(np.abs(depth - prev[0]))))
            true_change.append(float(np.mean(np.abs(depth_true - prev[1]))))
            class_flips.append(float(np.mean(ids != prev[2])))
        prev = (depth, depth_true, ids)
    return {
        "alpha": alpha,
        "frames": frames,
        "depth_change_m": float(np.mean(depth_change)),
        "true_depth_change_m": float(np.mean(true_change)),
        "class_flip_fraction": float(np.mean(class_flips)),
        "abs_rel": float(np.mean(abs_rel)),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--alphas", default="0,0.5,0.8", help="comma-separated smoothing alphas (0 = off)")
    p.add_argument("--frames", type=int, default=48, help="clip length (the demo's default is 48)")
    p.add_argument("--json", help="also write the table as JSON")
    args = p.parse_args()
    rows = [measure(float(a), args.frames) for a in args.alphas.split(",")]
    print("| --smooth | depth change / frame (m) | true depth change / frame (m) | pixels changing class | abs rel |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['alpha']:g} | {r['depth_change_m']:.4f} | {r['true_depth_change_m']:.4f} | "
            f"{100 * r['class_flip_fraction']:.2f}% | {r['abs_rel']:.3f} |"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
