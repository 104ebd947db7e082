import os
import stat

import pytest
import torch
from support import tiny_config

import hydranet
from hydranet.checkpoint import atomic_save, read_checkpoint
from hydranet.cli import main
from hydranet.errors import CheckpointError


def test_slim_half_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    model = hydranet.build_model(tiny_config()).eval()
    hydranet.save_model(model, tmp_path / "full.pt", optimizer={"state": {}}, step=7)
    assert main(["convert", str(tmp_path / "full.pt"), str(tmp_path / "slim.pt"), "--half"]) == 0
    slim = read_checkpoint(tmp_path / "slim.pt")
    assert "optimizer" not in slim and slim["meta"]["trained_steps"] == 7
    assert all(v.dtype == torch.float16 for v in slim["model"].values() if v.is_floating_point())
    loaded = hydranet.load_model(tmp_path / "slim.pt")
    assert next(loaded.parameters()).dtype == torch.float32
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        a, b = model(x), loaded(x)
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=2e-2, atol=2e-2)


def test_atomic_save_file_mode_and_no_leftovers(tmp_path):
    atomic_save({"a": torch.zeros(2)}, tmp_path / "x.pt")
    mode = stat.S_IMODE(os.stat(tmp_path / "x.pt").st_mode)
    assert mode & 0o044  # readable by others, like any file the user writes
    assert sorted(os.listdir(tmp_path)) == ["x.pt"]


def test_read_checkpoint_rejects_foreign_and_missing(tmp_path):
    torch.save({"state_dict": {}}, tmp_path / "orig.ckpt")
    with pytest.raises(CheckpointError, match="hydranet convert"):
        read_checkpoint(tmp_path / "orig.ckpt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.pt"):
        hydranet.load_model(tmp_path / "junk.pt")
    with pytest.raises(CheckpointError, match="does not exist"):
        hydranet.load_model(tmp_path / "nope.pt")
