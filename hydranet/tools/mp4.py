"""MP4 writing for the demos: H.264 (yuv420p) through PyAV, so the clip plays in browsers,
Jupyter and chat tools; where PyAV (a dependency) could not be installed, OpenCV's MPEG-4
Part 2 (``mp4v``), saying so in one line on stderr.

    writer = open_video_writer("demo.mp4", fps=12, size_hw=(240, 320))
    writer.write(rgb_uint8)      # RGB frames of exactly that size
    writer.close()
    writer.codec                 # "h264" or "mp4v"

PyAV (BSD-3-Clause bindings, installed with Hydranet) ships FFmpeg with libx264 in its
wheels; see the README for the licences of those libraries.
"""

from __future__ import annotations

import sys
from fractions import Fraction
from pathlib import Path
from typing import Sequence, Union

import numpy as np

from ..errors import ConfigError, DataError

__all__ = ["open_video_writer", "h264_available", "resolve_codec", "CODECS"]

CODECS = ("h264", "mp4v")


def h264_available() -> bool:
    """True when PyAV is installed and its FFmpeg has an H.264 encoder."""
    try:
        import av
    except ImportError:
        return False
    try:
        av.codec.Codec("libx264", "w")
    except Exception:  # PyAV raises its own UnknownCodecError
        return False
    return True


class _AvWriter:
    codec = "h264"

    def __init__(self, path: Path, fps: float, size_hw: Sequence[int], crf: int = 20, threads: int = 0):
        import av
        import cv2

        self.av, self.cv2 = av, cv2
        self.container = av.open(str(path), mode="w", options={"movflags": "+faststart"})
        self.stream = self.container.add_stream("libx264", rate=Fraction(float(fps)).limit_denominator(1001))
        self.stream.width, self.stream.height = int(size_hw[1]), int(size_hw[0])
        self.stream.pix_fmt = "yuv420p"
        # ultrafast: a third of veryfast's CPU time per frame (measured at 692x284 and 1370x552),
        # so encoding costs the demo little; at crf 20 the files are larger, not worse to look at
        # threads: 0 = x264's own choice (frame threads that overlap a serial loop's next frame);
        # 1 where a thread of the caller's already runs beside the network (the pipelined demo)
        self.stream.options = {"crf": str(crf), "preset": "ultrafast", "threads": str(int(threads))}
        self.even = self.stream.width % 2 == 0 and self.stream.height % 2 == 0

    def write(self, rgb: np.ndarray) -> None:
        rgb = np.ascontiguousarray(rgb)
        if self.even:  # OpenCV's BT.601 (limited range, as swscale's) RGB -> I420: a third of swscale's time
            frame = self.av.VideoFrame.from_ndarray(
                self.cv2.cvtColor(rgb, self.cv2.COLOR_RGB2YUV_I420), format="yuv420p"
            )
        else:
            frame = self.av.VideoFrame.from_ndarray(rgb, format="rgb24")
        for packet in self.stream.encode(frame):
            self.container.mux(packet)

    def close(self) -> None:
        if self.container is not None:
            for packet in self.stream.encode():
                self.container.mux(packet)
            self.container.close()
            self.container = None


class _CvWriter:
    codec = "mp4v"

    def __init__(self, path: Path, fps: float, size_hw: Sequence[int]):
        import cv2

        self.writer = cv2.VideoWriter(
            str(path), cv2.VideoWriter_fourcc(*"mp4v"), float(fps), (int(size_hw[1]), int(size_hw[0]))
        )
        if not self.writer.isOpened():
            self.writer.release()
            raise DataError(
                f"{path}: cannot open a video writer (codec mp4v, {size_hw[1]}x{size_hw[0]}); "
                f"check the folder is writable and the name ends in .mp4"
            )

    def write(self, rgb: np.ndarray) -> None:
        self.writer.write(np.ascontiguousarray(rgb[..., ::-1]))

    def close(self) -> None:
        self.writer.release()


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def resolve_codec(codec: str = "h264", notice=_say) -> str:
    """The codec a writer will use: ``codec``, or ``"mp4v"`` when H.264 was asked for and PyAV
    (or its H.264 encoder) is missing, which ``notice`` is told in one line. Call it before a
    progress bar starts, so the line is not printed in the middle of the bar.

    Raises:
        ConfigError: an unknown codec.
    """
    if codec not in CODECS:
        raise ConfigError(f"unknown video codec {codec!r}; valid: {', '.join(CODECS)}")
    if codec == "h264" and not h264_available():
        notice(
            "hydranet: warning: no H.264 encoder (PyAV is not installed: pip install av); writing mp4v, "
            "which browsers and Jupyter do not play"
        )
        return "mp4v"
    return codec


def open_video_writer(
    path: Union[str, Path], fps: float, size_hw: Sequence[int], codec: str = "h264", threads: int = 0
):
    """An MP4 writer taking RGB uint8 frames of ``size_hw`` (even sides for H.264).
    ``threads``: the H.264 encoder's threads (0: its own choice).

    ``codec="h264"`` falls back to ``mp4v`` when PyAV (or its H.264 encoder) is missing,
    saying so in one line on stderr (:func:`resolve_codec`); ``codec="mp4v"`` always uses OpenCV.

    Raises:
        ConfigError: an unknown codec. DataError: the file cannot be opened for writing.
    """
    codec = resolve_codec(codec)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if codec == "h264":
        try:
            return _AvWriter(path, fps, size_hw, threads=threads)
        except OSError as exc:
            raise DataError(f"{path}: cannot open an H.264 writer ({exc})") from exc
    return _CvWriter(path, fps, size_hw)
