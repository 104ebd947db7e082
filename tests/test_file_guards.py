"""Files and runtime against a hostile user (issue 23, part 2): image headers, JSON inputs,
checkpoint tensors and plain data, files without a hash, writers and their inputs, list-file
encodings, signals. Each bad input must give exit 2, one line naming the file or field, no
traceback; the crafted files that used to make a command allocate gigabytes are also run in
a child process whose peak resident memory is measured."""

import json
import os
import signal
import struct
import subprocess
import sys
import textwrap
import time
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from support import tiny_config

import hydranet
from hydranet.checkpoint import CheckpointError, content_hash, read_checkpoint, read_model_checkpoint
from hydranet.cli import main
from hydranet.cli.common import write_json
from hydranet.data.io import write_png
from hydranet.data.listfile import parse_list_file
from hydranet.training.init import read_source

ROOT = Path(__file__).resolve().parents[1]
TASKS = [{"name": "segm", "kind": "segmentation", "classes": 4}, {"name": "depth", "kind": "depth"}]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def png_declaring(width: int, height: int) -> bytes:
    """A valid, tiny PNG whose IHDR declares ``width x height`` RGB pixels (its data is short)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 4096)) + chunk(b"IEND", b"")
    )


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    """A tiny Hydranet checkpoint (segmentation + depth)."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    hydranet.save_model(hydranet.build_model(tiny_config(tasks=TASKS, width=8)).eval(), path)
    return path


def cli_error(capsys, *argv) -> str:
    """Run the CLI in-process; assert exit 2 and no traceback; return stderr."""
    capsys.readouterr()
    rc = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "Traceback" not in err and err.count("\n") == 1, err
    return err


# --- images ------------------------------------------------------------------------------------


def test_png_header_beyond_the_pixel_limit_is_refused_before_decoding(tmp_path, capsys, ckpt):
    big = tmp_path / "bomb.png"
    big.write_bytes(png_declaring(16000, 16000))
    assert big.stat().st_size < 5000
    err = cli_error(capsys, "predict", big, "--weights", ckpt, "--out", tmp_path / "out")
    assert str(big) in err and "16000 x 16000" in err and "HYDRANET_MAX_PIXELS" in err


