"""int8 export (static QDQ) and ``hydranet eval`` on exported ONNX files."""

import json

import pytest
import torch
from support import tiny_config

import hydranet
from hydranet.cli import main
from hydranet.config import load_config, save_config
from hydranet.errors import CheckpointError
from hydranet.tools.evaluate import evaluate_checkpoint
from hydranet.training import apply_overrides

pytestmark = pytest.mark.usefixtures("one_thread")

# The shipped synthetic config as a tiny network with a small 64x64 validation set.
TINY = ["model.encoder_options={width_mult: 0.35}", "model.width=16", "data.val.size=[64,64]", "data.val.num_samples=6"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A tiny checkpoint and its fp32 and int8 ONNX files (written by the CLI)."""
    tmp = tmp_path_factory.mktemp("int8")
    cfg = load_config(apply_overrides(load_config("synthetic"), list(TINY)))
    torch.manual_seed(0)
    hydranet.save_model(hydranet.build_model(cfg).eval(), tmp / "m.pt")
    # opset 17 uses the TorchScript-based exporter: about 30x faster here than the default one,
    # and the metadata and quantisation steps are the same.
    common = ["--weights", str(tmp / "m.pt"), "--size", "64x64", "--no-check", "--opset", "17"]
    assert main(["export", *common, "--out", str(tmp / "fp32.onnx")]) == 0
    assert (
        main(
            [
                "export",
                *common,
                "--out",
                str(tmp / "int8.onnx"),
                "--int8",
                "--calibration-frames",
                "4",
                "--json",
                str(tmp / "int8.json"),
            ]
        )
        == 0
    )
    return tmp


def test_int8_file_is_quantised_and_carries_the_config(exported):
    import onnx

    model = onnx.load(str(exported / "int8.onnx"))
    ops = {n.op_type for n in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= ops
    int8_weights = [t for t in model.graph.initializer if t.data_type == onnx.TensorProto.INT8 and len(t.dims) == 4]
    assert int8_weights, "convolution weights are stored as int8"
    meta = {p.key: p.value for p in model.metadata_props}
    assert [t["name"] for t in json.loads(meta["hydranet_config"])["tasks"]] == [
        "segm",
        "depth",
        "normals",
        "count",
        "dominant",
    ]
    report = json.loads((exported / "int8.json").read_text())
    assert report["int8"] is True and report["calibration_frames"] == 4 and report["per_channel"] is True
    # int8 weights (biases stay int32) make the file smaller than fp32
    assert (exported / "int8.onnx").stat().st_size < 0.6 * (exported / "fp32.onnx").stat().st_size


def test_eval_of_onnx_files_uses_the_same_metrics(exported):
    ckpt = evaluate_checkpoint(exported / "m.pt", fast=False, progress=False)
    fp32 = evaluate_checkpoint(exported / "fp32.onnx", progress=False)
    int8 = evaluate_checkpoint(exported / "int8.onnx", progress=False)
    assert fp32["samples"] == int8["samples"] == ckpt["samples"] == 6  # the data named inside the file
    for task, metrics in ckpt["metrics"].items():
        for name, value in metrics.items():  # fp32 ONNX: the checkpoint's figures
            if isinstance(value, (int, float)):
                assert fp32["metrics"][task][name] == pytest.approx(value, rel=1e-3, abs=1e-4), (task, name)
            else:
                assert fp32["metrics"][task][name] == value, (task, name)
    assert set(int8["metrics"]) == set(ckpt["metrics"])
    # int8 is close, not equal
    assert int8["metrics"]["depth"]["abs_rel"] == pytest.approx(ckpt["metrics"]["depth"]["abs_rel"], rel=0.2)
    assert int8["metrics"]["depth"]["abs_rel"] != ckpt["metrics"]["depth"]["abs_rel"]
    assert abs(int8["metrics"]["segm"]["miou"] - ckpt["metrics"]["segm"]["miou"]) < 0.1


def test_eval_cli_on_int8_file(exported, capsys):
    assert (
        main(["eval", "--weights", str(exported / "int8.onnx"), "--no-progress", "--set", "data.val.num_samples=2"])
        == 0
    )
    out = capsys.readouterr().out
    assert "(2 samples)" in out and "miou" in out and "abs_rel" in out


def test_onnx_without_config_metadata_is_refused(exported, tmp_path, capsys):
    import onnx

    model = onnx.load(str(exported / "fp32.onnx"))
    del model.metadata_props[:]
    onnx.save(model, str(tmp_path / "bare.onnx"))
    with pytest.raises(CheckpointError, match="hydranet_config"):
        evaluate_checkpoint(tmp_path / "bare.onnx", progress=False)
    assert main(["eval", "--weights", str(tmp_path / "bare.onnx")]) == 2
    assert "bare.onnx" in capsys.readouterr().err


def test_int8_without_calibration_data_is_a_clear_error(tmp_path, capsys):
    path = tmp_path / "nodata.yaml"
    save_config(tiny_config(), path)  # tasks and model only: no data section
    out = tmp_path / "m.onnx"
    assert main(["export", "--config", str(path), "--int8", "--out", str(out), "--size", "64x64"]) == 2
    err = capsys.readouterr().err
    assert "--calibration" in err and "no data" in err and not out.exists()
    assert (
        main(
            ["export", "--config", str(path), "--int8", "--calibration", str(tmp_path / "none.txt"), "--out", str(out)]
        )
        == 2
    )
    assert "none.txt" in capsys.readouterr().err
    assert main(["export", "--config", str(path), "--calibration", "synthetic", "--out", str(out)]) == 2
    assert "apply to --int8" in capsys.readouterr().err


def test_bench_int8_row_without_calibration_data_is_skipped_with_the_reason():
    from hydranet.inference.bench import benchmark

    torch.manual_seed(0)
    model = hydranet.build_model(tiny_config())  # no data section to calibrate on
    result = benchmark(model, sizes=[(64, 64)], settings=["onnxruntime_int8"], warmup=0, reps=1, end_to_end=False)
    rows = {r["setting"]: r for r in result["rows"]}
    assert rows["baseline"]["status"] == "ok"
    assert rows["onnxruntime_int8"]["status"] == "skipped"
    assert "--calibration" in rows["onnxruntime_int8"]["reason"]
    # data named but not on this machine (the nyud config without NYUD): skipped too, naming the file
    cfg = tiny_config()
    cfg["data"] = {"val": {"type": "list", "list": "no/such/test.txt"}}
    result = benchmark(
        hydranet.build_model(cfg), sizes=[(64, 64)], settings=["onnxruntime_int8"], warmup=0, reps=1, end_to_end=False
    )
    row = {r["setting"]: r for r in result["rows"]}["onnxruntime_int8"]
    assert row["status"] == "skipped" and "no/such/test.txt" in row["reason"] and "--calibration" in row["reason"]


def test_calibration_frames_from_a_list_file_are_normalised_as_the_model_sees_them(tmp_path):
    import cv2
    import numpy as np

    from hydranet.inference.quantize import calibration_batches

    colours = [(255, 0, 128), (0, 255, 64), (10, 20, 30)]
    for i, rgb in enumerate(colours):
        cv2.imwrite(str(tmp_path / f"{i}.png"), np.full((40, 48, 3), rgb[::-1], np.uint8))  # cv2 writes BGR
    (tmp_path / "list.txt").write_text("# image\n" + "".join(f"{i}.png\n" for i in range(3)))
    model = hydranet.build_model(tiny_config())
    frames = calibration_batches(model, tmp_path / "list.txt", frames=2)
    assert len(frames) == 2 and frames[0].shape == (1, 3, 40, 48) and frames[0].dtype == np.float32
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    for frame, rgb in zip(frames, [colours[0], colours[2]]):  # spread over the set: first and last
        expected = (np.array(rgb) / 255.0 - mean) / std
        np.testing.assert_allclose(frame[0, :, 5, 7], expected, rtol=1e-5)
