"""Training: learning on the synthetic set, exact resume, DDP, crash safety, NaN, signals, CLI."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import hydranet
from hydranet.checkpoint import read_checkpoint
from hydranet.config import load_config
from hydranet.errors import ConfigError
from hydranet.tools.evaluate import evaluate_checkpoint
from hydranet.training import Trainer, TrainingError, apply_overrides, train

# The shipped default config, shrunk to a tiny network and 64x64 scenes for a 2-core CPU.
TINY = [
    "model.encoder_options={width_mult: 0.35}",
    "model.width=16",
    "data.train.size=[64,64]",
    "data.val.size=[64,64]",
    "data.val.num_samples=32",
    "data.train.num_samples=256",
    "train.batch_size=8",
    "train.warmup_steps=5",
    "train.plots=false",
    "train.tensorboard=false",
    "train.log_every=1",
]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}


def tiny_cfg(*extra):
    return load_config(apply_overrides(load_config("synthetic"), TINY + list(extra)))


def test_training_learns_on_synthetic_scenes(tmp_path):
    cfg = tiny_cfg("train.steps=80", "train.val_every=80", "train.ckpt_every=80", "train.lr=0.005")
    torch.manual_seed(0)
    hydranet.save_model(hydranet.build_model(cfg), tmp_path / "untrained.pt")
    before = evaluate_checkpoint(tmp_path / "untrained.pt", progress=False, fast=False)["metrics"]
    summary = train(cfg, tmp_path / "run", progress=False)
    after = summary["validation"]["metrics"]
    assert summary["status"] == "completed" and summary["step"] == 80
    assert after["segm"]["miou"] > before["segm"]["miou"] + 0.1
    assert after["depth"]["rmse"] < 0.7 * before["depth"]["rmse"]
    # sigma^2 and effective weights are logged every step
    steps = [json.loads(l) for l in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    steps = [r for r in steps if r["type"] == "step"]
    assert len(steps) == 80 and set(steps[-1]["sigma2"]) == {"segm", "depth", "normals", "count", "dominant"}
    assert steps[-1]["sigma2"] != steps[0]["sigma2"]
    # the same figures come back from the files alone
    again = evaluate_checkpoint(tmp_path / "run" / "last.pt", progress=False, fast=False)["metrics"]
    assert again["segm"]["miou"] == pytest.approx(after["segm"]["miou"], abs=1e-6)


def test_resume_is_exact(tmp_path):
    cfg = tiny_cfg(
        "train.steps=6",
        "train.val_every=100",
        "train.ckpt_every=3",
        "data.train.num_samples=32",
        "data.train.transforms={hflip: 0.5, color_jitter: 0.2}",
    )
    train(cfg, tmp_path / "straight", progress=False)
    paused = train(cfg, tmp_path / "split", progress=False, until=3)
    assert paused["status"] == "paused" and read_checkpoint(tmp_path / "split" / "last.pt")["step"] == 3
    summary = train(cfg, tmp_path / "split", resume=True, progress=False)
    assert summary["step"] == 6
    a = read_checkpoint(tmp_path / "straight" / "last.pt")
    b = read_checkpoint(tmp_path / "split" / "last.pt")
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    for key, value in a["weighting"].items():
        assert torch.equal(value, b["weighting"][key]), key
    assert a["step"] == b["step"] == 6


def _cli(*args, **kw):
    return subprocess.run(
        [sys.executable, "-m", "hydranet", *args],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=kw.get("timeout", 300),
    )


def _write_cfg(tmp_path, *extra):
    path = tmp_path / "cfg.yaml"
    hydranet.save_config(tiny_cfg(*extra), path)
    return path


def test_ddp_two_processes_gloo(tmp_path):
    cfg = _write_cfg(
        tmp_path,
        "train.steps=3",
        "train.val_every=3",
        "train.ckpt_every=3",
        "data.train.num_samples=64",
        "train.batch_size=4",
        "data.val.num_samples=8",
    )
    out = tmp_path / "ddp"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            "2",
            "--master_port",
            "29533",
            "-m",
            "hydranet",
            "train",
            "--config",
            str(cfg),
            "--out",
            str(out),
            "--no-progress",
        ],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    ckpt = read_checkpoint(out / "last.pt")
    assert ckpt["step"] == 3
    assert (out / "best.pt").is_file()
    # only rank 0 writes logs: one record per step, not two
    steps = [l for l in (out / "log.jsonl").read_text().splitlines() if '"type": "step"' in l]
    assert len(steps) == 3


def test_crash_while_writing_checkpoint_keeps_previous(tmp_path):
    cfg = _write_cfg(
        tmp_path, "train.steps=4", "train.val_every=100", "train.ckpt_every=1", "data.train.num_samples=64"
    )
    out = tmp_path / "run"
    # The third save writes a few bytes then kills the process: a crash mid-write.
    script = f"""
