"""Predictor, visualisation helpers, point clouds and `hydranet predict`."""

import numpy as np
import pytest
import torch
from support import ALL_KINDS_TASKS, tiny_config

import hydranet
from hydranet import visualize as vis
from hydranet.cli import main
from hydranet.data.io import read_image
from hydranet.errors import CheckpointError, ConfigError
from hydranet.inference import Predictor
from hydranet.tools.pointcloud import default_intrinsics, depth_to_points, read_ply_header, write_ply
from hydranet.tools.predict import depth_to_png_mm

cv2 = pytest.importorskip("cv2")


pytestmark = pytest.mark.usefixtures("one_thread")


def _tasks():
    tasks = [dict(t) for t in ALL_KINDS_TASKS]
    tasks[0]["class_names"] = ["a", "b", "c", "d", "e"]
    tasks[1]["options"] = {"max_depth": 5.0}
    tasks[3]["class_names"] = ["acme", "bolt", "cog"]
    tasks[4]["options"] = {"target_mean": [3.0, -1.0], "target_std": [2.0, 0.5]}
    return tasks


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    torch.manual_seed(0)
    model = hydranet.build_model(tiny_config(tasks=_tasks()))
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    hydranet.save_model(model, path)
    return path


def _frame(h=64, w=64, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


# --------------------------------------------------------------------------- predictor


def test_predictor_outputs_every_kind(ckpt):
    p = Predictor(ckpt)
    frame = _frame(48, 80)
    pred = p.predict(frame)
    assert pred.size == (48, 80)
    assert pred["segm"].shape == (48, 80) and pred["segm"].dtype == np.uint8 and pred["segm"].max() < 5
    assert pred["depth"].shape == (48, 80) and pred["depth"].dtype == np.float32 and (pred["depth"] >= 0).all()
    assert pred["normals"].shape == (48, 80, 3)
    np.testing.assert_allclose(np.linalg.norm(pred["normals"], axis=-1), 1.0, atol=1e-4)
    maker = pred["maker"]
    assert set(maker) == {"class_id", "name", "probability"}
    assert maker["name"] == ["acme", "bolt", "cog"][maker["class_id"]] and 1 / 3 <= maker["probability"] <= 1

    # against the plain model by hand: argmax, |depth|, denormalised regression
    model = hydranet.load_model(ckpt)
    from hydranet.data.transforms import normalize_image

    with torch.no_grad():
        raw = model(normalize_image(frame)[None])
    np.testing.assert_allclose(pred["depth"], raw["depth"][0, 0].abs().numpy(), rtol=1e-4, atol=1e-5)
    expected = raw["diameter"][0].numpy() * np.array([2.0, 0.5]) + np.array([3.0, -1.0])
    np.testing.assert_allclose(pred["diameter"], expected, rtol=1e-4, atol=1e-5)
    logits = raw["segm"][0]
    top2 = logits.topk(2, dim=0).values
    clear = (top2[0] - top2[1]) > 1e-3  # ignore near-ties between the fast and plain paths
    assert (pred["segm"][clear.numpy()] == logits.argmax(0).numpy()[clear.numpy()]).all()

    summary = pred.summary()
    assert summary["maker"] == maker and len(summary["diameter"]) == 2
    assert abs(sum(c["fraction"] for c in summary["segm"]["classes_present"]) - 1) < 1e-3


def test_predictor_plain_resize_pad_and_batches(ckpt):
    plain = Predictor(ckpt, fast=False, size=(32, 48), pad_to=32)
    fast = Predictor(ckpt, size=(32, 48), pad_to=32)
    frames = [_frame(50, 70, 1), _frame(50, 70, 2), _frame(40, 40, 3)]
    a, b = plain.predict_batch(frames), fast.predict_batch(frames)
    for pa, pb, f in zip(a, b, frames):
        assert pa.size == f.shape[:2] and pa["depth"].shape == f.shape[:2] and pa["segm"].shape == f.shape[:2]
        np.testing.assert_allclose(pa["depth"], pb["depth"], rtol=1e-3, atol=1e-4)
    # one frame alone gives what it gave inside the batch
    np.testing.assert_allclose(plain.predict(frames[1])["depth"], a[1]["depth"], rtol=1e-4, atol=1e-5)
    rates = plain.fps()
    assert rates["frames"] == 4 and rates["model_fps"] > 0 and rates["end_to_end_fps"] > 0
    assert rates["end_to_end_fps"] <= rates["model_fps"]
    plain.warmup((32, 32))
    assert plain.fps()["frames"] == 4  # the warm-up is not counted


def test_predictor_takes_a_model_and_rejects_bad_input(ckpt):
    model = hydranet.load_model(ckpt)
    p = Predictor(model)
    assert p.predict(_frame(32, 32)[..., 0])["segm"].shape == (32, 32)  # grey frames are accepted
    with pytest.raises(ConfigError, match="half precision needs CUDA"):
        Predictor(model, half=True)
    with pytest.raises(hydranet.DataError, match="uint8"):
        p.predict(np.zeros((8, 8, 3), np.float32))
    with pytest.raises(CheckpointError, match="does not exist"):
        Predictor("/nonexistent/model.pt")


# --------------------------------------------------------------------------- visualisation


def test_palettes():
    voc = vis.voc_colormap(8)
    assert voc[:4].tolist() == [[0, 0, 0], [128, 0, 0], [0, 128, 0], [128, 128, 0]]
    assert vis.NYUD40_PALETTE.shape == (40, 3)
    assert vis.NYUD40_PALETTE[0].tolist() == [128, 0, 0]  # wall: VOC colour 1, as cmap_nyud[id + 1]
    assert len({tuple(c) for c in vis.NYUD40_PALETTE}) == 40
    assert vis.NYUD40_NAMES[0] == "wall" and vis.NYUD40_NAMES[39] == "otherprop"
    assert vis.CITYSCAPES19_PALETTE[0].tolist() == [128, 64, 128] and vis.CITYSCAPES19_PALETTE[10].tolist() == [
        70,
        130,
        180,
    ]
    spec = hydranet.TaskSpec("s", "segmentation", classes=8, class_names=vis.SYNTHETIC8_NAMES)
    assert (vis.palette_for(spec) == vis.SYNTHETIC8_PALETTE).all()
    assert (vis.palette_for(40) == vis.NYUD40_PALETTE).all()  # VOC colours 1..N, which are NYUD's
    assert (vis.palette_for(6) == vis.voc_colormap(7)[1:]).all()  # a class count never picks a palette
    kitti = hydranet.TaskSpec("s", "segmentation", classes=6, options={"palette": "kitti"})
    assert (vis.palette_for(kitti) == vis.KITTI6_PALETTE).all()  # chosen by name
    assert len({tuple(c) for c in vis.SYNTHETIC8_PALETTE}) == 8 and len({tuple(c) for c in vis.KITTI6_PALETTE}) == 6
    assert vis.palette_for(13).shape == (13, 3)
    assert vis.class_names_for(40)[1] == "floor" and vis.class_names_for(3) == ("class 0", "class 1", "class 2")


def test_colorize_segmentation_and_overlay_exact():
    palette = np.array([[255, 0, 0], [0, 200, 0], [10, 20, 30]], np.uint8)
    ids = np.array([[0, 1], [2, 255]], np.uint8)
    colour = vis.colorize_segmentation(ids, palette)
    assert colour.tolist() == [[[255, 0, 0], [0, 200, 0]], [[10, 20, 30], [0, 0, 0]]]
    frame = np.array([[[100, 100, 100], [0, 0, 255]], [[255, 255, 255], [7, 8, 9]]], np.uint8)
    out = vis.overlay(frame, colour, alpha=0.5)
    # round half up of (frame + colour) / 2
    assert out.tolist() == [[[178, 50, 50], [0, 100, 128]], [[133, 138, 143], [4, 4, 5]]]
    out = vis.overlay(frame, colour, alpha=0.25, valid=ids != 255)
    assert out[0, 0].tolist() == [139, 75, 75]  # 0.75 * 100 + 0.25 * 255 = 138.75
    assert out[1, 1].tolist() == [7, 8, 9]  # ignore pixels keep the frame
    assert (vis.overlay(frame, colour, 0.0) == frame).all() and (vis.overlay(frame, colour, 1.0) == colour).all()


def test_overlay_fast_path_equals_the_formula_for_every_pair():
    f, c = np.meshgrid(np.arange(256, dtype=np.uint8), np.arange(256, dtype=np.uint8), indexing="ij")
    frame, colour = np.stack([f] * 3, -1), np.stack([c] * 3, -1)  # all 65536 (frame, colour) values
    expect = np.floor(f.astype(np.float64) * 0.5 + c.astype(np.float64) * 0.5 + 0.5).astype(np.uint8)
    assert (vis.overlay(frame, colour, 0.5)[..., 0] == expect).all()
    assert vis.overlay(frame[:1, :3], colour[:1, :3], 0.5).dtype == np.uint8


def test_present_classes_counts_like_bincount():
    rng = np.random.default_rng(3)
    ids = rng.choice(np.array([0, 2, 5, 7, 255], np.uint8), size=(48, 64), p=[0.4, 0.1, 0.3, 0.1, 0.1])
    counts = np.bincount(ids.ravel(), minlength=256)[:6]
    expect = [int(c) for c in np.argsort(-counts, kind="stable") if counts[c] > 0]
    assert vis.present_classes(ids, 6) == expect == [0, 5, 2]  # 7 and 255 are outside 6 classes
    assert vis.present_classes(ids.astype(np.int64), 6) == expect  # the int path agrees
    assert vis.present_classes(ids.T, 6) == expect  # not contiguous
    tie = np.array([[1, 1, 0, 0]], np.uint8)
    assert vis.present_classes(tie, 2) == [0, 1]  # equal areas: lower id first


def test_depth_colours_without_invalid_pixels_match_the_masked_path():
    depth = np.linspace(0.1, 7.0, 64, dtype=np.float32).reshape(8, 8)
    masked = depth.copy()
    masked[0, 0] = 0.0  # one pixel without measurement: the masked path
    every, some = vis.colorize_depth(depth, 5.0), vis.colorize_depth(masked, 5.0)
    assert (every.reshape(-1, 3)[1:] == some.reshape(-1, 3)[1:]).all() and some[0, 0].tolist() == [0, 0, 0]


def test_depth_colours_scale_bar_and_normals():
    lut = vis._cmap_lut("magma")
    depth = np.array([[0.0, 2.5, 5.0, 9.0]], np.float32)
    rgb = vis.colorize_depth(depth, 5.0)
    assert rgb[0, 0].tolist() == [0, 0, 0]  # no measurement
    assert rgb[0, 2].tolist() == lut[255].tolist() == rgb[0, 3].tolist()  # max and beyond: bright end
    assert rgb[0, 1].tolist() == lut[128].tolist()
    assert vis.colorize_depth(depth, 5.0, cmap="turbo")[0, 2].tolist() == vis._cmap_lut("turbo")[255].tolist()
    with pytest.raises(ValueError, match="unknown depth colour map"):
        vis.colorize_depth(depth, 5.0, cmap="nope")

    bar = vis.depth_scale_bar(240, 10.0)
    assert bar.shape[0] == 240 and 30 < bar.shape[1] < 120 and bar.dtype == np.uint8
    colours = {tuple(c) for c in bar.reshape(-1, 3)}
    assert tuple(lut[255]) in colours and tuple(lut[0]) in colours  # the gradient spans the map
    assert (bar == 255).all(axis=-1).sum() > 20  # white tick labels were drawn
    assert vis.depth_scale_bar(64, 0.02).shape[0] == 64
    assert vis._nice_step(10, 5) == 2 and vis._nice_step(80, 4) == 20 and vis.nice_ceil(7.3) == 10

    n = np.zeros((2, 2, 3), np.float32)
    n[..., 2] = 1
    assert vis.normals_to_rgb(n)[0, 0].tolist() == [128, 128, 255]
    assert vis.normals_to_rgb(n.transpose(2, 0, 1)).shape == (2, 2, 3)


def test_legend_shows_exact_palette_colours():
    palette = vis.SYNTHETIC8_PALETTE
    img = vis.draw_legend([3, 0], vis.SYNTHETIC8_NAMES, palette)
    colours = {tuple(c) for c in img.reshape(-1, 3)}
    assert tuple(palette[3]) in colours and tuple(palette[0]) in colours and tuple(palette[5]) not in colours
    assert img.shape[0] == vis.legend_height(2, 0.45)
    flow = vis.draw_legend(list(range(8)), vis.SYNTHETIC8_NAMES, palette, width=150, rows=2)
    assert flow.shape[:2] == (vis.legend_height(2, 0.45), 150)
    empty = vis.draw_legend([], (), palette, width=100, rows=1)
    assert empty.shape[:2] == (vis.legend_height(1, 0.45), 100)
    assert vis.present_classes(np.array([[1, 1, 2], [255, 2, 2]]), 3) == [2, 1]


# --------------------------------------------------------------------------- point clouds


def test_depth_to_points_and_ply(tmp_path):
    depth = np.array([[1.0, 0.0], [np.nan, 2.0]], np.float32)
    rgb = np.arange(12, dtype=np.uint8).reshape(2, 2, 3)
    pts, col = depth_to_points(depth, fx=2.0, fy=4.0, cx=0.5, cy=0.5, rgb=rgb)
    np.testing.assert_allclose(pts, [[-0.25, 0.125, -1.0], [0.5, -0.25, -2.0]])
    assert col.tolist() == [[0, 1, 2], [9, 10, 11]]
    write_ply(tmp_path / "a.ply", pts, col, binary=False)
    text = (tmp_path / "a.ply").read_text().splitlines()
    assert text[-2:] == ["-0.25 0.125 -1 0 1 2", "0.5 -0.25 -2 9 10 11"]
    write_ply(tmp_path / "b.ply", pts, col)
    head = read_ply_header(tmp_path / "b.ply")
    assert head == {
        "format": "binary_little_endian",
        "vertices": 2,
        "properties": ["x", "y", "z", "red", "green", "blue"],
    }
    k = default_intrinsics(240, 320, {"meta": {"datasets": ["nyud"]}})
    assert k["fx"] == pytest.approx(518.86 / 2) and k["cy"] == pytest.approx(253.74 / 2)
    k = default_intrinsics(480, 640)
    assert k["fx"] == pytest.approx(0.5 * 640 / np.tan(np.radians(30))) and k["cx"] == 319.5


# --------------------------------------------------------------------------- hydranet predict


def _write_images(folder, n=2, h=40, w=56):
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        p = folder / f"img{i}.png"
        cv2.imwrite(str(p), _frame(h, w, 10 + i))
        paths.append(p)
    return paths


def test_predict_writes_files_that_read_back(ckpt, tmp_path, capsys):
    import json

    folder = tmp_path / "imgs"
    paths = _write_images(folder)
    single = tmp_path / "single.jpg"
    cv2.imwrite(str(single), _frame(30, 36, 5))
    out = tmp_path / "out"
    rc = main(
        [
            "predict",
            str(folder),
            str(single),
            "--weights",
            str(ckpt),
            "--out",
            str(out),
            "--ply",
            "--json",
            str(tmp_path / "p.json"),
        ]
    )
    assert rc == 0
    stdout = capsys.readouterr().out
    assert "maker=" in stdout and "img0.png" in stdout
    report = json.loads((tmp_path / "p.json").read_text())
    assert [r["image"] for r in report["images"]] == [str(p) for p in paths] + [str(single)]

    predictor = Predictor(ckpt)
    for path in paths + [single]:
        stem = path.stem
        frame = read_image(path)
        pred = predictor.predict(frame)
        mm = cv2.imread(str(out / f"{stem}_depth_mm.png"), cv2.IMREAD_UNCHANGED)
        assert mm.dtype == np.uint16 and mm.shape == frame.shape[:2]
        assert (mm == np.rint(pred["depth"].astype(np.float64) * 1000)).all()
        assert (mm == depth_to_png_mm(pred["depth"])).all()
        ids = cv2.imread(str(out / f"{stem}_segm_ids.png"), cv2.IMREAD_UNCHANGED)
        assert (ids == pred["segm"]).all()
        colour = cv2.imread(str(out / f"{stem}_segm.png"))[..., ::-1]
        assert (colour == vis.colorize_segmentation(pred["segm"], vis.palette_for(pred.tasks["segm"]))).all()
        normals = cv2.imread(str(out / f"{stem}_normals.png"))[..., ::-1]
        assert (normals == vis.normals_to_rgb(pred["normals"])).all()
        for name in ("depth", "figure"):
            img = cv2.imread(str(out / f"{stem}_{name}.png"))
            assert img is not None and img.shape[1] > frame.shape[1]
        valid = int((np.isfinite(pred["depth"]) & (pred["depth"] > 0)).sum())
        assert read_ply_header(out / f"{stem}.ply")["vertices"] == valid
        rec = next(r for r in report["images"] if r["image"] == str(path))
        assert rec["predictions"]["maker"]["name"] == pred["maker"]["name"]
        np.testing.assert_allclose(rec["predictions"]["diameter"], pred["diameter"], rtol=1e-5)
        assert rec["files"]["ply_points"] == valid


def test_predict_npy_depth_and_ascii_ply(ckpt, tmp_path):
    (path,) = _write_images(tmp_path / "imgs", n=1)
    out = tmp_path / "out"
    assert (
        main(
            [
                "predict",
                str(path),
                "--weights",
                str(ckpt),
                "--out",
                str(out),
                "--depth-format",
                "npy",
                "--ply",
                "ascii",
                "--fx",
                "50",
                "--fy",
                "50",
                "--cx",
                "28",
                "--cy",
                "20",
                "--plain",
            ]
        )
        == 0
    )
    pred = Predictor(ckpt, fast=False).predict(read_image(path))
    saved = np.load(out / "img0_depth.npy")
    assert saved.dtype == np.float32 and np.array_equal(saved, pred["depth"])
    lines = (out / "img0.ply").read_text().splitlines()
    n = read_ply_header(out / "img0.ply")["vertices"]
    assert n == pred["depth"].size and len(lines) == lines.index("end_header") + 1 + n
    x, y, z = (float(v) for v in lines[lines.index("end_header") + 1].split()[:3])  # pixel (0, 0)
    d = pred["depth"][0, 0]
    assert z == pytest.approx(-d, rel=1e-4) and x == pytest.approx(-28 * d / 50, rel=1e-4)


def test_predict_errors_name_the_file(ckpt, tmp_path, capsys):
    assert main(["predict", str(tmp_path / "missing.png"), "--weights", str(ckpt), "--out", str(tmp_path)]) == 2
    assert "missing.png" in capsys.readouterr().err
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png at all")
    assert main(["predict", str(bad), "--weights", str(ckpt), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "bad.png" in err and "cannot be read as an image" in err
    (path,) = _write_images(tmp_path / "imgs", n=1)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"\x00garbage" * 10)
    assert main(["predict", str(path), "--weights", str(junk), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "junk.pt" in err


def test_input_normalisation_travels_with_the_checkpoint(tmp_path):
    """A checkpoint whose meta says mean 0 / std 1 is fed rgb / 255; one without it ImageNet's."""
    cfg = tiny_config(tasks=[{"name": "depth", "kind": "depth"}])
    cfg["meta"] = {"normalization": {"mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0]}}
    hydranet.save_model(hydranet.build_model(cfg), tmp_path / "plain01.pt")
    frame = np.full((8, 10, 3), 51, np.uint8)  # 51 / 255 = 0.2
    x, size = Predictor(tmp_path / "plain01.pt", fast=False).preprocess([frame])
    assert size == (8, 10) and torch.allclose(x, torch.full_like(x, 0.2))
    cfg.pop("meta")
    hydranet.save_model(hydranet.build_model(cfg), tmp_path / "imagenet.pt")
    x, _ = Predictor(tmp_path / "imagenet.pt", fast=False).preprocess([frame])
    assert x[0, 0, 0, 0].item() == pytest.approx((0.2 - 0.485) / 0.229, abs=1e-5)
    bad = dict(cfg, meta={"normalization": {"mean": [0.5], "std": [1, 1, 1]}})
    # The schema refuses it where the config enters, before a model (or a checkpoint) exists.
    with pytest.raises(hydranet.ConfigError, match=r"meta\.normalization\.mean"):
        hydranet.build_model(bad)
