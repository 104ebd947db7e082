"""The video overlay demo: frames in (a video file, a folder of frames, a camera or the
built-in synthetic clip), an MP4 out with the segmentation blended over each frame and
the depth colour map beside it.

    from hydranet.inference import Predictor
    from hydranet.tools.video import open_source, run_demo
    stats = run_demo(open_source("walk.mp4"), Predictor("model.pt"), "demo_out/demo.mp4")

Each output frame is laid out as

    +----------------------+----------------------+-----+
    | frame + segmentation | depth colour map     | m   |   <- scale bar in metres
    | (FPS in the corner)  |                      |     |
    +----------------------+----------------------+-----+
    | legend: classes present in this frame, largest area first    |
    +---------------------------------------------------------------+

(without a depth task the normals are shown instead; without either, only the overlay).
Three rates are measured after a warm-up (CUDA synchronised; what each includes is stated):
``model_fps`` (the network alone, synchronised on CUDA), ``inference_fps`` (pre-processing +
network + post-processing) and ``end_to_end_fps`` (everything per frame: reading/decoding,
inference, drawing and encoding the MP4). The FPS drawn on each frame is the running
end-to-end rate and the running model-only rate.

By default the three kinds of work overlap (:func:`run_demo` ``pipeline=True``): a reader
thread decodes, the calling thread predicts, a writer thread draws and encodes, joined by
bounded queues that keep the frames in order.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Iterator, Optional, Sequence, Union

import numpy as np

from .. import visualize as vis
from ..data.io import IMAGE_EXTENSIONS, read_image, write_png
from ..data.synthetic import render_clip
from ..errors import ConfigError, DataError
from ..kinds import draw_style
from ..kinds.depth import DEPTH
from .mp4 import open_video_writer, resolve_codec

__all__ = [
    "FrameSource",
    "VideoSource",
    "CameraSource",
    "FolderSource",
    "SyntheticSource",
    "open_source",
    "sample_frames",
    "stamp_text",
    "DemoRenderer",
    "run_demo",
    "check_display",
    "VIDEO_EXTENSIONS",
]

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv")
SYNTHETIC_CLIP_FRAMES = 48
SYNTHETIC_CLIP_SIZE = (240, 320)


# --------------------------------------------------------------------------- sources


class FrameSource:
    """Iterates over uint8 RGB frames. ``name``, ``kind``, ``fps`` (the source's rate) and
    ``frame_count`` (None when unknown, e.g. a camera) describe it; ``close()`` releases it."""

    name: str = ""
    kind: str = ""
    fps: float = 25.0
    frame_count: Optional[int] = None

    def __iter__(self) -> Iterator[np.ndarray]:
        raise NotImplementedError

    def close(self) -> None:
        pass

    @property
    def key(self) -> str:
        """What identifies this input's frames (part of the ``--int8`` cache key)."""
        return f"{self.kind} {self.name}"

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, frames={self.frame_count}, fps={self.fps:g})"


class _CaptureSource(FrameSource):
    def __init__(self, cap, name: str, default_fps: float):
        import cv2

        self.cap = cap
        self.name = name
        fps = cap.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if fps and np.isfinite(fps) and 0 < fps < 1000 else default_fps

    def _read(self) -> Optional[np.ndarray]:
        ok, bgr = self.cap.read()
        if not ok or bgr is None:
            return None
        if bgr.ndim == 2:
            bgr = np.repeat(bgr[..., None], 3, axis=2)
        return np.ascontiguousarray(bgr[..., 2::-1])

    def __iter__(self) -> Iterator[np.ndarray]:
        while self.cap is not None:
            frame = self._read()
            if frame is None:
                return
            yield frame

    def close(self) -> None:
        if self.cap is not None:
            self.cap.release()
            self.cap = None