def test_pixel_limit_is_an_environment_knob(tmp_path, monkeypatch):
    from hydranet.data.io import read_image
    from hydranet.errors import DataError

    path = tmp_path / "small.png"
    write_png(path, np.zeros((40, 50, 3), np.uint8))
    assert read_image(path).shape == (40, 50, 3)
    monkeypatch.setenv("HYDRANET_MAX_PIXELS", "1999")  # 40 x 50 = 2000 pixels
    with pytest.raises(DataError, match="50 x 40 pixels"):
        read_image(path)
    (tmp_path / "junk.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(DataError, match="junk.png"):
        read_image(tmp_path / "junk.png")


def test_npy_header_larger_than_the_file_is_refused(tmp_path):
    from hydranet.data.io import read_depth
    from hydranet.errors import DataError

    path = tmp_path / "d.npy"
    np.save(path, np.ones((4, 4), np.float32))
    path.write_bytes(path.read_bytes().replace(b"(4, 4)", b"(9, 9)"))  # 81 values declared, 16 stored
    with pytest.raises(DataError, match=r"d\.npy.*declares shape"):
        read_depth(path)


# --- JSON --------------------------------------------------------------------------------------

RUN = {"segm": {"miou": 0.5}, "depth": {"rmse": 0.4}}


@pytest.mark.parametrize(
    "text, expected",
    [
        ('{"segm": {"miou": NaN}, "depth": {"rmse": 0.4}}', "NaN"),
        ('{"segm": {"miou": Infinity}, "depth": {"rmse": 0.4}}', "Infinity"),
        ('{"segm": {"miou": 1e999}, "depth": {"rmse": 0.4}}', "finite"),
        ('{"segm": {"miou": true}, "depth": {"rmse": 0.4}}', "segm/miou must be a finite number, got True"),
        ('{"segm": {"miou": "0.5"}, "depth": {"rmse": 0.4}}', "segm/miou must be a finite number"),
        ("{}", "no results"),
        ('{"metrics": {}}', "no results"),
        ("[" * 5000 + "]" * 5000, "nested 5000 levels"),
    ],
)
def test_compare_files_are_strict_json(tmp_path, capsys, text, expected):
    run = tmp_path / "run.json"
    run.write_text(json.dumps(RUN))
    base = tmp_path / "base.json"
    base.write_text(text)
    err = cli_error(capsys, "compare", run, "--baseline", base)
    assert str(base) in err and expected in err


def test_compare_overflow_names_the_metric(tmp_path, capsys):
    # found by `make fuzz`: a run value of 1e308 against 0.5 overflows; the error named no metric
    run, base = tmp_path / "run.json", tmp_path / "base.json"
    run.write_text(json.dumps({"segm": {"miou": 1e308}, "depth": {"rmse": 0.4}}))
    base.write_text(json.dumps(RUN))
    err = cli_error(capsys, "compare", run, "--baseline", base)
    assert "Delta_m is not finite (segm/miou too large)" in err


@pytest.mark.parametrize(
    "records, expected",
    [
        (
            [{"image": "a.png", "maker": -1}, {"image": "b.png", "maker": 2}],
            "field 'maker' holds the negative class id -1",
        ),
        ([{"image": "a.png", "maker": True}, {"image": "b.png", "maker": 2}], "field 'maker' holds true/false"),
        ('[{"image": "a.png", "size": NaN}]', "NaN"),
        ("[" * 3000 + "]" * 3000, "nested 3000 levels"),
    ],
)
def test_train_json_is_strict_and_names_the_file(tmp_path, capsys, records, expected):
    path = tmp_path / "train.json"
    path.write_text(records if isinstance(records, str) else json.dumps(records))
    err = cli_error(capsys, "train", "--train_json", path, "--out", tmp_path / "run", "--no-progress")
    assert str(path) in err and expected in err


# --- checkpoints -------------------------------------------------------------------------------


def _stored(ckpt_path: Path, edit, rehash: bool = True, path: Path = None, **save) -> Path:
    ckpt = torch.load(ckpt_path, weights_only=True)
    edit(ckpt)
    if rehash:
        ckpt["sha256"] = content_hash(ckpt["config"], ckpt["model"])
    path = path or ckpt_path.with_name("crafted.pt")
    torch.save(ckpt, path, **save)
    return path


def _big_views(ckpt, view):
    """The tiny checkpoint's config at width 4096 (a model of about 1 GB), each tensor of that
    model stored as ``view(shape, dtype)`` (a file of a few hundred KB)."""
    cfg = json.loads(json.dumps(ckpt["config"]))
    cfg["model"]["width"] = 4096
    with torch.device("meta"):
        shapes = {k: (v.shape, v.dtype) for k, v in hydranet.build_model(cfg).state_dict().items()}
    ckpt["config"] = cfg
    ckpt["model"] = {k: view(shape, dtype) for k, (shape, dtype) in shapes.items()}
    ckpt["sha256"] = "0" * 64  # hashing it would expand every tensor


def _stride0(ckpt):
    _big_views(ckpt, lambda shape, dtype: torch.zeros((), dtype=dtype).expand(shape))


def _overlapping(ckpt):
    def view(shape, dtype):  # strides of 1 in every dimension: each element read many times
        base = torch.zeros(sum(s - 1 for s in shape) + 1, dtype=dtype)
        return base.as_strided(shape, (1,) * len(shape))

    _big_views(ckpt, view)


def _offset(ckpt):
    items = [(k, v) for k, v in ckpt["model"].items() if v.is_floating_point()][:2]
    storage = torch.cat([v.reshape(-1) for _, v in items])
    start = 0
    for k, v in items:
        ckpt["model"][k] = storage[start : start + v.numel()].view(v.shape)
        start += v.numel()


def _shared_dag(ckpt):
    """Plain data that a pickle shares: 30 levels of 10 references, 10**30 values written out."""
    node = [0.0] * 10
    for _ in range(30):
        node = [node] * 10
    ckpt["meta"] = {"notes": node}
    ckpt["config"] = {**ckpt["config"], "meta": {"notes": node}}
    ckpt["model"] = {k: v for k, v in ckpt["model"].items() if v.numel() < 1000}  # keep the file small
    ckpt["sha256"] = "0" * 64


def _compressed(path: Path) -> Path:
    out = path.with_name("deflated.pt")
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info.filename))
    return out


