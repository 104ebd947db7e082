"""hydranet bench and hydranet export: every row complete, exported files equal PyTorch."""

import json

import numpy as np
import pytest
import torch
from support import tiny_config

import hydranet
from hydranet.cli import main
from hydranet.config import save_config
from hydranet.errors import ConfigError
from hydranet.inference import processing
from hydranet.inference.bench import ROW_FIELDS, benchmark, format_table
from hydranet.inference.export import check_onnx, export_onnx, export_torchscript
from hydranet.inference.processing import postprocess, preprocess

CUDA = torch.cuda.is_available()


pytestmark = pytest.mark.usefixtures("one_thread")

FP32_SETTINGS = {"default", "channels_last", "fold_bn", "compile", "onnxruntime", "onnxruntime_static", "cuda_graphs"}


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return hydranet.build_model(tiny_config()).eval()


@pytest.fixture
def tiny_yaml(tmp_path):
    path = tmp_path / "tiny.yaml"
    save_config(tiny_config(), path)
    return path


def check_rows(result, n_expected):
    rows = result["rows"]
    assert len(rows) == n_expected
    for row in rows:
        assert set(ROW_FIELDS) <= set(row), f"{row['setting']} lacks {set(ROW_FIELDS) - set(row)}"
        assert row["status"] in ("ok", "skipped", "failed")
        if row["status"] != "ok":
            assert row["reason"], row["setting"]
            continue
        for key in (
            "model_ms_median",
            "model_ms_p90",
            "model_fps",
            "speedup",
            "e2e_ms_median",
            "e2e_ms_p90",
            "e2e_fps",
            "e2e_speedup",
            "max_abs_diff",
            "max_rel_diff",
            "peak_memory_mb",
        ):
            assert isinstance(row[key], (int, float)) and row[key] >= 0, (row["setting"], key, row[key])
        assert row["model_ms_p90"] >= row["model_ms_median"] > 0
        assert row["memory_method"]
        assert set(row["diff_per_task"]) == {"segm", "depth", "normals", "maker", "diameter"}
        if row["setting"] in FP32_SETTINGS:
            assert row["max_rel_diff"] < 1e-4, row
    assert rows[0]["setting"] == "baseline" and rows[0]["speedup"] == 1.0 and rows[0]["max_abs_diff"] == 0.0


@pytest.mark.slow
def test_bench_cli_end_to_end_json(tiny_yaml, tmp_path, capsys):
    out = tmp_path / "bench.json"
    settings = (
        "baseline,default,channels_last,fold_bn,onnxruntime,onnxruntime_static,fp16,bf16,cuda_graphs,cuda_graphs_fp16"
    )
    rc = main(
        [
            "bench",
            "--config",
            str(tiny_yaml),
            "--size",
            "64x64",
            "--batch",
            "1",
            "--settings",
            settings,
            "--warmup",
            "1",
            "--reps",
            "2",
            "--json",
            str(out),
        ]
    )
    assert rc == 0
    text = capsys.readouterr().out
    assert "baseline" in text and "speed-up" in text
    result = json.loads(out.read_text())
    check_rows(result, 10)
    by_setting = {r["setting"]: r for r in result["rows"]}
    assert by_setting["onnxruntime"]["status"] == by_setting["onnxruntime_static"]["status"] == "ok"
    assert by_setting["default"]["status"] == "ok"
    if not CUDA:
        for name in ("cuda_graphs", "cuda_graphs_fp16"):
            assert by_setting[name]["status"] == "skipped" and "CUDA" in by_setting[name]["reason"]
        for name in ("fp16", "bf16"):  # on CPU: run where the CPU has native kernels, else skipped
            row = by_setting[name]
            assert row["status"] == "ok" or (row["status"] == "skipped" and "native" in row["reason"])
    assert result["machine"]["torch"] == torch.__version__