class VideoSource(_CaptureSource):
    """A video file read with OpenCV.

    Raises:
        DataError: the file is missing, or OpenCV cannot open it or decode its first frame.
    """

    kind = "video"

    def __init__(self, path: Union[str, Path]):
        import cv2

        path = Path(path)
        if not path.exists():
            raise DataError(f"video {str(path)!r} does not exist")
        if not path.is_file():
            raise DataError(f"video {str(path)!r} is not a file")
        cap = cv2.VideoCapture(str(path))
        if not cap.isOpened():
            cap.release()
            raise DataError(f"{path}: cannot be opened as a video (unknown format, or corrupt file)")
        super().__init__(cap, str(path), default_fps=25.0)
        self._first = self._read()
        if self._first is None:
            self.close()
            raise DataError(f"{path}: no frame could be decoded (empty or corrupt video)")
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        self.frame_count = count if count > 0 else None
        stat = path.stat()
        self._key = f"video {path.resolve()} {stat.st_size} {stat.st_mtime_ns}"

    @property
    def key(self) -> str:
        return self._key

    def __iter__(self) -> Iterator[np.ndarray]:
        if self._first is not None:
            first, self._first = self._first, None
            yield first
        yield from super().__iter__()


class CameraSource(_CaptureSource):
    """A camera (OpenCV device index); runs until stopped (Ctrl-C, ``q``/Esc with ``--show``, or ``max_frames``)."""

    kind = "camera"

    def __init__(self, index: int):
        import cv2

        cap = cv2.VideoCapture(int(index))
        if not cap.isOpened():
            cap.release()
            raise DataError(f"camera {index} could not be opened (no such device, or it is busy)")
        super().__init__(cap, f"camera {index}", default_fps=30.0)


class FolderSource(FrameSource):
    """The images of a folder in sorted name order; frames of another size than the first
    are resized to it (a video has one frame size)."""

    kind = "folder"

    def __init__(self, folder: Union[str, Path], fps: float = 10.0):
        folder = Path(folder)
        if not folder.is_dir():
            raise DataError(f"folder {str(folder)!r} does not exist")
        self.files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
        if not self.files:
            raise DataError(f"folder {str(folder)!r} holds no image frames ({', '.join(IMAGE_EXTENSIONS)})")
        self.name = str(folder)
        self.fps = float(fps)
        self.frame_count = len(self.files)

    @property
    def key(self) -> str:
        stats = [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in self.files]
        return f"folder {Path(self.name).resolve()} {stats}"

    def __iter__(self) -> Iterator[np.ndarray]:
        import cv2

        size = None
        for path in self.files:
            frame = read_image(path)
            if size is None:
                size = frame.shape[:2]
            elif frame.shape[:2] != size:
                frame = cv2.resize(frame, (size[1], size[0]), interpolation=cv2.INTER_AREA)
            yield frame


class SyntheticSource(FrameSource):
    """A clip of the built-in synthetic scene set: one scene, a camera gliding through it
    (:func:`hydranet.data.synthetic.render_clip`). Rendered on first iteration, no files needed."""

    kind = "synthetic"

    def __init__(
        self,
        num_frames: int = SYNTHETIC_CLIP_FRAMES,
        size: Sequence[int] = SYNTHETIC_CLIP_SIZE,
        seed: int = 0,
        fps: float = 12.0,
    ):
        if num_frames < 1:
            raise ConfigError(f"the synthetic clip needs at least one frame, got {num_frames}")
        self.num_frames = int(num_frames)
        self.size = (int(size[0]), int(size[1]))
        self.seed = int(seed)
        self.fps = float(fps)
        self.frame_count = self.num_frames
        self.name = f"synthetic clip ({self.num_frames} frames, {self.size[1]}x{self.size[0]}, seed {self.seed})"

    def __iter__(self) -> Iterator[np.ndarray]:
        for rgb, _depth, _labels in render_clip(self.num_frames, self.size, self.seed):
            yield rgb


def sample_frames(source: FrameSource, count: int, limit: int = 512) -> list[np.ndarray]:
    """Up to ``count`` frames spread over the first ``limit`` frames of ``source`` (for int8
    calibration), evenly spaced when the length is known, else the first ``count``."""
    known = min(source.frame_count or count, limit)
    wanted = set(np.linspace(0, known - 1, min(count, known)).round().astype(int).tolist())
    frames = []
    for i, frame in enumerate(source):
        if i >= known:
            break
        if i in wanted:
            frames.append(frame)
    return frames


def open_source(
    spec: Optional[Union[str, int, Path]] = None,
    clip_frames: int = SYNTHETIC_CLIP_FRAMES,
    clip_size: Sequence[int] = SYNTHETIC_CLIP_SIZE,
    seed: int = 0,
    folder_fps: float = 10.0,
) -> FrameSource:
    """A frame source from a command-line ``--input``: None -> the synthetic clip, an integer
    (or a string of digits that is not an existing path) -> a camera, a folder -> its frames,
    anything else -> a video file."""
    if spec is None or spec == "":
        return SyntheticSource(clip_frames, clip_size, seed)
    if isinstance(spec, int):
        return CameraSource(spec)
    path = Path(spec)
    if str(spec).isdigit() and not path.exists():
        return CameraSource(int(spec))
    if path.is_dir():
        return FolderSource(path, fps=folder_fps)
    return VideoSource(path)