import os, torch, hydranet.checkpoint as ck
from hydranet.training import train
real_save, calls = torch.save, []
def dying_save(obj, f, *a, **k):
    calls.append(1)
    if len(calls) == 3:
        f.write(b"PK\\x03\\x04 partial")
        f.flush()
        os._exit(9)
    return real_save(obj, f, *a, **k)
ck.torch.save = dying_save
train({str(cfg)!r}, {str(out)!r}, progress=False)
"""
    proc = subprocess.run([sys.executable, "-c", script], env=ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 9, proc.stderr[-2000:]
    ckpt = read_checkpoint(out / "last.pt")  # the previous checkpoint still loads
    assert ckpt["step"] == 2
    hydranet.load_model(out / "last.pt")
    summary = train(str(cfg), out, resume=True, progress=False)  # and training resumes from it
    assert summary["step"] == 4


def test_nan_loss_stops_naming_task_and_step(tmp_path):
    cfg = tiny_cfg("train.steps=5", "train.val_every=100", "train.ckpt_every=1", "data.train.num_samples=64")
    trainer = Trainer(cfg, tmp_path / "run", progress=False)
    real_forward = trainer.model.forward

    def poisoned(images, upsample=True):
        out = real_forward(images, upsample)
        if trainer.step == 2:
            out["depth"] = out["depth"] * float("nan")
        return out

    trainer.model.forward = poisoned
    with pytest.raises(TrainingError, match=r"'depth'.*step 3"):
        trainer.fit()
    ckpt = read_checkpoint(tmp_path / "run" / "last.pt")
    assert ckpt["step"] == 2
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())
    # resumed, the failure also names the file the weights came from (a damaged file is a likely cause)
    cfg = tiny_cfg("train.steps=3", "train.val_every=100", "train.ckpt_every=1", "data.train.num_samples=64")
    again = Trainer(cfg, tmp_path / "again", progress=False, resume=tmp_path / "run" / "last.pt", allow_changes=True)
    again.model.forward = lambda images, upsample=True: {k: v * float("nan") for k, v in real_forward(images).items()}
    with pytest.raises(TrainingError, match=r"step 3; the weights came from --resume .*last.pt"):
        again.fit()


def test_nan_loss_can_skip_the_update(tmp_path):
    cfg = tiny_cfg(
        "train.steps=4", "train.val_every=100", "train.ckpt_every=100", "train.on_nan=skip", "data.train.num_samples=64"
    )
    trainer = Trainer(cfg, tmp_path / "run", progress=False)
    real_forward = trainer.model.forward
    trainer.model.forward = lambda images, upsample=True: {
        k: (v * float("inf") if trainer.step == 1 and k == "segm" else v)
        for k, v in real_forward(images, upsample).items()
    }
    summary = trainer.fit()
    assert summary["status"] == "completed" and summary["skipped_steps"] == 1


def test_sigterm_saves_and_stops(tmp_path):
    cfg = _write_cfg(tmp_path, "train.steps=10000", "train.val_every=100000", "train.ckpt_every=100000")
    out = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "hydranet", "train", "--config", str(cfg), "--out", str(out), "--no-progress"],
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 240
    while time.time() < deadline:
        log = out / "log.jsonl"
        if log.is_file() and log.read_text().count('"type": "step"') >= 3:
            break
        time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    ckpt = read_checkpoint(out / "last.pt")
    assert 3 <= ckpt["step"] < 10000


def test_cli_flags_of_the_uncertainty_trainer(tmp_path):
    import cv2
    import numpy as np

    rng = np.random.default_rng(0)
    records = []
    for i in range(8):
        cv2.imwrite(str(tmp_path / f"{i}.png"), rng.integers(0, 255, (48, 48, 3), dtype=np.uint8))
        rec = {
            "image": f"{i}.png",
            "company": ["acme", "zenith"][i % 2],
            "model": i % 3,
            "diameter": 4.0 + 0.1 * i,
            "length": 30.0 + i,
        }
        if i == 5:
            del rec["diameter"]  # a missing target
        records.append(rec)
    (tmp_path / "train.json").write_text(json.dumps(records))
    (tmp_path / "val.json").write_text(json.dumps(records[:4]))
    out = tmp_path / "run"
    proc = _cli(
        "train",
        "--train_json",
        str(tmp_path / "train.json"),
        "--val_json",
        str(tmp_path / "val.json"),
        "--use_uncertainty_weighting",
        "true",
        "--gradient_normalization",
        "true",
        "--initial_log_vars",
        "0.5,0.5,0.5,0.5",
        "--steps",
        "2",
        "--out",
        str(out),
        "--no-progress",
        "--set",
        "model.encoder_weights=null",
        "--set",
        "model.width=16",
        "--set",
        "train.batch_size=4",
        "--set",
        "data.train.transforms.size=[48,48]",
        "--set",
        "data.val.transforms.size=[48,48]",
        "--set",
        "train.plots=false",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    ckpt = read_checkpoint(out / "last.pt")
    tasks = {t["name"]: t for t in ckpt["config"]["tasks"]}
    assert tasks["company"]["kind"] == "classification" and tasks["company"]["class_names"] == ["acme", "zenith"]
    assert tasks["model"]["classes"] == 3 and tasks["diameter"]["kind"] == "regression"
    assert ckpt["config"]["loss"]["gradient_normalization"] is True
    assert ckpt["config"]["loss"]["initial_log_vars"] == [0.5, 0.5, 0.5, 0.5]
    log_vars = [v for k, v in ckpt["weighting"].items()]
    assert len(log_vars) == 4 and all(abs(float(v) - 0.5) < 0.1 for v in log_vars)
    steps = [json.loads(l) for l in (out / "log.jsonl").read_text().splitlines() if '"step"' in l]
    assert all(n <= 1.0 + 1e-5 for r in steps if "head_grad_norm" in r for n in r["head_grad_norm"].values()) or any(
        "head_grad_norm" in r for r in steps
    )


def test_eval_cli_defaults_to_synthetic_validation(tmp_path):
    cfg = tiny_cfg()
    hydranet.save_model(hydranet.build_model(cfg), tmp_path / "m.pt")
    proc = _cli(
        "eval",
        "--weights",
        str(tmp_path / "m.pt"),
        "--json",
        str(tmp_path / "r.json"),
        "--set",
        "data.val.num_samples=8",
        "--no-progress",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads((tmp_path / "r.json").read_text())
    assert results["samples"] == 8
    assert set(results["metrics"]) == {"segm", "depth", "normals", "count", "dominant"}
    assert "miou" in results["metrics"]["segm"] and "rmse" in results["metrics"]["depth"]
    bad = _cli("eval", "--weights", str(tmp_path / "missing.pt"))
    assert bad.returncode == 2 and "missing.pt" in bad.stderr


BUNDLED = Path(__file__).resolve().parents[1] / "hydranet" / "assets" / "hydranet_synthetic.pt"


@pytest.mark.skipif(not BUNDLED.is_file(), reason="bundled checkpoint not in this checkout")
def test_bundled_checkpoint_reproduces_its_stated_figures():
    # Stated in weights/README.md: synthetic validation set (128 scenes, 120x160, seed 0).
    results = evaluate_checkpoint(BUNDLED, progress=False)
    assert results["samples"] == 128
    m = results["metrics"]
    assert m["segm"]["miou"] == pytest.approx(0.767, abs=0.005)
    assert m["depth"]["abs_rel"] == pytest.approx(0.149, abs=0.003)
    assert m["depth"]["rmse"] == pytest.approx(0.640, abs=0.01)  # per image (0.680 pooled over pixels)
    assert m["depth"]["average"] == "image"


# --- validation loss, monitor, metric names, weighting hooks, BatchNorm options -------------------


def test_validation_loss_does_not_depend_on_the_batch_size(one_thread):
    from torch.utils.data import DataLoader

    from hydranet.data import build_dataset, make_collate
    from hydranet.evaluation import evaluate
    from hydranet.tasks import parse_tasks

    cfg = tiny_cfg("data.val.num_samples=6", "data.val.size=[32,32]")
    tasks = parse_tasks(cfg["tasks"])
    torch.manual_seed(0)
    model = hydranet.build_model(cfg).eval()
    val = build_dataset(cfg["data"]["val"], tasks, train=False)
    results = [evaluate(model, DataLoader(val, batch_size=b, collate_fn=make_collate(tasks)), tasks) for b in (1, 4, 6)]
    assert set(results[0]["loss"]) == {"segm", "depth", "normals", "count", "dominant"}
    for other in results[1:]:
        for task, value in results[0]["loss"].items():
            # a mean of per-batch means would give batch 4 (batches of 4 and 2) other values
            assert other["loss"][task] == pytest.approx(value, rel=1e-5), task


def test_monitor_naming_a_validation_set_needs_named_sets(tmp_path):
    # found by `make fuzz`: nyudkitti.yaml without data.val gave an error naming only train.monitor
    with pytest.raises(ConfigError, match=r"'nyud/segm/miou' reads as '<set>/<task>/<metric>', but data.val names"):
        Trainer(tiny_cfg("train.monitor=nyud/segm/miou", "train.steps=1"), tmp_path / "run", progress=False)


def test_monitor_per_output_metric_keeps_the_lowest_error(tmp_path, one_thread):
    trainer = Trainer(tiny_cfg("train.monitor=count/mae/0", "train.steps=1"), tmp_path / "run", progress=False)
    errors = iter([2.0, 1.0, 3.0])
    trainer.validate = lambda: {"metrics": {"count": {"mae/0": next(errors)}}, "loss": {}}
    saved = []
    trainer._save = lambda name, state=None: saved.append((name, trainer.step))
    for step in (1, 2, 3):
        trainer.step = step
        trainer._validate_and_keep_best(None)
    assert trainer.best == 1.0 and saved == [("best.pt", 1), ("best.pt", 2)]  # not the worst (3.0)


def test_unknown_metric_names_are_config_errors_at_start(tmp_path, one_thread):
    cfg = tiny_cfg()
    cfg["tasks"][0]["metrics"] = ["miou", "bogus"]
    with pytest.raises(ConfigError, match=r"task 'segm'.*'bogus'"):
        Trainer(cfg, tmp_path / "a", progress=False)
    with pytest.raises(ConfigError, match=r"train.monitor.*'depth'.*'accuracy'"):
        Trainer(tiny_cfg("train.monitor=depth/accuracy"), tmp_path / "b", progress=False)


def test_trainer_calls_the_weighting_hooks(tmp_path, monkeypatch, one_thread):
    from hydranet.losses import EqualWeighting, weighting

    calls = {"before_backward": [], "epoch_end": []}

    class Recording(EqualWeighting):
        def before_backward(self, losses, shared_params, grad_scale=1.0):
            calls["before_backward"].append((set(losses), len(shared_params), grad_scale))

        def epoch_end(self, mean_losses):
            calls["epoch_end"].append(dict(mean_losses))

    monkeypatch.setitem(weighting.STRATEGIES, "equal", Recording)
    cfg = tiny_cfg(
        "loss.weighting=equal",
        "train.steps=4",
        "data.train.num_samples=4",
        "train.batch_size=2",
        "data.train.size=[32,32]",
        "data.train.transforms={size: [32, 32]}",
        "data.val.num_samples=2",
        "train.val_every=100",
        "train.ckpt_every=100",
    )
    train(cfg, tmp_path / "run", progress=False)
    assert [c[1:] for c in calls["before_backward"]] == [(1, 1.0)] * 4
    assert len(calls["epoch_end"]) == 2  # 4 samples / batch 2: two steps per epoch
    assert set(calls["epoch_end"][0]) == {"segm", "depth", "normals", "count", "dominant"}


def test_freeze_bn_keeps_running_statistics(tmp_path, one_thread):
    cfg = tiny_cfg(
        "train.freeze_bn=true",
        "train.steps=2",
        "train.val_every=1",
        "train.ckpt_every=100",
        "data.train.num_samples=4",
        "train.batch_size=2",
        "data.train.size=[32,32]",
        "data.train.transforms={size: [32, 32]}",
        "data.val.num_samples=2",
        "data.val.size=[32,32]",
    )
    trainer = Trainer(cfg, tmp_path / "run", progress=False)
    bns = [m for m in trainer.model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    before = [m.running_mean.clone() for m in bns]
    trainer.fit()  # validates after each step, then goes back to training mode
    assert trainer.model.training and not any(m.training for m in bns)
    assert all(torch.equal(b, m.running_mean) for b, m in zip(before, bns))
    with pytest.raises(ConfigError, match="sync_bn and train.freeze_bn"):
        Trainer(tiny_cfg("train.freeze_bn=true", "train.sync_bn=true"), tmp_path / "x", progress=False)


def test_sync_bn_needs_cuda_under_torchrun():
    from hydranet.training.batchnorm import prepare_batchnorm
    from hydranet.training.distributed import DistContext

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    cfg = {"sync_bn": True, "freeze_bn": False}
    with pytest.raises(ConfigError, match="sync_bn.*CUDA"):  # one process on CPU: not silently ignored
        prepare_batchnorm(model, cfg, DistContext(), torch.device("cpu"))
    with pytest.raises(ConfigError, match="sync_bn.*CUDA"):
        prepare_batchnorm(model, cfg, DistContext(rank=0, world_size=2), torch.device("cpu"))
