"""ONNX files wherever a checkpoint goes (Predictor, demo, predict, pseudolabel), ``--int8``
with its cache, and the pipelined demo (order kept, Ctrl-C clean)."""

import json

import numpy as np
import pytest
import torch
from support import tiny_config

import hydranet
from hydranet.cli import main
from hydranet.inference import Predictor
from hydranet.inference.export import export_onnx
from hydranet.inference.int8_cache import cache_path, int8_file
from hydranet.inference.weights import bundled_weights_path
from hydranet.tools.video import FrameSource, run_demo

cv2 = pytest.importorskip("cv2")
pytest.importorskip("onnxruntime")

pytestmark = pytest.mark.usefixtures("one_thread")

TASKS = [
    {"name": "segm", "kind": "segmentation", "classes": 6},
    {"name": "depth", "kind": "depth", "options": {"max_depth": 10.0}},
    {"name": "normals", "kind": "normals"},
    {"name": "kind", "kind": "classification", "classes": 3},
]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A tiny checkpoint and its fp32 ONNX file (opset 17: the fast exporter)."""
    tmp = tmp_path_factory.mktemp("onnx")
    torch.manual_seed(0)
    model = hydranet.build_model(tiny_config(tasks=TASKS)).eval()
    hydranet.save_model(model, tmp / "m.pt")
    export_onnx(model, tmp / "m.onnx", opset=17, size=(64, 64), check=False)
    return tmp


def _frames(n=5, h=64, w=80, seed=0):
    rng = np.random.default_rng(seed)
    base = cv2.resize(rng.integers(0, 256, (h // 8, w // 8, 3), dtype=np.uint8), (w, h))
    return [np.roll(base, 4 * i, axis=1) for i in range(n)]


def test_predictor_on_an_onnx_file_gives_the_checkpoints_results(files):
    ckpt = Predictor(files / "m.pt", fast=False)
    onnx = Predictor(files / "m.onnx")
    assert onnx.onnx and onnx.task_names == ckpt.task_names and "onnx=" in repr(onnx)
    for frame in _frames(2) + [_frames(1, 49, 67)[0]]:  # an odd size too
        a, b = ckpt.predict(frame), onnx.predict(frame)
        for task in ("depth", "normals"):  # the documented tolerance: 1e-4 of the largest value
            assert b[task].shape == a[task].shape == frame.shape[: a[task].ndim]
            assert np.abs(b[task] - a[task]).max() <= 1e-4 * np.abs(a[task]).max(), task
        assert (b["segm"] == a["segm"]).mean() >= 0.999
        assert b["kind"]["class_id"] == a["kind"]["class_id"]
        assert b["kind"]["probability"] == pytest.approx(a["kind"]["probability"], abs=1e-4)
    with pytest.raises(hydranet.ConfigError, match="precision"):
        Predictor(files / "m.onnx", half=True)
    # onnxruntime's threads sleep between runs: PyTorch post-processes on the same cores
    options = onnx.net.session.get_session_options()
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"


def test_int8_file_of_the_bundled_model_keeps_its_accuracy_and_is_cached(tmp_path, monkeypatch):
    """The bundled checkpoint quantised on frames of one synthetic clip, tested on another clip:
    the results follow the checkpoint's (the documented accuracy: docs/inference.md)."""
    from hydranet.data.synthetic import render_clip

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # the package folder stays as shipped
    weights = bundled_weights_path()
    calibration = [rgb for rgb, _, _ in render_clip(8, (64, 80), seed=1)]
    logs = []
    path, made = int8_file(weights, "clip seed 1", lambda: calibration, log=logs.append)
    assert made and path.is_file() and path.parent == tmp_path / "torch" / "hub" / "checkpoints" / "hydranet" / "int8"
    assert path == cache_path(weights, "clip seed 1") and ".int8.onnx" in path.name
    assert "quantised" in logs[-1] and "8 frames" in logs[-1]
    again, made = int8_file(weights, "clip seed 1", lambda: pytest.fail("no calibration on a cache hit"), log=None)
    assert again == path and not made
    ckpt, int8 = Predictor(weights, fast=False), Predictor(path)
    agree, depth_err = [], []
    for rgb, _, _ in render_clip(3, (64, 80), seed=2):
        a, b = ckpt.predict(rgb), int8.predict(rgb)
        agree.append((a["segm"] == b["segm"]).mean())
        depth_err.append(np.median(np.abs(b["depth"] - a["depth"]) / np.maximum(a["depth"], 1e-3)))
    assert np.mean(agree) >= 0.93 and np.median(depth_err) <= 0.05, (agree, depth_err)


