#!/usr/bin/env python3
"""Video in -> segmentation overlay + depth with its scale + legend + FPS -> MP4 out.

The same picture as `hydranet demo`, written out on Hydranet's public API so it can be
copied and changed:

    python demos/video_overlay.py                                  # built-in synthetic clip
    python demos/video_overlay.py --input drive.mp4 --weights mtrn-kitti-joint --smooth 0.6
    python demos/video_overlay.py --input 0 --max-frames 300       # camera 0
"""

import argparse
import time


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input", help="video file, folder of frames or camera index (default: synthetic clip)")
    p.add_argument("--weights", help="checkpoint or known model name (default: the bundled synthetic model)")
    p.add_argument("--out", default="overlay.mp4", help="output MP4 (H.264 when PyAV is installed)")
    p.add_argument("--smooth", type=float, default=0.0, help="temporal smoothing 0..1 (0 = off)")
    p.add_argument("--max-frames", type=int, help="stop after this many frames")
    args = p.parse_args()

    from hydranet.inference import Predictor, resolve_weights
    from hydranet.tools.mp4 import open_video_writer
    from hydranet.tools.video import DemoRenderer, open_source

    predictor = Predictor(resolve_weights(args.weights), smooth=args.smooth)
    renderer = writer = None
    frames, start = 0, time.perf_counter()
    with open_source(args.input) as source:
        for frame in source:
            if args.max_frames and frames >= args.max_frames:
                break
            if renderer is None:
                renderer = DemoRenderer(predictor.tasks, frame.shape[:2], predictor.config)
            pred = predictor.predict(frame)
            fps = frames / (time.perf_counter() - start) if frames else 0.0
            picture = renderer.render(frame, pred, f"{fps:.1f} FPS")
            if writer is None:
                writer = open_video_writer(args.out, source.fps, picture.shape[:2])
            writer.write(picture)
            frames += 1
    if writer is None:
        raise SystemExit(f"{args.input}: no frame was read")
    writer.close()
    print(f"wrote {frames} frames to {args.out} ({writer.codec}), {fps:.1f} FPS end to end")


if __name__ == "__main__":
    main()
