"""Damaged, crafted and mistyped input against every command: exit 2, no traceback, the file
or field named (issue 16). The corpus is built here: bit flips in a tiny checkpoint, crafted
configs, paths that cannot be written (tests run as root, so chmod stops nothing: paths under
/proc, a regular file used as a folder, /dev/full)."""

import errno
import json
import os
import random
import signal
import struct
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from support import tiny_config

import hydranet
from hydranet.checkpoint import content_hash, load_model, read_checkpoint, save_model
from hydranet.cli import COMMANDS, main
from hydranet.errors import CheckpointError, ConfigError, OutputError
from hydranet.inference.weights import bundled_weights_path
from hydranet.training import Trainer, train

ROOT = Path(__file__).resolve().parents[1]
PROC = "/proc/hydranet-test-nowhere"
TRAIN_FAST = {
    "steps": 2,
    "batch_size": 2,
    "val_every": 100,
    "ckpt_every": 1,
    "log_every": 1,
    "plots": False,
    "tensorboard": False,
    "warmup_steps": 0,
}


def _train_config(**train):
    tasks = [{"name": "segm", "kind": "segmentation", "classes": 8}, {"name": "depth", "kind": "depth"}]
    cfg = tiny_config(tasks=tasks)
    cfg["data"] = {
        "train": {
            "type": "synthetic",
            "num_samples": 4,
            "size": [32, 32],
            "seed": 0,
            "fields": {"segm": "segmentation"},
        }
    }
    cfg["train"] = {**TRAIN_FAST, **train}
    return cfg


def _craft(src: dict, path: Path, rehash: bool = True, **changes) -> Path:
    """A copy of the checkpoint dict ``src`` with top-level ``changes`` (config edits via a
    function), saved with a valid hash when ``rehash`` (an attacker can recompute it)."""
    ckpt = {k: v for k, v in src.items()}
    for key, value in changes.items():
        ckpt[key] = value(ckpt[key]) if callable(value) else value
    if rehash and isinstance(ckpt.get("config"), dict):
        ckpt["sha256"] = content_hash(ckpt["config"], ckpt["model"])
    torch.save(ckpt, path)
    return path


def _with_model(**model):
    def edit(cfg):
        cfg = json.loads(json.dumps(cfg))
        cfg["model"].update(model)
        return cfg

    return edit