def _video(path, frames):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, frames[0].shape[1::-1])
    for f in frames:
        writer.write(np.ascontiguousarray(f[..., ::-1]))
    writer.release()
    return path


def _demo(*args, tmp_path, name="s.json"):
    out = tmp_path / "o" / f"{name}.mp4"
    code = main(["demo", *args, "--out", str(out), "--no-progress", "--codec", "mp4v", "--json", str(tmp_path / name)])
    return code, (json.loads((tmp_path / name).read_text()) if code == 0 else None)


def test_demo_with_an_int8_file_and_with_int8_on_a_video_a_folder_and_the_clip(files, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    video = _video(tmp_path / "clip.mp4", _frames(4))
    ckpt = tmp_path / "ck" / "m.pt"
    ckpt.parent.mkdir()
    ckpt.write_bytes((files / "m.pt").read_bytes())

    code, stats = _demo("--input", str(video), "--weights", str(ckpt), "--int8", tmp_path=tmp_path, name="v")
    assert code == 0 and stats["frames"] == 4 and stats["onnx"] and stats["pipeline"]
    made = sorted(ckpt.parent.glob("m.*.int8.onnx"))  # next to the checkpoint: its folder is writable
    assert len(made) == 1 and stats["weights"] == str(made[0])
    out = capsys.readouterr().out
    assert "int8: quantised m.pt on 4 frames" in out and "onnxruntime (int8" in out

    # the same input again: the cached file, no new quantisation
    code, stats = _demo("--input", str(video), "--weights", str(ckpt), "--int8", tmp_path=tmp_path, name="v2")
    assert code == 0 and "int8: using" in capsys.readouterr().out
    assert sorted(ckpt.parent.glob("m.*.int8.onnx")) == made

    # the int8 file given directly
    code, stats = _demo("--input", str(video), "--weights", str(made[0]), tmp_path=tmp_path, name="f")
    assert code == 0 and stats["frames"] == 4 and stats["onnx"]

    folder = tmp_path / "frames"
    folder.mkdir()
    for i, f in enumerate(_frames(3, seed=3)):
        cv2.imwrite(str(folder / f"{i}.png"), f[..., ::-1])
    code, stats = _demo("--input", str(folder), "--weights", str(ckpt), "--int8", "--batch", "2", tmp_path=tmp_path)
    assert code == 0 and stats["frames"] == 3 and len(list(ckpt.parent.glob("m.*.int8.onnx"))) == 2

    # the built-in clip with the bundled model: the int8 file goes to the model cache
    code, stats = _demo("--int8", "--max-frames", "3", "--clip-size", "64x48", tmp_path=tmp_path, name="c")
    assert code == 0 and stats["frames"] == 3 and stats["source"] == "synthetic"
    assert len(list((tmp_path / "torch").rglob("hydranet_synthetic.*.int8.onnx"))) == 1

    # an int8 file cannot be quantised again; --int8 is CPU-only
    assert main(["demo", "--input", str(video), "--weights", str(made[0]), "--int8", "--out", str(tmp_path / "x.mp4")])
    assert "already quantised" in capsys.readouterr().err


def test_predict_and_pseudolabel_take_onnx_files(files, tmp_path):
    img = tmp_path / "in"
    img.mkdir()
    frame = _frames(1)[0]
    cv2.imwrite(str(img / "a.png"), frame[..., ::-1])
    assert main(["predict", str(img), "--weights", str(files / "m.onnx"), "--out", str(tmp_path / "p")]) == 0
    ids = cv2.imread(str(tmp_path / "p" / "a_segm_ids.png"), cv2.IMREAD_UNCHANGED)
    expected = Predictor(files / "m.pt", fast=False).predict(frame)["segm"]
    assert ids.shape == expected.shape and (ids == expected).mean() >= 0.999

    (tmp_path / "list.txt").write_text("# image segmentation depth\nin/a.png - -\n")
    for teacher, out in ((files / "m.onnx", "onnx"), (files / "m.pt", "ckpt")):
        argv = ["pseudolabel", "--teacher", str(teacher), "--list", str(tmp_path / "list.txt")]
        assert main([*argv, "--out", str(tmp_path / out)]) == 0
    a, b = (cv2.imread(str(next((tmp_path / o / "segmentation").iterdir())), -1) for o in ("onnx", "ckpt"))
    assert (a == b).mean() >= 0.999


class _Numbered(FrameSource):
    """Frames of flat grey levels 0, 20, 40, ... (their order survives lossy encoding)."""

    kind, name, fps = "test", "numbered", 10.0

    def __init__(self, n, interrupt_at=None):
        self.n, self.frame_count, self.interrupt_at = n, n, interrupt_at

    def __iter__(self):
        for i in range(self.n):
            if i == self.interrupt_at:
                raise KeyboardInterrupt
            yield np.full((48, 64, 3), 20 * i, np.uint8)


def _left_means(path):
    cap, means = cv2.VideoCapture(str(path)), []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        means.append(f[30:40, 40:60].mean())  # below the FPS stamp, inside the frame panel
    cap.release()
    return means


class _SlowThenInterrupted:
    """A predictor whose call number ``interrupt_on`` is a Ctrl-C."""

    def __init__(self, predictor, interrupt_on=None):
        self.inner, self.calls, self.interrupt_on = predictor, 0, interrupt_on

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def predict_batch(self, frames):
        self.calls += 1
        if self.calls == self.interrupt_on:
            raise KeyboardInterrupt
        return self.inner.predict_batch(frames)


def test_pipelined_demo_keeps_the_order_and_stops_cleanly_on_ctrl_c(files, tmp_path):
    predictor = Predictor(files / "m.pt")
    kw = dict(progress=False, warmup=0, alpha=0.0, codec="mp4v")
    stats = run_demo(_Numbered(8), predictor, tmp_path / "all.mp4", batch=3, **kw)
    means = _left_means(tmp_path / "all.mp4")
    assert stats["pipeline"] and stats["frames"] == 8 and len(means) == 8
    assert all(abs(m - 20 * i) < 6 for i, m in enumerate(means)), means  # every frame, in order

    # Ctrl-C while predicting (the main thread): the frames predicted before are written, the file finalised
    wrapped = _SlowThenInterrupted(predictor, interrupt_on=3)  # calls 1 and 2 are frames 0 and 1
    stats = run_demo(_Numbered(8), wrapped, tmp_path / "cut.mp4", **kw)
    assert stats["interrupted"] and stats["frames"] == 2 and len(_left_means(tmp_path / "cut.mp4")) == 2
    # Ctrl-C while reading (the reader thread)
    stats = run_demo(_Numbered(8, interrupt_at=5), predictor, tmp_path / "read.mp4", **kw)
    assert stats["interrupted"] and stats["frames"] == 5 and len(_left_means(tmp_path / "read.mp4")) == 5


def test_bench_e2e_times_serial_and_pipelined_demo(files, capsys):
    from hydranet.tools.demo_bench import demo_benchmark, format_demo_table

    model = hydranet.load_model(files / "m.pt")
    result = demo_benchmark(model, sizes=[(48, 64)], settings=["default"], frames=4, rounds=1, warmup=0, codec="mp4v")
    rows = {r["mode"]: r for r in result["rows"]}
    assert set(rows) == {"serial", "pipeline"} and all(r["frames"] == 4 for r in rows.values())
    assert all(r["e2e_fps"] > 0 and r["model_only_fps"] > 0 for r in rows.values())
    assert rows["serial"]["e2e_vs_model_only"] == pytest.approx(
        rows["serial"]["e2e_fps"] / rows["serial"]["model_only_fps"]
    )
    assert "pipeline" in format_demo_table(result)
