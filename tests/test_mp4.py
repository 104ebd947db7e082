"""The demo's MP4: H.264 yuv420p through PyAV (plays in browsers), mp4v fallback with a warning."""

import sys
import warnings

import numpy as np
import pytest

from hydranet.errors import ConfigError
from hydranet.tools import mp4

cv2 = pytest.importorskip("cv2")


def _frames(n=5, h=48, w=64):
    rng = np.random.default_rng(0)  # flat 16 x 16 blocks: what chroma subsampling keeps
    base = np.kron(rng.integers(0, 256, (h // 16, w // 16, 3)), np.ones((16, 16, 1))).astype(np.uint8)
    return [np.roll(base, 4 * i, axis=1) for i in range(n)]


def _write(path, codec):
    frames = _frames()
    writer = mp4.open_video_writer(path, 10.0, frames[0].shape[:2], codec)
    for f in frames:
        writer.write(f)
    writer.close()
    return writer


def _fourcc(path):
    cap = cv2.VideoCapture(str(path))
    code = int(cap.get(cv2.CAP_PROP_FOURCC))
    count = 0
    while cap.read()[0]:
        count += 1
    cap.release()
    return code.to_bytes(4, "little").decode("ascii", "replace"), count


def test_h264_yuv420p_when_pyav_is_installed(tmp_path):
    av = pytest.importorskip("av", reason="PyAV not installed (pip install 'hydranet[video]')")
    if not mp4.h264_available():
        pytest.skip("this PyAV build has no H.264 encoder")
    path = tmp_path / "a.mp4"
    assert _write(path, "h264").codec == "h264"
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert stream.codec_context.pix_fmt == "yuv420p"
        assert (stream.codec_context.width, stream.codec_context.height) == (64, 48)
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
    assert len(decoded) == 5
    # lossy, but close to what was written
    assert np.abs(decoded[2].astype(int) - _frames()[2].astype(int)).mean() < 6
    assert _fourcc(path) == ("h264", 5)  # what OpenCV reads back for an avc1 track


def test_fallback_to_mp4v_with_a_warning(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "av", None)  # `import av` now raises ImportError
    assert not mp4.h264_available()
    path = tmp_path / "b.mp4"
    with pytest.warns(UserWarning, match=r"hydranet\[video\].*mp4v"):
        assert _write(path, "h264").codec == "mp4v"
    code, count = _fourcc(path)
    assert code in ("mp4v", "FMP4") and count == 5  # OpenCV names MPEG-4 Part 2 FMP4 when reading


def test_mp4v_asked_for_gives_no_warning_and_bad_codec_is_refused(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _write(tmp_path / "c.mp4", "mp4v").codec == "mp4v"
    with pytest.raises(ConfigError, match="unknown video codec 'xvid'"):
        mp4.open_video_writer(tmp_path / "d.mp4", 10, (48, 64), "xvid")
