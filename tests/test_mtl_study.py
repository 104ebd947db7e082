"""scripts/mtl_study.py end to end at its --tiny setting: every run, both tables, the label split."""

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


def test_mtl_study_tiny_writes_its_tables(tmp_path, one_thread):
    study = _load()
    out = tmp_path / "study"
    assert study.main(["--tiny", "--out", str(out)]) == 0
    report = json.loads((out / "study.json").read_text())
    weighting = report["summary"]["weighting"]
    assert list(weighting) == ["single-task", *study.STRATEGIES]
    assert {"equal", "uncertainty", "gradnorm", "dwa"} <= set(weighting)
    assert sum(s.startswith("fixed") for s in weighting) >= 2
    for per_seed in weighting.values():
        assert [p["seed"] for p in per_seed] == [0]
        assert set(per_seed[0]["metrics"]) == {"segm", "depth", "normals"}
    # the baselines against themselves
    base = weighting["single-task"][0]
    assert base["delta_m"] == 0.0
    assert all(c == 0.0 for task in base["changes"].values() for c in task.values())
    uw = weighting["uncertainty"][0]
    assert set(uw["sigma2"]) == {"segm", "depth", "normals"} and all(v > 0 for v in uw["sigma2"].values())
    assert weighting["fixed_1-0.5-1"][0]["weights"] == pytest.approx({"segm": 1.0, "depth": 0.5, "normals": 1.0})
    asym = report["summary"]["asymmetric"]
    assert set(asym) == {"a", "b", "c"} and all(set(v[0]["metrics"]) == {"segm", "depth"} for v in asym.values())
    assert len(report["runs"]) == 3 + len(study.STRATEGIES) + 3

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