def _flip_bit_in_tensor_data(src: Path, dst: Path) -> Path:
    """Flip one bit in the stored bytes of a tensor record (past the zip local header)."""
    data = bytearray(src.read_bytes())
    with zipfile.ZipFile(src) as archive:
        info = max((i for i in archive.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    name_len, extra_len = struct.unpack("<HH", data[info.header_offset + 26 : info.header_offset + 30])
    data[info.header_offset + 30 + name_len + extra_len + info.file_size // 2] ^= 0x04
    dst.write_bytes(data)
    return dst


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    d = tmp_path_factory.mktemp("corpus")
    torch.manual_seed(0)
    model = hydranet.build_model(tiny_config())
    save_model(model, d / "tiny.pt")
    ckpt = torch.load(d / "tiny.pt", weights_only=True)
    _flip_bit_in_tensor_data(d / "tiny.pt", d / "flip.pt")
    # a tensor changed and the file re-saved by hand: every CRC is right, the content hash is not
    edited = dict(ckpt, model={**ckpt["model"]})
    name = next(k for k, v in edited["model"].items() if v.is_floating_point())
    edited["model"][name] = edited["model"][name] + 1.0
    torch.save(edited, d / "hash.pt")
    (d / "truncated.pt").write_bytes((d / "tiny.pt").read_bytes()[:5000])
    _craft(ckpt, d / "wide.pt", config=_with_model(width=100000))
    _craft(ckpt, d / "wide_ok_bounds.pt", config=_with_model(width=4000))
    _craft(ckpt, d / "width_mult.pt", config=_with_model(encoder_options={"width_mult": 1000}))

    def classes(value):
        def edit(cfg):
            cfg = json.loads(json.dumps(cfg))
            cfg["tasks"][0]["classes"] = value
            return cfg

        return edit

    _craft(ckpt, d / "classes_float.pt", config=classes(1e9))
    _craft(ckpt, d / "classes_big.pt", config=classes(90000))
    _craft(ckpt, d / "badcfg.pt", config=_with_model(width=-1))
    _craft(ckpt, d / "string_cfg.pt", rehash=False, config=str(d / "cfg.yaml"))
    _craft(ckpt, d / "version.pt", version="1")
    _craft(ckpt, d / "no_model.pt", model={})
    _craft(ckpt, d / "imagenet.pt", config=_with_model(encoder_weights="imagenet"))

    cfg = _train_config()
    (d / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    bad_lr = _train_config(lr=-0.1)
    (d / "bad_lr.yaml").write_text(yaml.safe_dump(bad_lr))
    (d / "a_file").write_text("not a folder")
    (d / "cut.json").write_text('{"metrics": {"segm": {"miou": 0.5')  # results cut short
    # list files: a header typo, and images so that the list is otherwise valid
    rgb = np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    hydranet.data.io.write_png(d / "img.png", rgb)
    hydranet.data.io.write_png(d / "tiny_img.png", rgb[:5])
    (d / "typo.txt").write_text("# image segmentaton depth\nimg.png - -\n")
    typo_cfg = {"data": {"val": {"type": "list", "list": str(d / "typo.txt")}}, "tasks": cfg["tasks"]}
    (d / "typo_eval.yaml").write_text(yaml.safe_dump(typo_cfg))
    train_typo = _train_config()
    train_typo["data"]["train"] = {"type": "list", "list": str(d / "typo.txt")}
    (d / "typo_train.yaml").write_text(yaml.safe_dump(train_typo))
    (d / "ok.txt").write_text("# image segmentation depth\nimg.png - -\n")
    # a run to resume (2 steps), and a run folder for plot
    train(cfg, d / "run", progress=False)
    return d


def _cli(argv, capsys):
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse usage errors
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


# (id, argv with {d} = the corpus folder, text the message must contain)
CASES = [
    # 1. checkpoint integrity: a flipped bit, a wrong content hash, a truncated file, on every path
    ("predict-bitflip", ["predict", "{d}/img.png", "--weights", "{d}/flip.pt", "--out", "{d}/p"], "flip.pt"),
    ("eval-bitflip", ["eval", "--weights", "{d}/flip.pt"], "CRC-32"),
    ("summary-bitflip", ["summary", "--weights", "{d}/flip.pt"], "flip.pt"),
    ("export-bitflip", ["export", "--weights", "{d}/flip.pt", "--out", "{d}/x.onnx"], "flip.pt"),
    ("convert-bitflip", ["convert", "{d}/flip.pt", "{d}/conv.pt"], "flip.pt"),
    ("convert-half-bitflip", ["convert", "{d}/flip.pt", "{d}/conv.pt", "--half"], "CRC-32"),
    ("bench-bitflip", ["bench", "--weights", "{d}/flip.pt"], "flip.pt"),
    ("demo-bitflip", ["demo", "--weights", "{d}/flip.pt", "--out", "{d}/demo.mp4"], "flip.pt"),
    (
        "pseudolabel-bitflip",
        ["pseudolabel", "--teacher", "{d}/flip.pt", "--list", "{d}/ok.txt", "--out", "{d}/pl"],
        "flip.pt",
    ),
    ("predict-hash", ["predict", "{d}/img.png", "--weights", "{d}/hash.pt", "--out", "{d}/p"], "content hash"),
    ("convert-hash", ["convert", "{d}/hash.pt", "{d}/conv.pt", "--half"], "hash.pt"),
    ("eval-hash", ["eval", "--weights", "{d}/hash.pt"], "hash.pt"),
    ("predict-truncated", ["predict", "{d}/img.png", "--weights", "{d}/truncated.pt"], "truncated.pt"),
    ("summary-truncated", ["summary", "--weights", "{d}/truncated.pt"], "truncated.pt"),
    # 2. crafted checkpoints: validated before anything is allocated
    ("predict-width-100000", ["predict", "{d}/img.png", "--weights", "{d}/wide.pt"], "model.width"),
    ("summary-width-4000", ["summary", "--weights", "{d}/wide_ok_bounds.pt"], "weights do not match"),
    ("predict-width-mult-1000", ["predict", "{d}/img.png", "--weights", "{d}/width_mult.pt"], "width_mult"),
    ("eval-classes-1e9", ["eval", "--weights", "{d}/classes_float.pt"], "tasks[0].classes"),
    ("eval-classes-90000", ["eval", "--weights", "{d}/classes_big.pt"], "classes_big.pt"),
    ("convert-bad-config", ["convert", "{d}/badcfg.pt", "{d}/conv.pt"], "model.width"),
    ("convert-half-bad-config", ["convert", "{d}/badcfg.pt", "{d}/conv.pt", "--half"], "badcfg.pt"),
    ("summary-string-config", ["summary", "--weights", "{d}/string_cfg.pt"], "'config' must be a mapping"),
    ("predict-version-text", ["predict", "{d}/img.png", "--weights", "{d}/version.pt"], "version"),
    ("export-no-tensors", ["export", "--weights", "{d}/no_model.pt", "--out", "{d}/x.onnx"], "no_model.pt"),
    # 3. config values: YAML, --set and flags alike
    ("train-lr-text", ["train", "--config", "{d}/cfg.yaml", "--out", "{d}/t", "--set", "train.lr=fast"], "train.lr"),
    ("train-lr-negative-yaml", ["train", "--config", "{d}/bad_lr.yaml", "--out", "{d}/t"], "train.lr"),
    (
        "train-seed-text",
        ["train", "--config", "{d}/cfg.yaml", "--out", "{d}/t", "--set", "train.seed=abc"],
        "train.seed",
    ),
    (
        "train-weight-decay",
        ["train", "--config", "{d}/cfg.yaml", "--out", "{d}/t", "--set", "train.weight_decay=x"],
        "train.weight_decay",
    ),
    (
        "train-workers-negative",
        ["train", "--config", "{d}/cfg.yaml", "--out", "{d}/t", "--set", "train.workers=-1"],
        "train.workers",
    ),
    (
        "train-num-samples-text",
        ["train", "--config", "{d}/cfg.yaml", "--out", "{d}/t", "--set", "data.train.num_samples=ten"],
        "num_samples",
    ),
    ("train-set-bad-yaml", ["train", "--config", "{d}/cfg.yaml", "--out", "{d}/t", "--set", "train.lr=["], "train.lr"),
    (
        "train-sgd-momentum-0",
        [
            "train",
            "--config",
            "{d}/cfg.yaml",
            "--out",
            "{d}/t",
            "--set",
            "train.optimizer=sgd",
            "--set",
            "train.momentum=0",
        ],
        "train.momentum",
    ),
    ("train-device-tpu", ["train", "--config", "{d}/cfg.yaml", "--out", "{d}/t", "--device", "tpu"], "--device"),
    (
        "train-width-100000",
        ["train", "--config", "{d}/cfg.yaml", "--out", "{d}/t", "--set", "model.width=100000"],
        "model.width",
    ),
    (
        "train-plots-text",
        ["train", "--config", "{d}/cfg.yaml", "--out", "{d}/t", "--set", "train.plots=maybe"],
        "train.plots",
    ),
    (
        "train-hflip-2",
        ["train", "--config", "{d}/cfg.yaml", "--out", "{d}/t", "--set", "data.train.transforms={hflip: 2}"],
        "transforms.hflip",
    ),
    (
        "train-rotate-text",
        ["train", "--config", "{d}/cfg.yaml", "--out", "{d}/t", "--set", "data.train.transforms={rotate: abc}"],
        "transforms.rotate",
    ),
    (
        "train-weighting-unknown",
        ["train", "--config", "{d}/cfg.yaml", "--out", "{d}/t", "--weighting", "magic"],
        "loss.weighting",
    ),
    (
        "train-max-skipped-2",
        ["train", "--config", "{d}/cfg.yaml", "--out", "{d}/t", "--set", "train.max_skipped=2"],
        "train.max_skipped",
    ),
    ("train-steps-0", ["train", "--config", "{d}/cfg.yaml", "--out", "{d}/t", "--steps", "0"], "--steps"),
    (
        "train-ignore-index-text",
        [
            "train",
            "--config",
            "{d}/cfg.yaml",
            "--out",
            "{d}/t",
            "--set",
            "tasks=[{name: s, kind: segmentation, classes: 8, ignore_index: x}]",
        ],
        "ignore_index",
    ),
    ("eval-batch-size-0", ["eval", "--weights", "{d}/tiny.pt", "--batch-size", "0"], "--batch-size"),
    ("eval-workers-negative", ["eval", "--weights", "{d}/tiny.pt", "--workers", "-1"], "--workers"),
    ("eval-set-bad-yaml", ["eval", "--weights", "{d}/tiny.pt", "--set", "data.val.num_samples=["], "num_samples"),
    ("eval-num-samples-text", ["eval", "--weights", "{d}/tiny.pt", "--set", "data.val.num_samples=ten"], "num_samples"),
    ("summary-batch-negative", ["summary", "--config", "{d}/cfg.yaml", "--batch", "-2"], "--batch"),
    ("summary-config-is-checkpoint", ["summary", "--config", "{d}/tiny.pt"], "tiny.pt"),
    ("summary-size-zero", ["summary", "--config", "{d}/cfg.yaml", "--size", "0x5"], "--size"),
    (
        "predict-max-depth-negative",
        ["predict", "{d}/img.png", "--weights", "{d}/tiny.pt", "--max-depth", "-1"],
        "--max-depth",
    ),
    ("predict-device-tpu", ["predict", "{d}/img.png", "--weights", "{d}/tiny.pt", "--device", "tpu"], "--device"),
    ("demo-max-depth-negative", ["demo", "--weights", "{d}/tiny.pt", "--max-depth", "-1"], "--max-depth"),
    ("demo-alpha-5", ["demo", "--weights", "{d}/tiny.pt", "--alpha", "5"], "--alpha"),
    ("demo-batch-0", ["demo", "--weights", "{d}/tiny.pt", "--batch", "0"], "--batch"),
    ("bench-reps-0", ["bench", "--config", "{d}/cfg.yaml", "--reps", "0"], "--reps"),
    ("bench-threads-100000", ["bench", "--config", "{d}/cfg.yaml", "--threads", "100000"], "--threads"),
    ("bench-threads-overflow", ["bench", "--config", "{d}/cfg.yaml", "--threads", "9" * 27], "--threads"),
    ("bench-loader-workers", ["bench", "--config", "{d}/cfg.yaml", "--train", "--loader-workers", "0,100000"], "256"),
    ("demo-threads-257", ["demo", "--threads", "257"], "--threads"),
    ("bench-device-tpu", ["bench", "--config", "{d}/cfg.yaml", "--device", "tpu"], "--device"),
    ("export-opset-99", ["export", "--weights", "{d}/tiny.pt", "--out", "{d}/x.onnx", "--opset", "99"], "--opset"),
    ("export-opset-12", ["export", "--weights", "{d}/tiny.pt", "--out", "{d}/x.onnx", "--opset", "12"], "--opset"),
    (
        "pseudolabel-depth-scale-0",
        ["pseudolabel", "--teacher", "{d}/tiny.pt", "--list", "{d}/ok.txt", "--out", "{d}/pl", "--depth-scale", "0"],
        "--depth-scale",
    ),
    (
        "pseudolabel-depth-scale-negative",
        ["pseudolabel", "--teacher", "{d}/tiny.pt", "--list", "{d}/ok.txt", "--out", "{d}/pl", "--depth-scale", "-1"],
        "--depth-scale",
    ),
    (
        "pseudolabel-confidence-2",
        ["pseudolabel", "--teacher", "{d}/tiny.pt", "--list", "{d}/ok.txt", "--out", "{d}/pl", "--confidence", "2"],
        "--confidence",
    ),
    # list-file headers
    ("eval-list-header-typo", ["eval", "--weights", "{d}/tiny.pt", "--config", "{d}/typo_eval.yaml"], "segmentaton"),
    ("train-list-header-typo", ["train", "--config", "{d}/typo_train.yaml", "--out", "{d}/t"], "typo.txt"),
    (
        "pseudolabel-list-header-typo",
        ["pseudolabel", "--teacher", "{d}/tiny.pt", "--list", "{d}/typo.txt", "--out", "{d}/pl"],
        "segmentaton",
    ),
    # 4. outputs that cannot be written
    ("export-out-under-proc", ["export", "--weights", "{d}/tiny.pt", "--out", PROC + "/x.onnx"], PROC),
    ("export-out-parent-is-file", ["export", "--weights", "{d}/tiny.pt", "--out", "{d}/a_file/x.onnx"], "a_file"),
    ("export-out-dev-full", ["export", "--weights", "{d}/tiny.pt", "--out", "/dev/full"], "/dev/full"),
    (
        "export-out-is-folder",
        ["export", "--weights", "{d}/tiny.pt", "--out", "{d}", "--format", "torchscript"],
        "a folder",
    ),
    ("predict-out-under-proc", ["predict", "{d}/img.png", "--weights", "{d}/tiny.pt", "--out", PROC], PROC),
    ("predict-out-is-file", ["predict", "{d}/img.png", "--weights", "{d}/tiny.pt", "--out", "{d}/a_file"], "a_file"),
    ("train-out-under-proc", ["train", "--config", "{d}/cfg.yaml", "--out", PROC + "/run"], PROC),
    ("train-out-parent-is-file", ["train", "--config", "{d}/cfg.yaml", "--out", "{d}/a_file/run"], "a_file"),
    ("convert-dst-under-proc", ["convert", "{d}/tiny.pt", PROC + "/c.pt", "--half"], PROC),
    ("plot-out-under-proc", ["plot", "{d}/run", "--out", PROC], PROC),
    ("demo-out-under-proc", ["demo", "--weights", "{d}/tiny.pt", "--out", PROC + "/demo.mp4"], PROC),
    ("summary-json-dev-full", ["summary", "--config", "{d}/cfg.yaml", "--json", "/dev/full"], "/dev/full"),
    ("eval-json-parent-is-file", ["eval", "--weights", "{d}/tiny.pt", "--json", "{d}/a_file/r.json"], "a_file"),
    ("bench-json-under-proc", ["bench", "--config", "{d}/cfg.yaml", "--json", PROC + "/b.json"], PROC),
    (
        "pseudolabel-out-under-proc",
        ["pseudolabel", "--teacher", "{d}/tiny.pt", "--list", "{d}/ok.txt", "--out", PROC],
        PROC,
    ),
    ("plot-not-a-run", ["plot", "{d}"], "log.jsonl"),
    ("affinity-missing-config", ["affinity", "--config", "{d}/missing.yaml"], "missing.yaml"),
    ("compare-truncated-results", ["compare", "{d}/cut.json", "--baseline", "{d}/cut.json"], "cut.json"),
    (
        "compare-json-dev-full",
        ["compare", "{d}/cut.json", "--baseline", "{d}/cut.json", "--json", "/dev/full"],
        "/dev/full",
    ),
    ("serve-port-0", ["serve", "--port", "0"], "--port"),
    ("serve-max-video-frames-0", ["serve", "--max-video-frames", "0"], "--max-video-frames"),
    ("serve-device-tpu", ["serve", "--device", "tpu"], "--device"),
    # 5. resume with another config or --steps
    (
        "train-resume-changed-lr",
        ["train", "--config", "{d}/cfg.yaml", "--out", "{d}/run", "--resume", "--set", "train.lr=0.5"],
        "train.lr: 0.001 -> 0.5",
    ),
    (
        "train-resume-changed-steps",
        ["train", "--config", "{d}/cfg.yaml", "--out", "{d}/run", "--resume", "--steps", "4"],
        "train.steps: 2 -> 4",
    ),
    (
        "train-allow-changes-alone",
        ["train", "--config", "{d}/cfg.yaml", "--out", "{d}/t", "--allow-changes"],
        "--allow-changes",
    ),
    (
        "train-resume-damaged",
        ["train", "--config", "{d}/cfg.yaml", "--out", "{d}/run", "--resume", "{d}/flip.pt"],
        "flip.pt",
    ),
]


def test_corpus_covers_every_command_and_is_large():
    assert len(CASES) >= 60
    commands = {argv[0] for _, argv, _ in CASES}
    assert commands == set(COMMANDS)


@pytest.mark.parametrize(
    "argv,expected", [(argv, expected) for _, argv, expected in CASES], ids=[case_id for case_id, _, _ in CASES]
)
def test_bad_input_is_a_clear_error(corpus, capsys, argv, expected, one_thread, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # default output folders (e.g. predict's) land here, not in the checkout
    before = sorted(p.name for p in corpus.rglob("*.tmp"))
    code, out, err = _cli([a.replace("{d}", str(corpus)) for a in argv], capsys)
    assert code == 2, (out, err)
    assert "Traceback" not in err and "Traceback" not in out
    assert expected.replace("{d}", str(corpus)) in err, err
    assert sorted(p.name for p in corpus.rglob("*.tmp")) == before  # nothing half-written left behind
    assert not (corpus / "conv.pt").exists()  # convert never writes a copy of a bad file


def test_checkpoints_carry_a_verified_hash(corpus):
    ckpt = read_checkpoint(corpus / "tiny.pt")
    assert ckpt["sha256"] == content_hash(ckpt["config"], ckpt["model"])
    with pytest.raises(CheckpointError, match="content hash mismatch"):
        load_model(corpus / "hash.pt")
    # a bit flip is caught by the zip's CRC before torch.load reads the damaged tensor
    with pytest.raises(CheckpointError, match=r"flip\.pt.*CRC-32"):
        load_model(corpus / "flip.pt")


def test_old_checkpoint_without_hash_still_loads(corpus, tmp_path):
    ckpt = torch.load(corpus / "tiny.pt", weights_only=True)
    del ckpt["sha256"]
    torch.save(ckpt, tmp_path / "old.pt")
    assert load_model(tmp_path / "old.pt").config["model"]["width"] == 16
    bundled = bundled_weights_path()  # written before content hashes existed
    if bundled.is_file():
        assert "sha256" not in torch.load(bundled, weights_only=True)
        load_model(bundled)


def test_checkpoint_encoder_weights_are_ignored_not_downloaded(corpus, monkeypatch):
    import hydranet.models.encoders.mobilenet as encoders  # the tiny model's mobilenet_v2

    real, asked = encoders.torchvision_weights, []

    def spy(builder, weights_enum, weights, progress, **kwargs):
        asked.append(weights)
        return real(builder, weights_enum, None, progress, **kwargs)

    monkeypatch.setattr(encoders, "torchvision_weights", spy)
    model = load_model(corpus / "imagenet.pt")
    assert model.config["model"]["encoder_weights"] is None
    assert asked and set(asked) == {None}  # never "imagenet"
    ref = load_model(corpus / "tiny.pt")
    for key, value in ref.state_dict().items():
        assert torch.equal(value, model.state_dict()[key]), key


def test_crafted_width_is_refused_before_allocating(corpus, monkeypatch):
    """width 4000 is within bounds; the meta-device shape check must refuse it before the real build."""
    import hydranet.models as models

    real_build, devices = models.build_model, []

    def spy(cfg, progress=True):
        devices.append(torch.empty(0).device.type)  # the default device while building
        return real_build(cfg, progress)

    monkeypatch.setattr(models, "build_model", spy)
    with pytest.raises(CheckpointError, match="weights do not match"):
        load_model(corpus / "wide_ok_bounds.pt")
    assert devices == ["meta"]


def test_unwritable_output_is_one_clear_error(tmp_path, monkeypatch):
    from hydranet.data import io

    with pytest.raises(OutputError, match="a_file"):
        (tmp_path / "a_file").write_text("x")
        io.writable_dir(tmp_path / "a_file" / "sub")
    with pytest.raises(OutputError, match="not a regular file"):
        io.write_bytes_atomic("/dev/full", b"x")

    # a full disk: the write fails after the temporary file exists; it is removed
    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(io.os, "fsync", full)
    with pytest.raises(OutputError, match=r"x\.pt: cannot write: No space left on device"):
        hydranet.checkpoint.atomic_save({"a": 1}, tmp_path / "x.pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]


def test_silent_wrong_results_are_errors(corpus):
    from hydranet.tools.pseudolabel import pseudolabel

    for kwargs, field in (
        ({"depth_scale": 0}, "--depth-scale"),
        ({"depth_scale": -1}, "--depth-scale"),
        ({"confidence": 2}, "--confidence"),
    ):
        with pytest.raises(ConfigError, match=field):
            pseudolabel(corpus / "tiny.pt", corpus / "ok.txt", corpus / "pl", progress=False, **kwargs)
    from hydranet.data.listfile import ListDataset
    from hydranet.errors import DataError
    from hydranet.tasks import parse_tasks

    with pytest.raises(DataError, match=r"typo\.txt.*'segmentaton'.*valid columns: image, segmentation"):
        ListDataset(corpus / "typo.txt", parse_tasks(tiny_config()["tasks"]))


def test_tiny_images_predict_and_plot_truncated_log(corpus, capsys, tmp_path, one_thread):
    code, out, err = _cli(
        ["predict", corpus / "tiny_img.png", "--weights", corpus / "tiny.pt", "--out", tmp_path / "p", "--plain"],
        capsys,
    )
    assert code == 0, err
    assert list((tmp_path / "p").glob("tiny_img*depth*.png"))
    frames = tmp_path / "frames"
    frames.mkdir()
    (frames / "0.png").write_bytes((corpus / "tiny_img.png").read_bytes())
    code, out, err = _cli(
        [
            "demo",
            "--input",
            frames,
            "--weights",
            corpus / "tiny.pt",
            "--out",
            tmp_path / "d.mp4",
            "--plain",
            "--no-progress",
        ],
        capsys,
    )
    assert code == 0, err
    assert (tmp_path / "d.mp4").stat().st_size > 0
    run = tmp_path / "run"
    run.mkdir()
    lines = (corpus / "run" / "log.jsonl").read_text()
    (run / "log.jsonl").write_text(lines + lines.splitlines()[-1][:17])  # a line cut short by a crash
    with pytest.warns(UserWarning, match="unreadable line"):
        code, out, err = _cli(["plot", run], capsys)
    assert code == 0 and "training.png" in out


def test_resume_logs_each_step_once_and_allow_changes_applies(corpus, tmp_path, capsys):
    run = tmp_path / "run"
    cfg = corpus / "cfg.yaml"
    assert _cli(["train", "--config", cfg, "--out", run, "--no-progress"], capsys)[0] == 0
    # a killed run's leftovers: records past the checkpoint's step and a temporary file
    with open(run / "log.jsonl", "a") as f:
        f.write(json.dumps({"type": "step", "step": 3, "total": 1.0}) + "\n")
    (run / ".last.pt.abc123.tmp").write_bytes(b"PK partial")
    code, out, err = _cli(
        [
            "train",
            "--config",
            cfg,
            "--out",
            run,
            "--resume",
            "--steps",
            "4",
            "--allow-changes",
            "--set",
            "train.lr=0.5",
            "--no-progress",
        ],
        capsys,
    )
    assert code == 0, err
    steps = [
        json.loads(line)["step"]
        for line in (run / "log.jsonl").read_text().splitlines()
        if json.loads(line)["type"] == "step"
    ]
    assert steps == [1, 2, 3, 4]
    csv_steps = [int(r.split(",")[0]) for r in (run / "steps.csv").read_text().splitlines()[1:]]
    assert csv_steps == [1, 2, 3, 4]
    assert not list(run.glob("*.tmp"))
    recorded = yaml.safe_load((run / "config.yaml").read_text())
    assert recorded["train"]["lr"] == 0.5 and recorded["train"]["steps"] == 4
    # the new lr and steps apply from step 3: the logged (encoder group) lr is 0.5 x 0.1 x poly(3 of 4)
    lr3 = [
        json.loads(line)["lr"]
        for line in (run / "log.jsonl").read_text().splitlines()
        if json.loads(line)["type"] == "step" and json.loads(line)["step"] == 3
    ]
    assert lr3 == [pytest.approx(0.5 * 0.1 * (1 - 3 / 4) ** 0.9)]
    groups = read_checkpoint(run / "last.pt")["optimizer"]["param_groups"]
    assert {g["name"]: g["initial_lr"] for g in groups}["decoder"] == 0.5


def test_mostly_skipped_run_is_not_completed(corpus, tmp_path, capsys, monkeypatch):
    import hydranet.training.trainer as trainer_module

    real = trainer_module.compute_losses

    def poisoned(outputs, batch, tasks, *args, **kwargs):  # the trainer also passes its reduction
        return {k: v * float("nan") for k, v in real(outputs, batch, tasks, *args, **kwargs).items()}

    monkeypatch.setattr(trainer_module, "compute_losses", poisoned)
    code, out, err = _cli(
        [
            "train",
            "--config",
            corpus / "cfg.yaml",
            "--out",
            tmp_path / "run",
            "--no-progress",
            "--set",
            "train.on_nan=skip",
            "--steps",
            "3",
        ],
        capsys,
    )
    assert code == 1
    assert "too_many_skipped" in out and "3 of 3 updates" in err


# Imports torch and Hydranet once, then forks one training process per line it reads (its pid
# is printed back): each trial is a real process killed with SIGKILL, without paying the
# seconds of imports every time.
ZYGOTE = """
import os, sys
import torch
from hydranet.training import train
for line in sys.stdin:
    cfg, out, resume = line.split()
    pid = os.fork()
    if pid == 0:
        torch.set_num_threads(1)
        try:
            train(cfg, out, resume=resume == "1", progress=False)
        finally:
            os._exit(0)
    print(pid, flush=True)
    os.waitpid(pid, 0)
"""


def test_kill_9_during_checkpoint_writes(tmp_path):
    """SIGKILL a training run while it writes checkpoints, again and again: last.pt always
    loads, and the next start removes the temporary files the kills left."""
    cfg = _train_config(steps=100000, ckpt_every=1)
    cfg["data"]["train"]["size"] = [16, 16]
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    zygote = subprocess.Popen(
        [sys.executable, "-c", ZYGOTE], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    rng = random.Random(0)
    kills, during_write, stale, cleaned, t0 = 0, 0, set(), 0, time.time()

    def temporaries():
        return {n for n in os.listdir(run) if n.endswith(".tmp")} if run.is_dir() else set()

    def alive(pid):
        try:
            os.kill(pid, 0)
            return True
        except ProcessLookupError:
            return False

    try:
        while kills < 5 and time.time() - t0 < 45:
            resume = (run / "last.pt").is_file()
            zygote.stdin.write(f"{tmp_path / 'cfg.yaml'} {run} {int(resume)}\n")
            zygote.stdin.flush()
            pid = int(zygote.stdout.readline())
            t_start = time.time()
            seen_tmp, started, deadline = False, None, time.time() + 30
            before = (run / "last.pt").stat().st_mtime_ns if resume else None
            delay = rng.uniform(0, 0.002)
            while time.time() < deadline and alive(pid):
                names = set(os.listdir(run)) if run.is_dir() else set()
                if "last.pt" in names and any(n.startswith(".last.pt.") and n.endswith(".tmp") for n in names - stale):
                    seen_tmp = True  # a write over an existing last.pt is under way: kill it within 2 ms
                    time.sleep(delay)
                    break
                if started is None and "last.pt" in names and (run / "last.pt").stat().st_mtime_ns != before:
                    started = time.time()  # this process has written a checkpoint
                    deadline = min(deadline, started + 3)  # (if no write is caught, kill between steps)
                time.sleep(0.0002)
            assert alive(pid), "the training process ended by itself"
            os.kill(pid, signal.SIGKILL)
            kills += 1
            during_write += seen_tmp
            time.sleep(0.05)  # the zygote reaps it
            left = temporaries()
            cleaned += bool(stale) and not (stale & left)  # the start after a kill removed its leftovers
            stale = left
            ckpt = read_checkpoint(run / "last.pt")  # always a whole, verified checkpoint
            assert ckpt["step"] >= 1
            print(f"trial {kills}: {time.time() - t_start:.1f} s, step {ckpt['step']}")
    finally:
        zygote.stdin.close()
        zygote.wait(timeout=30)
    print(f"{kills} kills, {during_write} during a checkpoint write, {cleaned} starts cleaned leftovers")
    assert kills >= 5 and during_write >= 3 and cleaned >= 1
    load_model(run / "last.pt")
    Trainer(str(tmp_path / "cfg.yaml"), run, resume=True, progress=False)  # the next start
    assert not temporaries()