CHILD = textwrap.dedent(
    """
    import contextlib, io, json, resource, sys, time
    from hydranet.cli import main
    import hydranet.data.io, hydranet.checkpoint, hydranet.models  # imports before the baseline
    def peak():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    base = peak()
    for argv in json.loads(sys.argv[1]):
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            t0 = time.time()
            rc = main(argv)
        seconds = time.time() - t0
        print(json.dumps({"argv": argv, "rc": rc, "err": err.getvalue(), "grew_mb": peak() - base, "s": seconds}))
    """
)


def test_crafted_checkpoints_and_images_never_allocate_much(tmp_path, ckpt):
    """Stride-0 and overlapping tensors, a shared-list config and a PNG bomb: each is refused
    with exit 2 naming the file, and the child process's peak RSS grows by < 150 MB (the old
    code expanded them to 1 GB or more, or hung hashing the config)."""
    work = tmp_path / "w"
    work.mkdir()
    stride0 = _stored(ckpt, _stride0, rehash=False, path=work / "stride0.pt")
    overlap = _stored(ckpt, _overlapping, rehash=False, path=work / "overlap.pt")
    dag = _stored(ckpt, _shared_dag, rehash=False, path=work / "dag.pt")
    bomb = work / "bomb.png"
    bomb.write_bytes(png_declaring(20000, 20000))
    for path in (stride0, overlap, dag):
        assert path.stat().st_size < 1_000_000
    cases = [
        (["summary", "--weights", str(stride0)], str(stride0), "not a dense view"),
        (["eval", "--weights", str(stride0), "--no-progress"], str(stride0), "not a dense view"),
        (["convert", str(stride0), str(work / "out.pt")], str(stride0), "not a dense view"),
        (["eval", "--weights", str(overlap), "--no-progress"], str(overlap), "not a dense view"),
        (["summary", "--weights", str(dag)], str(dag), "plain data"),
        (["predict", str(bomb), "--weights", str(ckpt), "--out", str(work / "p")], str(bomb), "20000 x 20000"),
    ]
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps([argv for argv, _, _ in cases])],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=work,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert len(results) == len(cases), proc.stdout[-3000:]
    for (argv, named, reason), got in zip(cases, results):
        assert got["rc"] == 2 and "Traceback" not in got["err"], (argv, got)
        assert named in got["err"] and reason in got["err"], (argv, got["err"])
    assert results[-1]["grew_mb"] < 150, results  # peak RSS only grows: the last covers them all
    assert not (work / "out.pt").exists()


def test_views_into_shared_storage_and_compressed_records_are_refused(tmp_path, capsys, ckpt):
    offset = _stored(ckpt, _offset, path=tmp_path / "offset.pt")
    err = cli_error(capsys, "summary", "--weights", offset)
    assert str(offset) in err and "not a dense view" in err
    deflated = _compressed(ckpt)
    err = cli_error(capsys, "summary", "--weights", deflated)
    assert str(deflated) in err and "compressed" in err


def test_legacy_file_declaring_more_storage_than_it_holds(tmp_path, capsys):
    path = tmp_path / "legacy.pt"
    torch.save({"state_dict": {"w": torch.ones(1000)}}, path, _use_new_zipfile_serialization=False)
    raw = path.read_bytes()
    numel = b"M" + struct.pack("<H", 1000)  # BININT2 1000: the storage's element count
    assert numel in raw
    path.write_bytes(raw.replace(numel, b"J" + struct.pack("<i", 2**31 - 1), 1))
    err = cli_error(capsys, "convert", path, tmp_path / "out.pt")
    assert str(path) in err and "declare" in err


def _flip_exponent(ckpt):
    del ckpt["sha256"]  # as files written before the hash existed
    w = next(v for k, v in ckpt["model"].items() if k.endswith("weight") and v.numel() > 8)
    bits = w.view(torch.int32).reshape(-1)
    bits[3] ^= 1 << 30  # the highest exponent bit of one float32


def _negative_variance(ckpt):
    del ckpt["sha256"]
    var = next(v for k, v in ckpt["model"].items() if k.endswith("running_var"))
    var[0] = -1.0