# --------------------------------------------------------------------------- drawing


class DemoRenderer:
    """Composes the demo's output frames (see the module docstring for the layout).

    Args:
        tasks: the model's task specs (the overlay and map tasks of
            :func:`hydranet.visualize.drawn_tasks` are drawn: segmentation, then depth or normals).
        frame_size: ``(H, W)`` of the input frames; the output size follows from it.
        config: the model config (its ``meta`` may hold the depth range).
        max_depth: top of the depth colour scale in metres (default: the task's
            ``max_depth``, else fixed from the first frame's 99th percentile).
        cmap: depth colour map (``magma`` or ``turbo``; see :data:`hydranet.visualize.DEPTH_CMAPS`).
        alpha: opacity of the segmentation colours over the frame.
        legend_rows: rows of the legend band under the panels.
        palette: segmentation colours overriding the checkpoint's (a name, a file or rows; see
            :func:`hydranet.visualize.resolve_palette`).
    """

    def __init__(
        self,
        tasks: Sequence,
        frame_size: Sequence[int],
        config: Optional[dict] = None,
        max_depth: Optional[float] = None,
        cmap: str = "magma",
        alpha: float = 0.5,
        legend_rows: int = 2,
        palette=None,
    ):
        self.vis = vis
        self.h, self.w = int(frame_size[0]), int(frame_size[1])
        self.overlay_task, self.map_task = vis.drawn_tasks(list(tasks))
        vis._cmap_lut(cmap)  # validates the name now
        self.style = draw_style(
            config, vis.font_scale_for(self.h), float(alpha), True, max_depth=max_depth, cmap=cmap, palette=palette
        )
        self.legend_rows = legend_rows if self.overlay_task else 0
        self.output_size: Optional[tuple[int, int]] = None
        self._legend_key, self._legend_image = None, None

    def _legend(self, legend: tuple, width: int) -> np.ndarray:
        """The legend band; drawn again only when the classes present (or their order) change,
        which in a video is rarely from one frame to the next."""
        ids, names, palette = legend
        key = (tuple(ids), width)
        if key != self._legend_key:
            self._legend_image = self.vis.draw_legend(
                ids, names, palette, font_scale=self.style.font_scale, width=width, rows=self.legend_rows
            )
            self._legend_key = key
        return self._legend_image

    @property
    def max_depth(self) -> Optional[float]:
        """The depth colour range in use (fixed by the first frame when not given)."""
        cached = self.style.cache.get(self.map_task.name) if self.map_task else None
        return cached[0] if cached else self.style.of(DEPTH).max_depth

    def render(self, frame: np.ndarray, pred, fps_text: Optional[str] = None) -> np.ndarray:
        """The output frame (RGB uint8) for ``frame`` and its prediction."""
        vis, style = self.vis, self.style
        if frame.shape[:2] != (self.h, self.w):
            raise ValueError(f"frame of size {frame.shape[:2]}, the renderer was made for {(self.h, self.w)}")
        left, legend = vis.blend_overlay(frame, pred, self.overlay_task, style)
        if fps_text:
            vis.put_label(left, fps_text, (3, 3), style.font_scale)
        panels = [left]
        if self.map_task:
            panels += self.map_task.task_kind.draw_map(self.map_task, pred[self.map_task.name], style)
        width = sum(p.shape[1] for p in panels)
        band = self._legend(legend, width) if legend is not None and self.legend_rows else None
        height = self.h + (band.shape[0] if band is not None else 0)
        # one canvas, each part copied in once; MPEG-4 wants even sizes (an odd edge gets a background line)
        canvas = np.empty((height + height % 2, width + width % 2, 3), np.uint8)
        canvas[height:], canvas[:, width:] = vis.BACKGROUND, vis.BACKGROUND
        x = 0
        for panel in panels:
            canvas[: self.h, x : x + panel.shape[1]] = panel
            x += panel.shape[1]
        if band is not None:
            canvas[self.h : height, :width] = band
        self.output_size = canvas.shape[:2]
        return canvas


