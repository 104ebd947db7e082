"""hydranet affinity: TAG lookahead affinities during a short run, groupings, the command line."""

import json

import pytest

import hydranet
from hydranet.cli import main
from hydranet.config import load_config
from hydranet.training import apply_overrides
from hydranet.training.affinity import _partitions, best_groupings, group_score, pair_benefit

NAMES = ["a", "b", "c"]
# Z[i][j]: affinity of i's step onto j's loss
Z = [[0.0, 0.5, -0.2], [0.4, 0.0, -0.3], [-0.1, -0.2, 0.0]]


def test_groupings_by_total_affinity_hand_computed():
    # together: onto a mean(0.4, -0.1) = 0.15, onto b mean(0.5, -0.2) = 0.15, onto c mean(-0.2, -0.3) = -0.25
    assert group_score(NAMES, NAMES, Z) == pytest.approx(0.05)
    groupings = {g["k"]: g for g in best_groupings(NAMES, Z)}
    assert groupings[1]["groups"] == [NAMES] and groupings[1]["score"] == pytest.approx(0.05)
    # {a, b} {c}: 0.4 + 0.5 = 0.9 beats {a, c} {b} (-0.3) and {b, c} {a} (-0.5)
    assert groupings[2]["groups"] == [["a", "b"], ["c"]] and groupings[2]["score"] == pytest.approx(0.9)
    assert groupings[3]["score"] == 0.0
    assert pair_benefit(NAMES, Z) == pytest.approx({"a+b": 0.45, "a+c": -0.15, "b+c": -0.25})
    assert sum(1 for _ in _partitions(list("abcd"))) == 15  # Bell(4)


TINY = [
    "model.encoder_options={width_mult: 0.35}",
    "model.width=8",
    "data.train.num_samples=4",
    "data.train.size=[32,32]",
    "data.train.transforms={size: [32, 32]}",
    "data.val=null",
    "train.batch_size=2",
    "train.warmup_steps=0",
    "train.tensorboard=false",
]


def _tiny(tmp_path, tasks=("segm", "depth", "count")):
    cfg = load_config(apply_overrides(load_config("synthetic"), list(TINY)))
    cfg["tasks"] = [t for t in cfg["tasks"] if t["name"] in tasks]
    path = tmp_path / "tiny.yaml"
    hydranet.save_config(cfg, path)
    return str(path)


def test_affinity_command_on_a_tiny_config(tmp_path, capsys, one_thread):
    out, report = tmp_path / "aff", tmp_path / "aff.json"
    args = ["affinity", "--config", _tiny(tmp_path), "--steps", "4", "--every", "1", "--out", str(out)]
    assert main([*args, "--json", str(report)]) == 0
    result = json.loads(report.read_text())
    assert result["tasks"] == ["segm", "depth", "count"]
    assert result["measured_steps"] == 4
    z = result["affinity"]
    assert all(v == v for row in z for v in row)  # every pair measured (no NaN)
    assert len({round(v, 6) for row in z for v in row}) == 9  # nine separate measurements
    assert [g["k"] for g in result["groupings"]] == [1, 2, 3]
    assert (out / "affinity.png").stat().st_size > 0 and (out / "last.pt").is_file()
    text = capsys.readouterr().out
    assert "inter-task affinity" in text and "k=2:" in text


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--steps", "0"], None),
        (["--every", "-1"], None),
        (["--config", "/nonexistent.yaml"], "nonexistent"),
        (["--single-task"], None),
    ],
)
def test_affinity_bad_arguments_exit_2(tmp_path, capsys, extra, message):
    args = ["affinity", "--out", str(tmp_path / "o")]
    if extra == ["--single-task"]:
        extra, message = ["--config", _tiny(tmp_path, tasks=("segm",))], "at least two tasks"
    try:
        code = main([*args, *extra])
    except SystemExit as exc:  # argparse
        code = exc.code
    assert code == 2
    if message:
        assert message in capsys.readouterr().err