@pytest.mark.parametrize("edit, expected", [(_flip_exponent, "implausible weights"), (_negative_variance, "negative")])
def test_files_without_a_hash_get_plausibility_checks(tmp_path, capsys, ckpt, edit, expected):
    path = _stored(ckpt, edit, rehash=False, path=tmp_path / "old.pt")
    err = cli_error(capsys, "summary", "--weights", path)
    assert str(path) in err and expected in err


def test_onnx_hash_and_plausibility(tmp_path):
    """The hash over an ONNX graph's tensors catches any changed byte; without a hash, a
    flipped exponent bit is caught by the plausibility check."""
    from onnx import TensorProto, helper, numpy_helper

    from hydranet.inference.onnx_integrity import HASH_METADATA_KEY, stamp_hash, verify_onnx

    weight = numpy_helper.from_array(np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        [weight],
    )
    model = helper.make_model(graph)
    stamp_hash(model)
    verify_onnx(model, "m.onnx")
    raw = bytearray(model.graph.initializer[0].raw_data)
    raw[0] ^= 1
    model.graph.initializer[0].raw_data = bytes(raw)
    with pytest.raises(CheckpointError, match="m.onnx: content hash mismatch"):
        verify_onnx(model, "m.onnx")
    props = [p for p in model.metadata_props if p.key != HASH_METADATA_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(props)
    verify_onnx(model, "m.onnx")  # a one-bit change in the mantissa is plausible
    raw[7] ^= 0x40  # the top exponent bit of the second value
    model.graph.initializer[0].raw_data = bytes(raw)
    with pytest.raises(CheckpointError, match="m.onnx: implausible weights: tensor 'w'"):
        verify_onnx(model, "m.onnx")


# --- nothing accepted and ignored --------------------------------------------------------------


def test_writers_refuse_to_replace_their_inputs(tmp_path, capsys, ckpt):
    src = tmp_path / "model.pt"
    src.write_bytes(ckpt.read_bytes())
    before = src.read_bytes()
    err = cli_error(capsys, "convert", src, src)
    assert str(src) in err and "refused" in err
    link = tmp_path / "link.pt"
    link.symlink_to(src)
    err = cli_error(capsys, "convert", src, link, "--half")
    assert "refused" in err
    err = cli_error(capsys, "export", "--weights", src, "--out", tmp_path / "." / "model.pt")
    assert "refused" in err
    err = cli_error(capsys, "summary", "--weights", src, "--json", src)
    assert "refused" in err
    assert src.read_bytes() == before
    images = tmp_path / "images"
    write_png(images / "x.png", np.zeros((32, 32, 3), np.uint8))
    write_png(images / "x_segm.png", np.zeros((32, 32, 3), np.uint8))  # what predicting x.png writes
    kept = (images / "x_segm.png").read_bytes()
    err = cli_error(capsys, "predict", images, "--weights", src, "--out", images)
    assert "x_segm.png" in err and "refused" in err
    assert (images / "x_segm.png").read_bytes() == kept


def test_list_file_with_byte_order_mark_and_crlf(tmp_path):
    path = tmp_path / "list.txt"
    path.write_bytes("\ufeff# image depth\r\na.png\td.png\r\nb.png -\r\n".encode("utf-8"))
    names, rows = parse_list_file(path)
    assert names == ["image", "depth"]
    assert rows == [(2, {"image": "a.png", "depth": "d.png"}), (3, {"image": "b.png"})]


def test_training_set_without_any_label_is_an_error(tmp_path, capsys):
    lst = tmp_path / "list.txt"
    lst.write_text("# image depth\na.png -\nb.png -\n")
    cfg = tiny_config(tasks=TASKS, width=8)
    cfg["data"] = {"train": {"type": "list", "list": str(lst)}}
    cfg["train"] = {"steps": 1, "batch_size": 1, "plots": False}
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    err = cli_error(capsys, "train", "--config", tmp_path / "cfg.yaml", "--out", tmp_path / "run", "--no-progress")
    assert "data.train" in err and str(lst) in err and "no configured task" in err


def test_plot_with_nothing_readable(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "log.jsonl").write_text('garbage\n{"type": "step"}\n' + "[" * 5000 + "\n")
    err = cli_error(capsys, "plot", run)
    assert str(run / "log.jsonl") in err and "nothing to plot" in err
    assert not list(run.glob("*.png"))


@pytest.mark.parametrize("field", ["fx", "fy", "cx", "cy"])
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_intrinsics_name_the_field(field, value):
    """The point-cloud tool itself refuses them (the CLI's --cx/--cy flags are typed too), so
    no caller gets a cloud of NaN."""
    from hydranet.errors import ConfigError
    from hydranet.tools.pointcloud import depth_to_points

    intrinsics = {"fx": 50.0, "fy": 50.0, "cx": 16.0, "cy": 16.0, field: value}
    with pytest.raises(ConfigError, match=f"{field} \\(--{field}\\) must be a finite number"):
        depth_to_points(np.ones((32, 32), np.float32), **intrinsics)


# --- signals -----------------------------------------------------------------------------------


def _train_process(tmp_path, ckpt_every=1):
    cfg = tiny_config(tasks=[{**TASKS[0], "classes": 8}, TASKS[1]], width=8)  # the synthetic set's 8 classes
    cfg["data"] = {
        "train": {"type": "synthetic", "num_samples": 8, "size": [32, 32], "fields": {"segm": "segmentation"}}
    }
    cfg["train"] = {"steps": 100000, "batch_size": 2, "val_every": 100000, "ckpt_every": ckpt_every, "plots": False}
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "hydranet", "train", "--config", str(tmp_path / "cfg.yaml"), "--out", str(out)]
    return subprocess.Popen(
        [*cmd, "--no-progress"], env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ), out


