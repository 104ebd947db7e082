"""Each step of the video demo timed alone, per frame: decode, pre-processing, the network,
prediction (pre + network + post), drawing, H.264 encoding (x264 in its own threads and in one).

    python scripts/demo_steps.py --size 640x480 [--weights model.pt|model.onnx] [--frames 48]

Wall and CPU milliseconds per frame (CPU > wall: several threads). What the end-to-end rate
of ``hydranet bench --e2e`` is made of; see docs/benchmarks.md (issue 28, run 4).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from hydranet.inference import Predictor
from hydranet.tools.mp4 import open_video_writer
from hydranet.tools.video import DemoRenderer, SyntheticSource, VideoSource


def timed(name: str, step, count: int) -> list:
    wall, cpu = time.perf_counter(), time.process_time()
    out = [step(i) for i in range(count)]
    wall, cpu = (time.perf_counter() - wall) / count * 1e3, (time.process_time() - cpu) / count * 1e3
    print(f"{name:14s} wall {wall:7.2f} ms   cpu {cpu:7.2f} ms")
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", default="640x480", help="WIDTHxHEIGHT")
    p.add_argument("--weights", default="hydranet/assets/hydranet_synthetic.pt")
    p.add_argument("--frames", type=int, default=48)
    args = p.parse_args()
    w, h = (int(v) for v in args.size.lower().split("x"))
    frames = list(SyntheticSource(args.frames, (h, w)))
    predictor = Predictor(args.weights, device="cpu", tune_allocator=True)
    predictor.warmup(frames[0], iterations=3)
    renderer = DemoRenderer(predictor.tasks, (h, w), predictor.config)
    n = len(frames)
    with tempfile.TemporaryDirectory() as tmp:
        clip = Path(tmp) / "clip.mp4"
        writer = open_video_writer(clip, 12.0, (h, w), "h264")
        for f in frames:
            writer.write(f)
        writer.close()
        source = iter(VideoSource(clip))
        timed("decode", lambda i: next(source), n)
        inputs = timed("pre-processing", lambda i: predictor.preprocess([frames[i]])[0], n)
        timed("network", lambda i: predictor._run_model(inputs[i]), n)
        preds = timed("prediction", lambda i: predictor.predict(frames[i]), n)
        canvases = timed("drawing", lambda i: renderer.render(frames[i], preds[i], "12.0 FPS | model 13.0"), n)
        for threads in (0, 1):
            out = open_video_writer(Path(tmp) / f"out{threads}.mp4", 12.0, canvases[0].shape[:2], "h264", threads)
            timed(f"encoding t={threads}", lambda i, out=out: out.write(canvases[i]), n)
            out.close()
    print(f"output canvas {canvases[0].shape[1]}x{canvases[0].shape[0]}")


if __name__ == "__main__":
    main()
