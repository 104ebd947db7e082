"""`hydranet demo`: video, folder, synthetic default, errors, Ctrl-C, and the drawn layout."""

import json

import numpy as np
import pytest
import torch
from support import tiny_config

import hydranet
from hydranet import visualize as vis
from hydranet.cli import main
from hydranet.inference import Prediction, Predictor
from hydranet.tools.video import DemoRenderer, FrameSource, open_source, run_demo

cv2 = pytest.importorskip("cv2")

TASKS = [
    {"name": "segm", "kind": "segmentation", "classes": 8, "class_names": list(vis.SYNTHETIC8_NAMES)},
    {"name": "depth", "kind": "depth", "options": {"max_depth": 10.0}},
    {"name": "normals", "kind": "normals"},
]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    hydranet.save_model(hydranet.build_model(tiny_config(tasks=TASKS)), path)
    return path


def _frames(n=6, h=64, w=64):
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    return [np.roll(base, 3 * i, axis=1) for i in range(n)]


@pytest.fixture
def video(tmp_path):
    path = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (64, 64))
    assert writer.isOpened()
    for f in _frames():
        writer.write(f[..., ::-1].copy())
    writer.release()
    return path


def _read_video(path):
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(f)
    cap.release()
    return frames


def test_demo_video_keeps_frame_count_and_size(ckpt, video, tmp_path, capsys):
    out = tmp_path / "o" / "demo.mp4"
    stats_path = tmp_path / "s.json"
    rc = main(
        [
            "demo",
            "--input",
            str(video),
            "--weights",
            str(ckpt),
            "--out",
            str(out),
            "--json",
            str(stats_path),
            "--no-progress",
        ]
    )
    assert rc == 0
    stats = json.loads(stats_path.read_text())
    frames = _read_video(out)
    assert len(frames) == stats["frames"] == 6
    h, w = stats["output_size"]
    assert all(f.shape == (h, w, 3) for f in frames)
    # the layout: overlay (64) | depth (64) | scale bar, legend band underneath; even sizes
    assert h > 64 and w > 128 and h % 2 == 0 and w % 2 == 0
    png = cv2.imread(str(tmp_path / "o" / "frame.png"))
    assert png.shape == (h, w, 3)
    assert stats["model_fps"] > 0 and stats["inference_fps"] > 0 and stats["end_to_end_fps"] > 0
    assert stats["end_to_end_fps"] <= stats["inference_fps"] <= stats["model_fps"]
    assert not stats["interrupted"] and stats["max_depth"] == 10.0
    printed = capsys.readouterr().out
    assert "end-to-end" in printed and "model only" in printed