def _wait_for(predicate, timeout=240):
    deadline = time.time() + timeout
    while time.time() < deadline and not predicate():
        time.sleep(0.05)
    assert predicate()


def test_sigterm_twice_while_checkpoints_are_written(tmp_path):
    """A run writing a checkpoint every step gets two SIGTERMs: it stops within seconds with
    exit 130, no temporary file is left and last.pt is a whole checkpoint."""
    proc, out = _train_process(tmp_path)
    _wait_for(lambda: (out / "last.pt").is_file())
    time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)  # a second signal stops it where it stands, mid-write or not
    t0 = time.time()
    _, err = proc.communicate(timeout=60)
    assert time.time() - t0 < 10 and proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]
    assert read_checkpoint(out / "last.pt")["step"] >= 1


def test_signals_are_honoured_at_once_outside_the_loop_and_within_the_grace_inside(monkeypatch):
    from hydranet.training.trainer import RunInterrupted, _StopRequest

    monkeypatch.setattr(_StopRequest, "GRACE_SECONDS", 0.3)
    with pytest.raises(RunInterrupted), _StopRequest():  # setting up: stops at once
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)
    with _StopRequest() as stop:  # in the loop: a flag, then the deadline
        stop.graceful = True
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.05)
        assert stop.signal == signal.SIGTERM
        t0 = time.time()
        with pytest.raises(RunInterrupted, match="did not stop within"):
            while time.time() - t0 < 5:  # a step that would take far longer than the grace
                sum(range(1000))
        assert time.time() - t0 < 2
    with _StopRequest() as stop:  # the stop was done in time: the deadline is disarmed
        stop.graceful = True
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.05)
        stop.settle()
        time.sleep(0.5)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL or callable(signal.getsignal(signal.SIGTERM))


def test_an_interrupted_checkpoint_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    from hydranet.checkpoint import atomic_save
    from hydranet.training.trainer import RunInterrupted, _StopRequest

    path = tmp_path / "last.pt"
    atomic_save({"step": 1}, path)
    monkeypatch.setattr(os, "fsync", lambda fd: os.kill(os.getpid(), signal.SIGTERM))  # the signal lands mid-write
    with pytest.raises(RunInterrupted), _StopRequest():
        atomic_save({"step": 2, "w": torch.zeros(1000)}, path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]
    assert torch.load(path, weights_only=True) == {"step": 1}


def test_json_limits_module():
    from hydranet.jsonfile import nesting_depth

    assert nesting_depth('{"a": [1, {"b": "[[[["}]}') == 3
    assert nesting_depth("3") == 0


