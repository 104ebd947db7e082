"""torchrun with N processes trains the model one process trains on the global batch.

The real two-process run (gloo on the CPU, launched by torchrun through ``hydranet train``)
is compared with one process on the same global batch: label dropout, scale augmentation
(unequal valid-pixel counts per rank) and frozen BatchNorm, for uncertainty weighting and
for DWA over three epochs.
"""

import importlib.util
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import hydranet
from hydranet.checkpoint import read_checkpoint
from hydranet.config import load_config
from hydranet.training import apply_overrides, train

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}

SMALL = [
    "model.encoder_options={width_mult: 0.35}",
    "model.width=16",
    "data.train.num_samples=8",
    "data.train.size=[32,32]",
    "data.train.transforms={size: [32, 32], scale: [0.6, 1.4], hflip: 0.5}",
    "data.train.label_dropout={segm: 0.5, depth: 0.5, count: 0.3}",
    "data.val.num_samples=5",
    "data.val.size=[32,32]",
    "train.steps=6",
    "train.val_every=6",
    "train.ckpt_every=6",
    "train.warmup_steps=0",
    "train.lr=0.01",
    "train.freeze_bn=true",
    "train.plots=false",
    "train.tensorboard=false",
    "train.monitor=loss",
    # NCHW, the layout the 1e-5 tolerance was set for: with the CPU default (decoder in channels_last)
    # the two runs' other summation orders put one encoder bias 1.2e-5 apart after 6 AdamW steps
    "train.channels_last=false",
]


def small_cfg(*extra):
    return load_config(apply_overrides(load_config("synthetic"), SMALL + list(extra)))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Both runs in one torchrun launch (process start-up dominates on a small CPU): the script
# joins the group once and calls the ``hydranet train`` command line twice; the trainer
# leaves a group it did not create in place.
LAUNCHER = """
import sys
import torch.distributed as dist
from hydranet.cli import main
dist.init_process_group("gloo")
codes = [main(["train", "--config", c, "--out", o, "--no-progress", "--json", o + ".json"])
         for c, o in zip(sys.argv[1::2], sys.argv[2::2])]
dist.destroy_process_group()
sys.exit(max(codes))
"""
RUNS = {"uncertainty": "berhu", "dwa": "silog"}  # weighting: depth loss (the two non-mean losses)
# The uncertainty run never labels normals: DDP, built without the per-step unused-parameter
# search, still gets a (zero) gradient for its head, which must then stay as a single process leaves it.
NEVER_LABELLED = {"uncertainty": "data.train.label_dropout={segm: 0.5, depth: 0.5, count: 0.3, normals: 1.0}"}
# gradient methods: per-task gradients all-reduced (shared_params) or Gramians summed (representation)
GRADIENT_RUNS = {"upgrad": "berhu", "mgda": "silog"}
OPTIONS = {"mgda": ["loss.options={mode: shared_params}"]}
if importlib.util.find_spec("torchjd") is not None:
    RUNS.update(GRADIENT_RUNS)


def _configs(weighting: str, batch_size: int) -> dict:
    extra = [NEVER_LABELLED[weighting]] if weighting in NEVER_LABELLED else []
    extra += OPTIONS.get(weighting, [])
    cfg = small_cfg(f"loss.weighting={weighting}", f"train.batch_size={batch_size}", *extra)
    cfg["tasks"][1]["loss"] = RUNS[weighting]
    return cfg


def _two_sets(batch_size: int) -> dict:
    """Two training sets sampled 3:1 (the second labels depth and count only), two named
    validation sets: 12 samples an epoch, so 3 global batches of 4."""
    cfg = small_cfg(f"train.batch_size={batch_size}")
    first = dict(cfg["data"]["train"], name="rooms", weight=3)
    second = dict(cfg["data"]["train"], name="more", weight=1, seed=1, num_samples=4, tasks=["depth", "count"])
    second["label_dropout"] = {"depth": 0.5}
    cfg["data"]["train"] = [first, second]
    cfg["data"]["val"] = {"rooms": dict(cfg["data"]["val"]), "more": dict(cfg["data"]["val"], seed=2)}
    return cfg


@pytest.fixture(scope="module")
def two_process_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("torchrun")
    (root / "launch.py").write_text(LAUNCHER)
    args = []
    for weighting in RUNS:
        hydranet.save_config(_configs(weighting, 2), root / f"{weighting}.yaml")
        args += [str(root / f"{weighting}.yaml"), str(root / weighting)]
    hydranet.save_config(_two_sets(2), root / "two_sets.yaml")
    args += [str(root / "two_sets.yaml"), str(root / "two_sets")]
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            "2",
            "--master_port",
            str(_free_port()),
            str(root / "launch.py"),
            *args,
        ],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    # every trainable parameter is reached: DDP runs without find_unused_parameters (no extra graph walk)
    assert "find_unused_parameters=True" not in proc.stderr, proc.stderr[-3000:]
    return root, proc.stdout