def test_bench_library_batches_sizes_and_baseline_added(tiny_model):
    result = benchmark(
        tiny_model, batches=[1, 2], sizes=[(64, 64), (49, 67)], settings=["default"], warmup=0, reps=1, end_to_end=False
    )
    check_rows_partial = result["rows"]
    assert [(r["setting"], r["batch"], r["size"]) for r in check_rows_partial] == [
        ("baseline", 1, "64x64"),
        ("default", 1, "64x64"),
        ("baseline", 1, "67x49"),
        ("default", 1, "67x49"),
        ("baseline", 2, "64x64"),
        ("default", 2, "64x64"),
        ("baseline", 2, "67x49"),
        ("default", 2, "67x49"),
    ]
    for row in check_rows_partial:
        assert set(ROW_FIELDS) <= set(row) and row["e2e_ms_median"] is None and row["max_rel_diff"] < 1e-4
    assert "default" in format_table(result)


def test_bench_does_not_change_the_model(tiny_model):
    before = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    benchmark(tiny_model, sizes=[(64, 64)], settings=["baseline", "default"], warmup=0, reps=1, end_to_end=False)
    assert all(torch.equal(before[k], v) for k, v in tiny_model.state_dict().items())


def test_argmax_channels_equals_argmax():
    from hydranet.kinds.segmentation import argmax_channels

    y = torch.randn(2, 7, 13, 17)
    y[0, 3, 0, 0] = y[0, 5, 0, 0] = 100.0  # a tie: the first index wins
    for t in (y, y.contiguous(memory_format=torch.channels_last)):
        got = argmax_channels(t, torch.uint8)
        assert got.dtype == torch.uint8 and torch.equal(got.long(), y.argmax(1))
    assert int(argmax_channels(y)[0, 0, 0]) == 3


def test_channel_norm_and_unit_channels_equal_torch():
    import torch.nn.functional as F

    from hydranet.kinds.normals import channel_norm, unit_channels

    y = torch.randn(2, 3, 5, 7)
    y[0, :, 0, 0] = 0.0  # a zero vector stays zero, as in F.normalize
    y[1, :, 1, 1] = torch.tensor([3.0, 4.0, 12.0])  # norm 13 by hand
    assert torch.allclose(channel_norm(y), torch.linalg.vector_norm(y, dim=1), rtol=1e-6)
    assert float(channel_norm(y)[1, 1, 1]) == 13.0 and channel_norm(y, keepdim=True).shape == (2, 1, 5, 7)
    assert torch.allclose(unit_channels(y), F.normalize(y, dim=1), atol=1e-7)
    assert torch.equal(unit_channels(y)[0, :, 0, 0], torch.zeros(3))


def test_pre_and_postprocessing(tiny_model):
    frames = np.random.default_rng(0).integers(0, 256, (2, 50, 70, 3), dtype=np.uint8)
    x, net_size = preprocess(frames, torch.device("cpu"), (64, 96), channels_last=True)
    assert x.shape == (2, 3, 64, 96) and x.dtype == torch.float32 and net_size == (64, 96)
    with torch.no_grad():
        out = tiny_model(x)
    res = postprocess(out, tiny_model.tasks, net_size, (50, 70))
    assert len(res) == 2
    assert all(r["segm"].shape == (50, 70) and r["segm"].dtype == np.uint8 for r in res)
    assert all(r["depth"].shape == (50, 70) and (r["depth"] >= 0).all() for r in res)
    assert all(np.allclose(np.linalg.norm(r["normals"], axis=-1), 1, atol=1e-4) for r in res)
    assert all(0 <= r["maker"]["class_id"] < 3 and r["diameter"].shape == (2,) for r in res)
    # Plain normalisation: the same as (x / 255 - mean) / std.
    ref = (
        torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255
        - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    ) / torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    torch.testing.assert_close(preprocess(frames, torch.device("cpu"), (50, 70))[0], ref, rtol=1e-5, atol=1e-5)
    # Padding to a stride: zeros (the mean colour) right and bottom, the unpadded size kept.
    padded, net_size = preprocess(frames, torch.device("cpu"), pad_to=32)
    assert padded.shape == (2, 3, 64, 96) and net_size == (50, 70) and (padded[..., 50:, :] == 0).all()