def test_hashed_checkpoint_with_a_non_finite_weight(tmp_path, capsys, ckpt):
    def edit(c):
        next(v for k, v in c["model"].items() if k.endswith("weight")).view(-1)[0] = float("inf")

    path = _stored(ckpt, edit, rehash=True, path=tmp_path / "inf.pt")  # the hash recomputed, as an editor can
    err = cli_error(capsys, "summary", "--weights", path)
    assert str(path) in err and "inf" in err


@pytest.mark.parametrize("meta", [3, "text", [1, 2]])
def test_non_mapping_meta_names_the_file(tmp_path, capsys, ckpt, meta):
    # found by `make fuzz`: `convert --half` on such a file ended in an AttributeError
    path = _stored(ckpt, lambda c: c.update(meta=meta), path=tmp_path / "meta.pt")
    err = cli_error(capsys, "convert", path, tmp_path / "half.pt", "--half")
    assert str(path) in err and "'meta' must be a mapping" in err
    assert not (tmp_path / "half.pt").exists()


def test_nul_byte_in_a_list_file_names_the_line(tmp_path):
    from hydranet.errors import DataError

    path = tmp_path / "l.txt"
    path.write_text("a.png -\nimg.png\x00 - -\n")
    with pytest.raises(DataError, match=r"l\.txt:2: a NUL byte"):
        parse_list_file(path)


def test_baseline_lacking_a_metric_names_the_file(tmp_path, capsys):
    run, base = tmp_path / "run.json", tmp_path / "base.json"
    run.write_text(json.dumps(RUN))
    base.write_text(json.dumps({"segm": {"pixel_acc": 0.9}, "depth": {"rmse": 0.5}}))
    err = cli_error(capsys, "compare", run, "--baseline", base)
    assert str(base) in err and "segm/miou is missing from the baseline" in err


def test_integer_weights_are_refused_by_every_reader(tmp_path, capsys, ckpt):
    # found by `make fuzz`: a resumed run cast int64 weights into the model and trained on
    path = _stored(ckpt, lambda c: c["model"].update(_integer_weight(c)), path=tmp_path / "int.pt")
    for argv in (["summary", "--weights", path], ["convert", path, tmp_path / "out.pt"]):
        err = cli_error(capsys, *argv)
        assert str(path) in err and "dtype torch.int64" in err
    with pytest.raises(CheckpointError, match="dtype torch.int64"):
        read_model_checkpoint(path)
    with pytest.raises(CheckpointError, match="dtype torch.int64"):
        read_source(str(path))  # train.init


def test_integer_weights_are_refused_on_resume(tmp_path, capsys):
    cfg = tiny_config(tasks=[{**TASKS[0], "classes": 8}, TASKS[1]], width=8)  # the synthetic set's 8 classes
    cfg["data"] = {
        "train": {"type": "synthetic", "num_samples": 4, "size": [32, 32], "fields": {"segm": "segmentation"}}
    }
    cfg["train"] = {"steps": 1, "batch_size": 2, "val_every": 10, "ckpt_every": 1, "plots": False}
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    train = ["train", "--config", tmp_path / "cfg.yaml", "--no-progress"]
    assert main([str(a) for a in [*train, "--out", tmp_path / "run"]]) == 0
    path = _stored(
        tmp_path / "run" / "last.pt", lambda c: c["model"].update(_integer_weight(c)), path=tmp_path / "int.pt"
    )
    err = cli_error(capsys, *train, "--out", tmp_path / "again", "--resume", path, "--steps", 2, "--allow-changes")
    assert str(path) in err and "dtype torch.int64" in err


def _integer_weight(ckpt) -> dict:
    key = next(k for k, v in ckpt["model"].items() if k.endswith("weight") and v.dim() == 4)
    return {key: ckpt["model"][key].round().long()}


def test_json_reports_are_strict_json(tmp_path):
    write_json(tmp_path / "r.json", {"rmse": float("inf"), "mae": np.float32("nan"), "ok": [1.5, -float("inf")]})
    text = (tmp_path / "r.json").read_text()
    assert json.loads(text) == {"rmse": None, "mae": None, "ok": [1.5, None]}
    assert "Infinity" not in text and "NaN" not in text