# --------------------------------------------------------------------------- the loop


def check_display() -> None:
    """Raise ConfigError unless OpenCV can open a window here (``--show``)."""
    import cv2

    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        raise ConfigError(
            "--show needs a display, and none is set here (no $DISPLAY or $WAYLAND_DISPLAY); "
            "drop --show and open the written MP4 instead"
        )
    try:
        cv2.namedWindow("hydranet", cv2.WINDOW_NORMAL)
    except cv2.error as exc:
        raise ConfigError(
            "--show needs OpenCV with GUI support; this build has none (opencv-python-headless?). "
            "Install opencv-python, or drop --show and open the written MP4 instead. "
            f"OpenCV said: {str(exc).strip().splitlines()[-1]}"
        ) from exc


def _chunks(source: FrameSource, batch: int, max_frames: Optional[int]) -> Iterator[list]:
    chunk, n = [], 0
    for frame in source:
        if max_frames is not None and n >= max_frames:
            break
        chunk.append(frame)
        n += 1
        if len(chunk) == batch:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _rate(frames: int, seconds: float) -> Optional[float]:
    return frames / seconds if seconds > 0 and frames else None


def stamp_text(end_to_end_fps: Optional[float], model_fps: Optional[float]) -> str:
    """The rates drawn on each frame: the running end-to-end rate and the model-only rate."""
    e2e = f"{end_to_end_fps:.1f} FPS" if end_to_end_fps else "-- FPS"
    return e2e + (f" | model {model_fps:.1f}" if model_fps else "")


class _Output:
    """Draws, encodes (and shows) the output frames in order; counts them and keeps the PNG frame."""

    def __init__(self, out: Path, fps: float, codec: str, png_index: int, show: bool, encoder_threads: int = 0):
        self.out, self.fps, self.codec, self.png_index, self.show = out, fps, codec, png_index, show
        self.encoder_threads = encoder_threads
        self.renderer: Optional[DemoRenderer] = None
        self.writer = None
        self.saved: Optional[np.ndarray] = None
        self.frames = 0
        self.t_start: Optional[float] = None
        self.stopped = False  # q or Esc in the window

    def write(self, frame: np.ndarray, pred, model_fps: Optional[float]) -> None:
        e2e = _rate(self.frames, time.perf_counter() - self.t_start) if self.t_start is not None else None
        canvas = self.renderer.render(frame, pred, stamp_text(e2e, model_fps))
        if self.writer is None:
            self.writer = open_video_writer(
                self.out, self.fps, canvas.shape[:2], self.codec, threads=self.encoder_threads
            )
        self.writer.write(canvas)
        if self.frames == self.png_index or self.saved is None:
            self.saved = canvas
        self.frames += 1
        if self.show:
            import cv2

            cv2.imshow("hydranet", canvas[..., ::-1])
            if cv2.waitKey(1) & 0xFF in (27, ord("q")):
                self.stopped = True

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _predict_chunk(predictor, renderer: DemoRenderer, chunk: list) -> list:
    """Predictions for a chunk; a frame of another size than the first (a video changing size
    mid-stream) is resized to it and predicted alone."""
    import cv2

    preds = predictor.predict_batch(chunk)
    for i, frame in enumerate(chunk):
        if frame.shape[:2] != (renderer.h, renderer.w):
            chunk[i] = cv2.resize(frame, (renderer.w, renderer.h), interpolation=cv2.INTER_AREA)
            preds[i] = predictor.predict(chunk[i])
    return preds


_END = object()  # end of a stream between the pipeline's stages


class _Failed:
    """An exception raised in a stage's thread, handed on to the main thread."""

    def __init__(self, exc: BaseException):
        self.exc = exc


def _put(q, item, stop) -> bool:
    """Put ``item`` unless ``stop`` is set first (a full queue never blocks a stopping stage)."""
    import queue

    while not stop.is_set():
        try:
            q.put(item, timeout=0.05)
            return True
        except queue.Full:
            pass
    return False


def _get(q):
    import queue

    while True:  # a short timeout keeps the main thread responsive to Ctrl-C
        try:
            return q.get(timeout=0.05)
        except queue.Empty:
            pass


