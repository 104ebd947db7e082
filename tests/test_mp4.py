"""The demo's MP4: H.264 yuv420p through PyAV (plays in browsers), mp4v fallback with one line on stderr."""

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


def test_fallback_to_mp4v_says_so_in_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "av", None)  # `import av` now raises ImportError
    assert not mp4.h264_available()
    path = tmp_path / "b.mp4"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a line on stderr, not a Python warning
        assert _write(path, "h264").codec == "mp4v"
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("hydranet: warning: ") and "pip install av" in err
    code, count = _fourcc(path)
    assert code in ("mp4v", "FMP4") and count == 5  # OpenCV names MPEG-4 Part 2 FMP4 when reading


def test_mp4v_asked_for_gives_no_warning_and_bad_codec_is_refused(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _write(tmp_path / "c.mp4", "mp4v").codec == "mp4v"
    with pytest.raises(ConfigError, match="unknown video codec 'xvid'"):
        mp4.open_video_writer(tmp_path / "d.mp4", 10, (48, 64), "xvid")


def test_pyav_is_a_dependency_of_a_plain_install():
    """H.264 needs no extra: PyAV is in install_requires (setup.py), not only in an extra."""
    import ast
    from pathlib import Path

    tree = ast.parse((Path(__file__).resolve().parents[1] / "setup.py").read_text())
    call = next(n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "setup")
    requires = next(ast.literal_eval(k.value) for k in call.keywords if k.arg == "install_requires")
    assert any(r.split(">")[0].split("=")[0].strip() == "av" for r in requires)


def test_demo_fallback_line_comes_before_the_progress_bar(tmp_path, monkeypatch, capsys):
    """The missing-encoder line is printed once, before the bar starts, never inside it."""
    import torch
    from support import tiny_config

    import hydranet
    from hydranet.cli import main

    torch.manual_seed(0)
    tasks = [{"name": "segm", "kind": "segmentation", "classes": 3}, {"name": "depth", "kind": "depth"}]
    hydranet.save_model(hydranet.build_model(tiny_config(tasks=tasks)), tmp_path / "m.pt")
    monkeypatch.setitem(sys.modules, "av", None)
    out = tmp_path / "d.mp4"
    args = ["demo", "--weights", str(tmp_path / "m.pt"), "--out", str(out), "--max-frames", "3", "--clip-size", "64x48"]
    assert main(args) == 0
    err = capsys.readouterr().err
    lines = [line for line in err.replace("\r", "\n").splitlines() if line.strip()]
    warn = [i for i, line in enumerate(lines) if "warning" in line]
    bar = [i for i, line in enumerate(lines) if line.startswith("demo:")]
    assert len(warn) == 1 and lines[warn[0]].startswith("hydranet: warning: no H.264 encoder")
    assert bar and warn[0] < min(bar)
