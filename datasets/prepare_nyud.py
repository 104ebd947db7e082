#!/usr/bin/env python
"""Convert the official NYUDv2 labelled file into a folder of PNGs plus list files.

    python datasets/prepare_nyud.py --mat nyu_depth_v2_labeled.mat --out datasets/data/nyud

writes, for each of the 1449 frames (numbered 1..1449 as in MATLAB):

    OUT/images/000001.png   RGB image
    OUT/depth/000001.png    uint16 depth, metres x 5000 (0 = no measurement)
    OUT/labels/000001.png   uint8 class ids 0..39 (NYUD-40), 255 = unlabelled
    OUT/train.txt           795 frames of the standard split, ListDataset format
    OUT/test.txt            654 frames

The list files start with the header ``# image segmentation depth`` and hold paths relative
to OUT, so ``ListDataset("OUT/train.txt", tasks, depth_scale=5000)`` reads them.
``--mapping`` and ``--splits`` take your own classMapping40.mat / splits.mat (default: the
copies shipped with Hydranet).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np


def convert(mat: Path, out: Path, mapping=None, splits=None, progress: bool = True) -> dict:
    """Write the PNGs and list files; return ``{split: number of frames}``."""
    import cv2
    from tqdm import tqdm

    from hydranet.data.nyud import NYUDv2Mat, load_splits
    from hydranet.tasks import TaskSpec

    tasks = [TaskSpec("segm", "segmentation", classes=40), TaskSpec("depth", "depth")]
    ds = NYUDv2Mat(mat, split="all", tasks=tasks, mapping=mapping, splits=splits)
    for sub in ("images", "depth", "labels"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    frames = range(len(ds))
    if progress:
        frames = tqdm(frames, desc="NYUDv2 frames", unit="frame")
    for i in frames:
        raw = ds.load_checked(i)
        name = f"{ds.frames[i]:06d}.png"
        cv2.imwrite(str(out / "images" / name), cv2.cvtColor(raw["image"], cv2.COLOR_RGB2BGR))
        depth = np.clip(np.rint(raw["depth"] * 5000.0), 0, 65535).astype(np.uint16)
        cv2.imwrite(str(out / "depth" / name), depth)
        cv2.imwrite(str(out / "labels" / name), raw["segm"].astype(np.uint8))
    ds.close()
    counts = {}
    for split, idx in load_splits(splits).items():
        lines = ["# image segmentation depth"]
        lines += [f"images/{i:06d}.png labels/{i:06d}.png depth/{i:06d}.png" for i in idx if 1 <= i <= len(ds)]
        (out / f"{split}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
        counts[split] = len(lines) - 1
    return counts


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mat", required=True, type=Path, help="nyu_depth_v2_labeled.mat (MATLAB v7.3)")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--mapping", type=Path, default=None, help="classMapping40.mat (default: shipped copy)")
    parser.add_argument("--splits", type=Path, default=None, help="splits.mat (default: shipped copy)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    from hydranet.errors import HydranetError

    try:
        counts = convert(args.mat, args.out, args.mapping, args.splits, progress=not args.no_progress)
    except HydranetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {args.out}: " + ", ".join(f"{k} {v} frames" for k, v in counts.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