def _serial_loop(chunks, predictor, output: _Output, start, bar) -> None:
    """Read, predict, draw and encode one chunk after another on this thread."""
    for chunk in chunks:
        if output.renderer is None:
            start(chunk)
        preds = _predict_chunk(predictor, output.renderer, chunk)
        model_fps = predictor.fps()["model_fps"]
        for frame, pred in zip(chunk, preds):
            output.write(frame, pred, model_fps)
            if output.stopped:
                break
        if bar is not None:
            bar.update(len(chunk))
        if output.stopped:
            break


def _pipelined_loop(chunks, predictor, output: _Output, start, bar, depth: int = 4) -> None:
    """Three stages overlapping: a reader thread decodes, this thread predicts, a writer thread
    draws and encodes. Bounded FIFO queues (``depth`` chunks) keep the order and the memory.

    Ctrl-C (KeyboardInterrupt here) or an error in any stage stops the reader; the frames
    already predicted are still drawn and written, then the exception is raised here.
    """
    import queue
    import threading

    stop = threading.Event()
    inbox: queue.Queue = queue.Queue(maxsize=depth)
    outbox: queue.Queue = queue.Queue(maxsize=depth)
    failures: list = []

    def read():
        try:
            for chunk in chunks:
                if not _put(inbox, chunk, stop):
                    return
            _put(inbox, _END, stop)
        except BaseException as exc:  # KeyboardInterrupt from a source too: handed to the main thread
            _put(inbox, _Failed(exc), stop)

    def write():
        try:
            while True:
                item = _get(outbox)
                if item is _END:
                    return
                chunk, preds, model_fps = item
                for frame, pred in zip(chunk, preds):
                    output.write(frame, pred, model_fps)
                if bar is not None:
                    bar.update(len(chunk))
        except BaseException as exc:
            failures.append(exc)
            stop.set()
            while _get(outbox) is not _END:  # let the main thread finish its puts
                pass

    reader = threading.Thread(target=read, name="hydranet-demo-read", daemon=True)
    writer = threading.Thread(target=write, name="hydranet-demo-write", daemon=True)
    reader.start()
    try:
        while not stop.is_set():
            item = _get(inbox)
            if item is _END:
                break
            if isinstance(item, _Failed):
                raise item.exc
            if output.renderer is None:
                start(item)
                writer.start()
            preds = _predict_chunk(predictor, output.renderer, item)
            if not _put(outbox, (item, preds, predictor.fps()["model_fps"]), stop):
                break
    finally:
        stop.set()  # the reader stops; the writer drains what was predicted
        if writer.is_alive() or writer.ident is not None:
            outbox.put(_END)
            writer.join()
        reader.join(timeout=5)
    if failures:
        raise failures[0]


