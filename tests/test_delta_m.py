"""Delta_m (Maninis et al. 2019) against hand-computed cases; hydranet compare / eval --baseline."""

import json

import pytest
from support import tiny_config

import hydranet
from hydranet.cli import main
from hydranet.errors import ConfigError, DataError
from hydranet.evaluation.delta_m import (
    delta_m,
    load_results,
    metric_lower_is_better,
    parse_metric_list,
    relative_changes,
)

BASE = {
    "segm": {"miou": 0.50, "pixel_acc": 0.80, "samples": 10},
    "depth": {"abs_rel": 0.20, "rmse": 1.0, "samples": 10, "pixels": 100},
}


def test_delta_m_hand_computed_higher_and_lower_is_better():
    run = {
        "segm": {"miou": 0.55, "pixel_acc": 0.80, "samples": 10},
        "depth": {"abs_rel": 0.18, "rmse": 1.2, "samples": 10, "pixels": 100},
    }
    changes = relative_changes(run, BASE)
    # miou +10 %, pixel_acc 0; abs_rel 0.20 -> 0.18 is 10 % better, rmse 1.0 -> 1.2 is 20 % worse
    assert changes["segm"] == pytest.approx({"miou": 10.0, "pixel_acc": 0.0})
    assert changes["depth"] == pytest.approx({"abs_rel": 10.0, "rmse": -20.0})
    # tasks weigh equally whatever their metric count: (5 + (-5)) / 2
    assert delta_m(run, BASE) == pytest.approx(0.0)
    run["depth"]["rmse"] = 0.9
    assert delta_m(run, BASE) == pytest.approx((5.0 + 10.0) / 2)
    assert delta_m(run, BASE, {"depth": ["rmse"]}) == pytest.approx(10.0)
    assert delta_m(BASE, BASE) == 0.0


def test_metric_directions():
    assert metric_lower_is_better("rmse") and metric_lower_is_better("mean_angle")
    assert metric_lower_is_better("mae/diameter")
    assert not metric_lower_is_better("miou") and not metric_lower_is_better("within_11.25")
    assert not metric_lower_is_better("delta1") and not metric_lower_is_better("iou/wall")
    with pytest.raises(ConfigError, match="'weird'"):
        metric_lower_is_better("weird")


def test_missing_baseline_task_or_metric_is_a_clear_error():
    run = {"segm": {"miou": 0.5}, "normals": {"mean_angle": 20.0}}
    with pytest.raises(DataError, match="task 'normals' has no baseline"):
        delta_m(run, BASE)
    with pytest.raises(DataError, match="depth/delta1 is missing from the baseline"):
        delta_m({"depth": {"delta1": 0.9}}, BASE)
    with pytest.raises(DataError, match="segm/pixel_acc is missing from the run"):
        delta_m({"segm": {"miou": 0.5}}, BASE, {"segm": ["pixel_acc"]})
    with pytest.raises(DataError, match="is 0"):
        delta_m({"segm": {"miou": 0.5}}, {"segm": {"miou": 0.0}})
    with pytest.raises(ConfigError, match="task/metric"):
        parse_metric_list("miou")
    assert parse_metric_list("segm/miou, depth/rmse,segm/pixel_acc") == {
        "segm": ["miou", "pixel_acc"],
        "depth": ["rmse"],
    }


def test_load_results_merges_eval_files(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps({"weights": "a.pt", "metrics": {"segm": BASE["segm"]}}))
    (tmp_path / "b.json").write_text(json.dumps({"depth": BASE["depth"]}))
    assert load_results([tmp_path / "a.json", tmp_path / "b.json"]) == BASE
    with pytest.raises(DataError, match="also in"):
        load_results([tmp_path / "a.json", tmp_path / "a.json"])
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(DataError, match="bad.json"):
        load_results(tmp_path / "bad.json")
    with pytest.raises(DataError, match="nope.json"):
        load_results(tmp_path / "nope.json")


def test_compare_cli(tmp_path, capsys):
    (tmp_path / "segm.json").write_text(json.dumps({"metrics": {"segm": BASE["segm"]}}))
    (tmp_path / "depth.json").write_text(json.dumps({"metrics": {"depth": BASE["depth"]}}))
    run = {"metrics": {"segm": {"miou": 0.6, "pixel_acc": 0.8}, "depth": {"abs_rel": 0.2, "rmse": 1.1}}}
    (tmp_path / "run.json").write_text(json.dumps(run))
    args = [
        "compare",
        str(tmp_path / "run.json"),
        "--baseline",
        str(tmp_path / "segm.json"),
        str(tmp_path / "depth.json"),
        "--json",
        str(tmp_path / "out.json"),
    ]
    assert main(args) == 0
    report = json.loads((tmp_path / "out.json").read_text())
    assert report["delta_m"] == pytest.approx((10.0 + (-5.0)) / 2)
    assert report["changes"]["depth"]["rmse"] == pytest.approx(-10.0)
    assert "Delta_m" in capsys.readouterr().out
    assert main(["compare", str(tmp_path / "run.json"), "--baseline", str(tmp_path / "segm.json")]) == 2
    assert "task 'depth' has no baseline" in capsys.readouterr().err


def test_eval_baseline_adds_delta_m(tmp_path, one_thread):
    tasks = [{"name": "segm", "kind": "segmentation", "classes": 8}, {"name": "depth", "kind": "depth"}]
    hydranet.save_model(hydranet.build_model(tiny_config(tasks=tasks)), tmp_path / "m.pt")
    common = [
        "--weights",
        str(tmp_path / "m.pt"),
        "--set",
        "data.val.num_samples=2",
        "--set",
        "data.val.size=[64,64]",
        "--no-progress",
    ]
    assert main(["eval", *common, "--json", str(tmp_path / "self.json")]) == 0
    assert (
        main(
            [
                "eval",
                *common,
                "--baseline",
                str(tmp_path / "self.json"),
                "--metrics",
                "depth/abs_rel,depth/rmse",
                "--json",
                str(tmp_path / "r.json"),
            ]
        )
        == 0
    )
    report = json.loads((tmp_path / "r.json").read_text())["delta_m"]
    assert report["delta_m"] == pytest.approx(0.0, abs=1e-9)
    assert list(report["changes"]) == ["depth"] and list(report["changes"]["depth"]) == ["abs_rel", "rmse"]
