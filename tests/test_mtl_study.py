"""scripts/mtl_study.py end to end at its --tiny setting: the runs, the screening of gradient
methods, the records a later session resumes from, the tables, plots and the label split."""

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "mtl_study.py"


def _load():
    spec = importlib.util.spec_from_file_location("mtl_study", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_mtl_study_tiny_screens_resumes_and_writes_its_tables(tmp_path, one_thread):
    pytest.importorskip("torchjd")
    study = _load()
    out = tmp_path / "study"
    common = ["--tiny", "--out", str(out)]
    # two seeds, gradient methods screened on seed 0, the best one run on seed 1
    argv = [*common, "--seeds", "0", "1", "--weightings", "equal", "--gradient-methods", "upgrad", "mgda"]
    assert study.main([*argv, "--best", "1", "--no-asym"]) == 0
    records = {p.stem: json.loads(p.read_text()) for p in (out / "records").glob("*.json")}
    seed1 = {n for n in records if n.startswith("multi_") and n.endswith("_s1")}
    assert len(seed1) == 2 and "multi_equal_s1" in seed1
    ranked = study.best_gradient_methods(study_args(study, argv), list(records.values()))
    assert seed1 == {"multi_equal_s1", f"multi_{ranked[0]}_s1"}
    assert all(r["curve"] and r["settings"]["steps"] == 3 for r in records.values())
    report = json.loads((out / "study.json").read_text())
    weighting = report["summary"]["weighting"]
    assert [p["seed"] for p in weighting["single-task"]] == [0, 1]
    assert [p["seed"] for p in weighting[ranked[1]]] == [0]  # screened only
    base = weighting["single-task"][0]
    assert base["delta_m"] == 0.0 and all(c == 0.0 for task in base["changes"].values() for c in task.values())
    assert (out / "delta_m.png").stat().st_size > 0 and (out / "curves.png").stat().st_size > 0
    conv = report["summary"]["convergence"]
    means = {f"single_{t} (mean of 2 seeds)" for t in study.TASKS}
    assert set(conv) == {f"single_{t}_s{s}" for t in study.TASKS for s in (0, 1)} | means

    # a second study on the same records: the finished runs are reused (their files untouched)
    stamp = (out / "records" / "single_segm_s0.json").stat().st_mtime_ns
    assert study.main([*common, "--weightings", "uncertainty", "--gradient-methods"]) == 0
    assert (out / "records" / "single_segm_s0.json").stat().st_mtime_ns == stamp
    report = json.loads((out / "study.json").read_text())
    uw = report["summary"]["weighting"]["uncertainty"][0]
    assert set(uw["sigma2"]) == {"segm", "depth", "normals"} and all(v > 0 for v in uw["sigma2"].values())
    asym = report["summary"]["asymmetric"]
    assert set(asym) == {"a", "b", "c"} and all(set(v[0]["metrics"]) == {"segm", "depth"} for v in asym.values())

    # (b): depth on 25 % of the 8 training images, segmentation on a disjoint 25 %, the rest unlabelled
    rows = [line.split() for line in (out / "data" / "train_asym.txt").read_text().splitlines()[1:]]
    assert len(rows) == 8
    seg_only = [r for r in rows if r[1] != "-" and r[2] == "-"]
    depth_only = [r for r in rows if r[1] == "-" and r[2] != "-"]
    assert len(seg_only) == 2 and len(depth_only) == 2 and sum(r[1:] == ["-", "-"] for r in rows) == 4
    # (c): every missing label filled, real ones kept
    filled = [line.split() for line in (out / "runs" / "pseudo_s0" / "train_asym.txt").read_text().splitlines()[1:]]
    assert all(r[1] != "-" and r[2] != "-" for r in filled)
    assert {Path(r[1]).name for r in filled if "/data/segm/" in r[1]} == {Path(r[1]).name for r in seg_only}

    md = (out / "study.md").read_text()
    assert "| single-task |" in md and "| uncertainty |" in md and "| (c) |" in md and "Δm %" in md
    assert "0.00 ± 0.00" in md.split("| single-task |")[1].splitlines()[0]

    # --report-only rebuilds the tables from the records without training
    (out / "study.md").unlink()
    assert study.main([*common, "--report-only", "--weightings", "equal", "uncertainty"]) == 0
    assert "| equal |" in (out / "study.md").read_text()


def test_convergence_of_a_hand_made_curve_and_of_the_seed_mean():
    study = _load()
    line = [{"step": t, "segm": 1 + t / 1000} for t in range(100, 1001, 100)]
    moved = study._window_movement(line, "segm")  # the last fifth: steps 800, 900, 1000 (1.8 .. 2.0)
    assert moved["from_step"] == 800 and moved["to_step"] == 1000
    assert moved["improving"]  # mIoU rising
    assert moved["change_pct"] == pytest.approx(0.2 / 1.8 * 100) and moved["trend_pct"] == pytest.approx(
        0.2 / 1.9 * 100
    )
    # two seeds drifting in opposite directions around a flat line: their mean has converged
    up = [{"step": t, "segm": 2 + t / 1000} for t in range(100, 1001, 100)]
    down = [{"step": t, "segm": 2 - t / 1000} for t in range(100, 1001, 100)]
    records = [
        {"group": "single", "strategy": "segm", "name": f"single_segm_s{k}", "curve": c}
        for k, c in enumerate((up, down))
    ]
    conv = study.convergence(records)
    assert conv["single_segm_s0"]["trend_pct"] == pytest.approx(0.2 / 2.9 * 100)
    assert conv["single_segm (mean of 2 seeds)"]["trend_pct"] == pytest.approx(0, abs=1e-9)


def study_args(study, argv):
    """The parsed arguments main() would use (for best_gradient_methods)."""
    import argparse

    ns = argparse.Namespace(seeds=[0, 1], gradient_methods=argv[argv.index("--gradient-methods") + 1 :])
    return ns