def run_demo(
    source: FrameSource,
    predictor,
    out: Union[str, Path],
    batch: int = 1,
    max_frames: Optional[int] = None,
    show: bool = False,
    progress: bool = True,
    frame_png: Optional[Union[str, Path]] = None,
    fps: Optional[float] = None,
    max_depth: Optional[float] = None,
    cmap: str = "magma",
    alpha: float = 0.5,
    warmup: int = 2,
    codec: str = "h264",
    palette=None,
    pipeline: bool = True,
) -> dict:
    """Run ``predictor`` over ``source`` and write the overlay video to ``out`` (MP4: H.264
    yuv420p through PyAV, else mp4v with a one-line notice; see :mod:`hydranet.tools.mp4`).
    ``palette`` overrides the checkpoint's segmentation colours.

    ``pipeline`` (default; not with ``show``, whose window belongs to the main thread):
    decoding, inference and drawing + encoding run in three threads that overlap, joined by
    bounded queues, frames kept in order (see :func:`_pipelined_loop`); else one loop does
    each frame's steps one after another.

    Ctrl-C stops the loop cleanly: the frames done so far are written and the file is
    finalised. Returns the run's statistics: ``frames``, ``output_size`` ``(H, W)``, the
    three rates (``model_fps``, ``inference_fps``, ``end_to_end_fps``), ``interrupted``, and
    the paths written. ``frame_png`` gets one output frame (the middle one when the length is
    known, else the first) as a PNG.
    """
    if batch < 1:
        raise ConfigError(f"--batch must be at least 1, got {batch}")
    if max_frames is not None and max_frames < 1:
        raise ConfigError(f"--max-frames must be at least 1, got {max_frames}")
    if show:
        check_display()
    pipeline = bool(pipeline) and not show
    out = Path(out)
    total = source.frame_count
    if max_frames is not None:
        total = min(total, max_frames) if total is not None else max_frames
    out_fps = float(fps or source.fps)
    codec = resolve_codec(codec)  # a missing H.264 encoder is said now, not in the middle of the progress bar
    # a network on the CPU keeps every core busy: the encoder's own threads would only contend with its
    # OpenMP threads (a preempted one stalls each parallel region); on a GPU x264 may take the cores
    encoder_threads = 0 if str(predictor.device).startswith("cuda") else 1
    output = _Output(out, out_fps, codec, (total // 2) if total else 0, show, encoder_threads)

    def start(chunk: list) -> None:  # on the first chunk: the renderer, the warm-up, the clock
        output.renderer = DemoRenderer(
            predictor.tasks, chunk[0].shape[:2], predictor.config, max_depth, cmap, alpha, palette=palette
        )
        predictor.warmup(chunk[0], iterations=warmup, batch=len(chunk))
        predictor.reset_timing()
        predictor.reset_smoothing()
        output.t_start = time.perf_counter()

    loop = _pipelined_loop if pipeline else _serial_loop
    bar_total = total if progress and source.frame_count is not None else False
    interrupted, wall = _run_loop(loop, source, batch, max_frames, predictor, output, start, bar_total, show)
    if output.frames == 0:
        if interrupted:
            raise KeyboardInterrupt
        raise DataError(f"{source.name}: no frame was read")
    if frame_png is not None and output.saved is not None:
        frame_png = write_png(frame_png, output.saved)
    return {
        "input": source.name,
        "source": source.kind,
        "frames": output.frames,
        "output": str(out),
        "codec": output.writer.codec if output.writer is not None else None,
        "frame_png": str(frame_png) if frame_png is not None else None,
        "output_size": list(output.renderer.output_size),
        "output_fps": out_fps,
        "batch": batch,
        "pipeline": pipeline,
        **_predictor_facts(predictor, warmup),
        **_rates(predictor, output.frames, wall),
        "max_depth": output.renderer.max_depth,
        "interrupted": interrupted,
        "stopped_by_key": output.stopped,
        "fps_notes": {
            "model_fps": "network only (input on the device; CUDA synchronised)",
            "inference_fps": "pre-processing + network + post-processing to NumPy",
            "end_to_end_fps": "the whole run per frame after the warm-up: read/decode, inference, drawing, "
            "MP4 encoding" + (" (overlapping in three threads)" if pipeline else " (one after another)"),
        },
    }


def _run_loop(
    loop, source, batch, max_frames, predictor, output: _Output, start, bar_total, show
) -> tuple[bool, float]:
    """Run ``loop`` over the source's chunks, with a progress bar unless ``bar_total`` is False;
    Ctrl-C ends it cleanly. The output is finalised and the source, bar and window closed
    whatever happens. Returns (interrupted, wall seconds)."""
    bar = None
    interrupted = False
    try:
        if bar_total is not False:
            from tqdm import tqdm

            bar = tqdm(total=bar_total, unit="frame", desc="demo", dynamic_ncols=True, file=sys.stderr)
        loop(_chunks(source, batch, max_frames), predictor, output, start, bar)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        output.close()
        wall = time.perf_counter() - output.t_start if output.t_start is not None else 0.0
        if bar is not None:
            bar.close()
        source.close()
        if show:
            import cv2

            try:
                cv2.destroyAllWindows()
            except cv2.error:
                pass
    return interrupted, wall


def _predictor_facts(predictor, warmup: int) -> dict:
    """How the predictor ran: device, precision, path, warm-up, smoothing."""
    return {
        "device": str(predictor.device),
        "dtype": str(predictor.dtype).replace("torch.", ""),
        "fast": predictor.fast,
        "onnx": getattr(predictor, "onnx", False),
        "warmup_iterations": warmup,
        "smooth": predictor.smoother.alpha if predictor.smoother is not None else 0.0,
    }


def _rates(predictor, frames: int, wall: float) -> dict:
    """The three rates of a run (network, inference, end to end) and its wall time."""
    t = predictor.timing
    return {
        "model_fps": _rate(t["frames"], t["model_s"]),
        "inference_fps": _rate(t["frames"], t["end_to_end_s"]),
        "end_to_end_fps": _rate(frames, wall),
        "wall_s": wall,
    }