def test_demo_folder_of_frames_in_batches(ckpt, tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, f in enumerate(_frames(5)):
        cv2.imwrite(str(folder / f"{i:04d}.png"), f[..., ::-1])
    (folder / "notes.txt").write_text("not a frame")
    out = tmp_path / "folder.mp4"
    assert (
        main(
            [
                "demo",
                "--input",
                str(folder),
                "--weights",
                str(ckpt),
                "--out",
                str(out),
                "--batch",
                "2",
                "--frame-png",
                str(tmp_path / "f.png"),
                "--no-progress",
                "--json",
                str(tmp_path / "s.json"),
            ]
        )
        == 0
    )
    stats = json.loads((tmp_path / "s.json").read_text())
    assert stats["source"] == "folder" and stats["frames"] == 5
    assert len(_read_video(out)) == 5 and (tmp_path / "f.png").is_file()


def test_default_demo_renders_the_synthetic_clip(ckpt, tmp_path):
    out = tmp_path / "d" / "demo.mp4"
    assert (
        main(
            [
                "demo",
                "--weights",
                str(ckpt),
                "--out",
                str(out),
                "--max-frames",
                "3",
                "--clip-size",
                "64x48",
                "--no-progress",
                "--json",
                str(tmp_path / "s.json"),
                "--threads",
                "2",
            ]
        )
        == 0
    )
    stats = json.loads((tmp_path / "s.json").read_text())
    assert stats["source"] == "synthetic" and stats["frames"] == 3
    assert stats["threads"] == 2 == torch.get_num_threads()  # the fixture puts 1 back afterwards
    frames = _read_video(out)
    assert len(frames) == 3 and frames[0].shape[:2] == tuple(stats["output_size"])
    assert (tmp_path / "d" / "frame.png").is_file()


def test_demo_errors_are_clear(ckpt, video, tmp_path, capsys, monkeypatch):
    def run(*extra):
        rc = main(["demo", "--out", str(tmp_path / "x.mp4"), "--no-progress", *extra])
        return rc, capsys.readouterr().err

    rc, err = run("--input", str(tmp_path / "nope.mp4"), "--weights", str(ckpt))
    assert rc == 2 and "nope.mp4" in err and "does not exist" in err
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00\x01 this is not a video" * 50)
    rc, err = run("--input", str(junk), "--weights", str(ckpt))
    assert rc == 2 and "junk.mp4" in err
    empty = tmp_path / "empty"
    empty.mkdir()
    rc, err = run("--input", str(empty), "--weights", str(ckpt))
    assert rc == 2 and "holds no image" in err

    not_ckpt = tmp_path / "random.pt"
    not_ckpt.write_bytes(np.random.default_rng(0).bytes(300))
    rc, err = run("--input", str(video), "--weights", str(not_ckpt))
    assert rc == 2 and "random.pt" in err
    original = tmp_path / "ExpNYUD_joint.ckpt"
    torch.save({"state_dict": {"layer1.0.weight": torch.zeros(32, 3, 3, 3)}, "epoch": 3}, original)
    rc, err = run("--input", str(video), "--weights", str(original))
    assert rc == 2 and "ExpNYUD_joint.ckpt" in err and "hydranet convert" in err

    monkeypatch.setenv("HYDRANET_WEIGHTS", str(tmp_path / "absent.pt"))
    rc, err = run("--max-frames", "1")
    assert rc == 2 and "absent.pt" in err and "hydranet train" in err

    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    rc, err = run("--input", str(video), "--weights", str(ckpt), "--show")
    assert rc == 2 and "--show" in err and "display" in err


class _InterruptedSource(FrameSource):
    """Yields some frames, then behaves as if the user pressed Ctrl-C."""

    kind, name, fps, frame_count = "test", "interrupted", 10.0, 10

    def __init__(self, frames):
        self.frames = frames
        self.closed = False

    def __iter__(self):
        yield from self.frames
        raise KeyboardInterrupt

    def close(self):
        self.closed = True


def test_ctrl_c_still_finalises_the_video(ckpt, tmp_path):
    source = _InterruptedSource(_frames(3))
    out = tmp_path / "stopped.mp4"
    stats = run_demo(source, Predictor(ckpt), out, progress=False, frame_png=tmp_path / "f.png", warmup=0)
    assert stats["interrupted"] and stats["frames"] == 3 and source.closed
    assert len(_read_video(out)) == 3


def test_cpu_demo_encodes_in_one_thread(ckpt, tmp_path, monkeypatch):
    from hydranet.tools import video as video_module

    asked = []
    real = video_module.open_video_writer

    def spy(*args, **kwargs):
        asked.append(kwargs.get("threads"))
        return real(*args, **kwargs)

    monkeypatch.setattr(video_module, "open_video_writer", spy)
    for pipeline in (True, False):
        source = open_source(None, clip_frames=2, clip_size=(32, 48))
        run_demo(source, Predictor(ckpt), tmp_path / f"{pipeline}.mp4", progress=False, warmup=0, pipeline=pipeline)
    assert asked == [1, 1]  # the network's OpenMP threads keep the cores


def test_rendered_frame_has_exact_overlay_and_legend_colours():
    from hydranet.tasks import parse_task

    tasks = [parse_task(t) for t in TASKS]
    h, w = 120, 160
    frame = np.full((h, w, 3), 100, np.uint8)
    ids = np.zeros((h, w), np.uint8)
    ids[:, w // 2 :] = 3  # left half floor, right half box
    depth = np.full((h, w), 5.0, np.float32)
    pred = Prediction(
        {"segm": ids, "depth": depth, "normals": np.zeros((h, w, 3), np.float32)}, {t.name: t for t in tasks}, (h, w)
    )
    r = DemoRenderer(tasks, (h, w), alpha=0.5)
    canvas = r.render(frame, pred, "12.0 FPS | model 40.0")
    assert canvas.shape[:2] == r.output_size and canvas.shape[0] % 2 == 0 and canvas.shape[1] % 2 == 0
    pal = vis.SYNTHETIC8_PALETTE
    expect_floor = np.floor((100 + pal[0].astype(float)) / 2 + 0.5)
    expect_box = np.floor((100 + pal[3].astype(float)) / 2 + 0.5)
    assert (canvas[h - 5, 5] == expect_floor).all() and (canvas[h - 5, w - 5] == expect_box).all()
    assert (canvas[h // 2, w + w // 2] == vis._cmap_lut("magma")[128]).all()  # 5 m of 10 m: the middle colour
    legend = canvas[h:].reshape(-1, 3)
    present = {tuple(c) for c in legend}
    assert tuple(pal[0]) in present and tuple(pal[3]) in present and tuple(pal[5]) not in present
    assert (canvas[:20, :60] == 0).any()  # the FPS label's dark box in the corner
    assert r.max_depth == 10.0


def test_legend_band_is_drawn_again_when_the_classes_change():
    from hydranet.tasks import parse_task

    tasks = [parse_task(t) for t in TASKS]
    h, w = 64, 96
    frame = np.full((h, w, 3), 90, np.uint8)
    r = DemoRenderer(tasks, (h, w))

    def pred(classes):
        ids = np.zeros((h, w), np.uint8)
        for k, c in enumerate(classes):
            ids[:, k * 8 :] = c
        depth = np.full((h, w), 3.0, np.float32)
        normals = np.zeros((h, w, 3), np.float32)
        return Prediction({"segm": ids, "depth": depth, "normals": normals}, {t.name: t for t in tasks}, (h, w))

    pal = vis.SYNTHETIC8_PALETTE
    for classes in ([0, 3], [0, 3], [0, 5], [0, 3]):  # the same, again, other classes, back
        band = {tuple(c) for c in r.render(frame, pred(classes))[h:].reshape(-1, 3)}
        fresh = {tuple(c) for c in DemoRenderer(tasks, (h, w)).render(frame, pred(classes))[h:].reshape(-1, 3)}
        assert band == fresh and tuple(pal[classes[-1]]) in band
        assert (tuple(pal[5]) in band) == (classes[-1] == 5)


def test_open_source_kinds(tmp_path, video):
    assert open_source(None, clip_frames=2, clip_size=(32, 40)).frame_count == 2
    src = open_source(str(video))
    assert src.kind == "video" and src.frame_count == 6 and src.fps == pytest.approx(10.0)
    assert next(iter(src)).shape == (64, 64, 3)
    src.close()
    with pytest.raises(hydranet.DataError, match="camera 99"):
        open_source("99")