def test_bench_end_to_end_times_the_predictor_pipeline(tiny_model, monkeypatch):
    """bench's end-to-end rows call the very functions Predictor calls (no pipeline of their own)."""
    from hydranet.inference import Predictor

    calls = []
    for name in ("preprocess", "postprocess"):
        original = getattr(processing, name)
        monkeypatch.setattr(processing, name, lambda *a, _f=original, _n=name, **k: calls.append(_n) or _f(*a, **k))
    benchmark(tiny_model, batches=(1,), sizes=((64, 64),), settings=("baseline",), warmup=1, reps=1, end_to_end=True)
    assert "preprocess" in calls and "postprocess" in calls
    calls.clear()
    Predictor(tiny_model, fast=False).predict(np.zeros((64, 64, 3), np.uint8))
    assert calls == ["preprocess", "postprocess"]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--size", "640by480"], "WIDTHxHEIGHT"),
        (["--size", "16x16"], "at least 32"),
        (["--batch", "0"], "--batch"),
        (["--settings", "baseline,turbo"], "turbo"),
    ],
)
def test_bench_bad_arguments_exit_2(tiny_yaml, capsys, argv, message):
    assert main(["bench", "--config", str(tiny_yaml)] + argv) == 2
    assert message in capsys.readouterr().err


@pytest.mark.skipif(CUDA, reason="CUDA is available here")
def test_bench_unavailable_device_exit_2(tiny_yaml, capsys):
    assert main(["bench", "--config", str(tiny_yaml), "--device", "cuda"]) == 2
    err = capsys.readouterr().err
    assert "CUDA is not available" in err and "error" in err
    with pytest.raises(ConfigError):
        benchmark(hydranet.build_model(tiny_config()), device="cuda")


# --- export ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def onnx_file(tiny_model, tmp_path_factory):
    path = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    report = export_onnx(tiny_model, path, size=(64, 64), check_sizes=[(64, 64), (97, 130)])
    return path, report


def test_onnx_matches_pytorch_at_two_sizes_from_one_file(tiny_model, onnx_file):
    import onnx
    import onnxruntime as ort

    path, report = onnx_file
    assert report["opset"] >= 17 and report["outputs"] == tiny_model.task_names
    assert [c["size"] for c in report["check"]] == ["64x64", "130x97"]
    assert all(c["max_rel"] < 1e-4 for c in report["check"])
    graph = onnx.load(str(path)).graph
    assert [i.name for i in graph.input] == ["image"]
    assert [o.name for o in graph.output] == tiny_model.task_names
    dims = [d.dim_param for d in graph.input[0].type.tensor_type.shape.dim]
    assert dims[0] and dims[2] and dims[3]  # batch, height and width are symbolic
    modes = {
        a.s.decode()
        for n in graph.node
        if n.op_type == "Resize"
        for a in n.attribute
        if a.name == "coordinate_transformation_mode"
    }
    assert modes == {"half_pixel"}
    # Independently of the exporter's own check: one session, two sizes and batches.
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == tiny_model.task_names
    for shape in [(1, 3, 64, 64), (2, 3, 97, 130)]:
        x = torch.randn(shape)
        with torch.no_grad():
            ref = tiny_model(x)
        outs = session.run(None, {"image": x.numpy()})
        for name, got in zip(tiny_model.task_names, outs):
            scale = float(ref[name].abs().max())
            assert np.abs(got - ref[name].numpy()).max() <= 1e-4 * scale, (shape, name)


def test_onnx_static_export(tiny_model, tmp_path):
    import onnx

    report = export_onnx(tiny_model, tmp_path / "static.onnx", size=(49, 67), batch=2, static=True)
    assert report["static"] and report["input_shape"] == [2, 3, 49, 67]
    assert [(c["batch"], c["size"]) for c in report["check"]] == [(2, "67x49")]
    assert report["check"][0]["max_rel"] < 1e-4
    dims = [d.dim_value for d in onnx.load(str(tmp_path / "static.onnx")).graph.input[0].type.tensor_type.shape.dim]
    assert dims == [2, 3, 49, 67]


@pytest.mark.slow
def test_onnx_runtime_forms_and_plain_layers(tmp_path):
    """The default export writes the equivalent layers (hydranet.inference.rewrites); both files match PyTorch."""
    import onnx

    torch.manual_seed(0)
    model = hydranet.build_model(tiny_config(width=48)).eval()  # wide enough for tap heads
    convs = {}
    for forms in (True, False):
        path = tmp_path / f"forms_{forms}.onnx"
        report = export_onnx(model, path, size=(64, 64), runtime_forms=forms, check_sizes=[(64, 64), (41, 57)])
        assert report["runtime_forms"] is forms
        assert all(c["max_rel"] < 1e-4 for c in report["check"])
        convs[forms] = sum(n.op_type == "Conv" for n in onnx.load(str(path)).graph.node)
    # +1 per tap head (depth, normals: taps + shift) and +1 identity conv per decoder path (4)
    assert convs[True] == convs[False] + 2 + 4


