"""Training logs hold every step by default (train.log_every for fewer); plots of a short run mark
their points and number their step axes with whole numbers."""

import csv
import json

import matplotlib.figure
import pytest
import torch

from hydranet.config import load_config
from hydranet.training import apply_overrides, train
from hydranet.training.plots import plot_run

TINY = [
    "model.encoder_options={width_mult: 0.35}",
    "model.width=8",
    "data.train.size=[32,32]",
    "data.val.size=[32,32]",
    "data.val.num_samples=4",
    "data.train.num_samples=16",
    "train.batch_size=2",
    "train.warmup_steps=1",
    "train.steps=5",
    "train.val_every=2",
    "train.ckpt_every=5",
    "train.tensorboard=false",
]


def _run(tmp_path, *extra, plots=False):
    cfg = load_config(apply_overrides(load_config("synthetic"), TINY + [f"train.plots={str(plots).lower()}", *extra]))
    torch.manual_seed(0)
    train(cfg, tmp_path, progress=False)
    with open(tmp_path / "steps.csv", newline="") as f:
        csv_steps = [int(row["step"]) for row in csv.DictReader(f)]
    records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    return csv_steps, records


@pytest.mark.usefixtures("one_thread")
def test_every_step_is_logged_by_default_and_log_every_thins_it(tmp_path, monkeypatch):
    saved = []
    original = matplotlib.figure.Figure.savefig

    def keep(fig, path, *args, **kwargs):
        saved.append((str(path), fig))
        return original(fig, path, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", keep)
    csv_steps, records = _run(tmp_path / "all", plots=True)
    assert csv_steps == [1, 2, 3, 4, 5]
    assert [r["step"] for r in records if r["type"] == "step"] == [1, 2, 3, 4, 5]
    assert [r["step"] for r in records if r["type"] == "val"] == [2, 4, 5]

    # training.png: one marker per point (5 points), whole-number step ticks
    figures = dict(saved)
    training = figures[str(tmp_path / "all" / "training.png")]
    for ax in training.axes:
        for line in ax.get_lines():
            assert line.get_marker() == "o" and len(line.get_xdata()) == 5
        ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
        assert ticks and all(float(t).is_integer() for t in ticks), ticks
    validation = figures[str(tmp_path / "all" / "validation.png")]
    for ax in (a for a in validation.axes if a.get_lines()):
        assert ax.get_lines()[0].get_marker() == "o"
        assert all(float(t).is_integer() for t in ax.get_xticks())

    # fewer with train.log_every, the first and the last step always kept
    csv_steps, records = _run(tmp_path / "thin", "train.log_every=3", "train.steps=4", "train.val_every=4")
    assert csv_steps == [1, 3, 4]
    # plot_run of a log with three points still draws markers
    assert {p.name for p in plot_run(tmp_path / "thin")} == {"training.png", "validation.png"}