def _assert_close(a, b, where, tol=1e-5):
    if isinstance(a, dict):
        assert set(a) == set(b), where
        for k in a:
            _assert_close(a[k], b[k], f"{where}/{k}", tol)
    elif isinstance(a, torch.Tensor):
        if a.is_floating_point():
            assert torch.allclose(a.float(), b.float(), atol=tol, rtol=0, equal_nan=True), (
                f"{where}: max diff {float((a.float() - b.float()).abs().max())}"
            )
        else:
            assert torch.equal(a, b), where
    elif isinstance(a, float):
        assert a == pytest.approx(b, abs=tol, nan_ok=True), where
    else:
        assert a == b, where


@pytest.mark.parametrize("weighting", list(RUNS))
def test_two_processes_train_the_single_process_model(tmp_path, two_process_runs, weighting, one_thread):
    root, stdout = two_process_runs
    # one summary line per run, not one per rank
    assert stdout.count(f"checkpoints: {root / weighting}/last.pt") == 1, stdout
    single = train(_configs(weighting, 4), tmp_path / "one", progress=False)
    multi = json.loads((root / f"{weighting}.json").read_text())
    a = read_checkpoint(tmp_path / "one" / "last.pt")
    b = read_checkpoint(root / weighting / "last.pt")
    assert a["step"] == b["step"] == 6 and a["epoch"] == 3
    assert multi["ddp_find_unused_parameters"] is False
    if weighting in NEVER_LABELLED:  # the never-labelled head is still at its initialisation
        torch.manual_seed(0)  # the trainer seeds with train.seed (0) right before building the model
        start = {k: v for k, v in hydranet.build_model(_configs(weighting, 4)).state_dict().items() if "normals" in k}
        assert start and all(torch.equal(b["model"][k], v) for k, v in start.items())
    _assert_close(a["model"], b["model"], "model")
    _assert_close(a["weighting"], b["weighting"], "weighting")
    if RUNS[weighting] == "berhu":  # its threshold is a per-batch maximum: validation batches differ
        del single["validation"]["loss"]["depth"], multi["validation"]["loss"]["depth"]
    _assert_close(single["validation"], multi["validation"], "validation")
    if weighting == "dwa":  # three epochs: the third one ran with unequal weights
        assert not torch.allclose(a["weighting"]["current_weights"], torch.ones(5))


def test_ddp_needs_the_unused_parameter_search_only_for_unreached_parameters():
    from hydranet.training.distributed import find_unused_parameters, task_reach

    model = hydranet.build_model(small_cfg()).train()
    model.heads["segm"].eval()  # a frozen BatchNorm layer, say: its mode is left as it was
    reach = task_reach(model, torch.zeros(1, 3, 32, 32))
    assert model.training and not model.heads["segm"].training
    assert all(p.grad is None for p in model.parameters())
    decoder = {id(p) for p in model.decoder.parameters()}
    # dense heads read the decoder, image-level ones the encoder alone
    assert decoder <= reach["segm"] and not decoder & reach["count"]
    assert {id(p) for p in model.heads["count"].parameters()} <= reach["count"] - reach["segm"]
    assert find_unused_parameters(model, reach) is False
    model.extra = torch.nn.Linear(2, 2)  # a trainable parameter no output reaches
    assert find_unused_parameters(model, task_reach(model, torch.zeros(1, 3, 32, 32))) is True
    model.extra.requires_grad_(False)  # frozen (train.freeze): not DDP's concern
    assert find_unused_parameters(model, task_reach(model, torch.zeros(1, 3, 32, 32))) is False
    assert find_unused_parameters(model, None) is True  # the probe failed: keep the search


def test_two_processes_with_two_data_sets_train_the_single_process_model(tmp_path, two_process_runs, one_thread):
    root, _ = two_process_runs
    single = train(_two_sets(4), tmp_path / "one", progress=False)
    multi = json.loads((root / "two_sets.json").read_text())
    a = read_checkpoint(tmp_path / "one" / "last.pt")
    b = read_checkpoint(root / "two_sets" / "last.pt")
    assert a["step"] == b["step"] == 6 and a["epoch"] == 2
    _assert_close(a["model"], b["model"], "model")
    _assert_close(a["weighting"], b["weighting"], "weighting")
    assert set(single["validation"]["metrics"]) >= {"rooms/segm", "more/depth", "more/count"}
    _assert_close(single["validation"], multi["validation"], "validation")