def test_onnx_opset_17(tiny_model, tmp_path):
    report = export_onnx(tiny_model, tmp_path / "m17.onnx", opset=17, size=(64, 64))
    assert report["opset"] == 17
    assert all(c["max_rel"] < 1e-4 for c in report["check"])
    with pytest.raises(ConfigError):
        export_onnx(tiny_model, tmp_path / "m16.onnx", opset=16)


@pytest.mark.parametrize("decoder", ["lightweight", "refinenet"])
def test_torchscript_round_trip(tmp_path, decoder):
    torch.manual_seed(0)
    model = hydranet.build_model(tiny_config(decoder, "mtrn_mobilenet_v2")).eval()
    path = tmp_path / "model.pt"
    report = export_torchscript(model, path, size=(64, 64))
    assert all(c["max_rel"] < 1e-4 for c in report["check"]) and len(report["check"]) == 2
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        loaded = torch.jit.load(str(path))
    for shape in [(1, 3, 64, 64), (2, 3, 97, 130)]:
        x = torch.randn(shape)
        with torch.no_grad():
            ref, got = model(x), loaded(x)
        assert list(got) == model.task_names
        for name in ref:
            torch.testing.assert_close(got[name], ref[name], rtol=1e-4, atol=1e-4 * float(ref[name].abs().max()))


def test_export_cli(tiny_yaml, tmp_path, capsys):
    out = tmp_path / "m.pt"
    assert (
        main(
            [
                "export",
                "--config",
                str(tiny_yaml),
                "--format",
                "torchscript",
                "--out",
                str(out),
                "--size",
                "64x64",
                "--json",
                str(tmp_path / "r.json"),
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert out.is_file() and "largest difference" in text and "segm" in text
    assert json.loads((tmp_path / "r.json").read_text())["outputs"] == ["segm", "depth", "normals", "maker", "diameter"]


def test_export_cli_plain_layers(tiny_yaml, tmp_path):
    out, report = tmp_path / "plain.onnx", tmp_path / "r.json"
    assert (
        main(
            [
                "export",
                "--config",
                str(tiny_yaml),
                "--out",
                str(out),
                "--size",
                "64x64",
                "--plain-layers",
                "--no-check",
                "--json",
                str(report),
            ]
        )
        == 0
    )
    assert out.is_file() and json.loads(report.read_text())["runtime_forms"] is False


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--size", "640x"], "WIDTHxHEIGHT"),
        (["--size", "8x8"], "at least"),
        (["--opset", "11"], "opset"),
        (["--format", "torchscript", "--plain-layers"], "apply to --format onnx"),
    ],
)
def test_export_cli_bad_arguments_exit_2(tiny_yaml, tmp_path, capsys, argv, message):
    assert main(["export", "--config", str(tiny_yaml), "--out", str(tmp_path / "m.onnx")] + argv) == 2
    assert message in capsys.readouterr().err


def test_check_onnx_reports_per_task(tiny_model, onnx_file):
    check = check_onnx(onnx_file[0], tiny_model, sizes=[(33, 41)], batch=1)
    assert check[0]["size"] == "41x33" and set(check[0]["tasks"]) == set(tiny_model.task_names)
    assert check[0]["max_rel"] < 1e-4


def test_aligned_rows_pads_names_left_and_numbers_right():
    from hydranet.measure import aligned_rows

    lines = aligned_rows([("setting", "batch", "ms"), ("default", "1", "4.5"), ("baseline", "16", "12.0")], left=2)
    assert lines == [
        "setting   batch    ms",
        "--------  -----  ----",
        "default   1       4.5",
        "baseline  16     12.0",
    ]
    assert aligned_rows([("a", "b"), ("x", "")], indent="  ")[-1] == "  x"  # trailing blanks dropped
