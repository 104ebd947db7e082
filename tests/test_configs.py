"""Every shipped config is valid and builds its model and training settings."""

import pytest

import hydranet
from hydranet.config import CONFIG_DIR, load_config
from hydranet.training.settings import training_settings

CONFIGS = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


@pytest.mark.parametrize("name", CONFIGS)
def test_shipped_config_is_valid(name):
    cfg = load_config(name)
    training_settings(cfg)
    cfg["model"]["encoder_weights"] = None  # offline: architecture only
    model = hydranet.build_model(cfg)
    assert [t.name for t in model.tasks] == [t["name"] for t in cfg["tasks"]]


def test_shipped_configs_present():
    assert {"synthetic", "nyud", "kitti", "json_targets"} <= set(CONFIGS)
