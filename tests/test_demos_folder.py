"""demos/: the video overlay script on a generated clip, and the walkthrough notebook (nbclient)."""

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from support import tiny_config

import hydranet

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
cv2 = pytest.importorskip("cv2")


def test_video_overlay_script_on_a_generated_clip(tmp_path):
    clip = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 8.0, (64, 48))
    rng = np.random.default_rng(0)
    for i in range(5):
        writer.write(np.roll(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8), i, axis=1))
    writer.release()
    torch.manual_seed(0)
    tasks = [{"name": "segm", "kind": "segmentation", "classes": 3}, {"name": "depth", "kind": "depth"}]
    hydranet.save_model(hydranet.build_model(tiny_config(tasks=tasks)), tmp_path / "m.pt")
    out = tmp_path / "overlay.mp4"
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "demos" / "video_overlay.py"),
            "--input",
            str(clip),
            "--weights",
            str(tmp_path / "m.pt"),
            "--out",
            str(out),
            "--smooth",
            "0.5",
        ],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "wrote 5 frames" in proc.stdout
    cap = cv2.VideoCapture(str(out))
    count, shape = 0, None
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        count, shape = count + 1, frame.shape
    cap.release()
    assert count == 5 and shape[0] > 48 and shape[1] > 2 * 64  # overlay | depth | scale bar, legend below
    help_text = subprocess.run(
        [sys.executable, str(REPO / "demos" / "video_overlay.py"), "--help"],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    assert "--smooth" in help_text


def test_walkthrough_notebook_executes(tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    nb = nbformat.read(REPO / "demos" / "walkthrough.ipynb", as_version=4)
    env = {
        "WALKTHROUGH_STEPS": "3",
        "WALKTHROUGH_SIZE": "64",
        "WALKTHROUGH_OUT": str(tmp_path / "out"),
        "PYTHONPATH": str(REPO),
        "OMP_NUM_THREADS": "1",
    }
    env_keys = list(env) + ["MPLBACKEND"]
    old = {k: os.environ.get(k) for k in env_keys}
    os.environ.pop("MPLBACKEND", None)  # the kernel's inline backend shows the figures
    os.environ.update(env)  # the kernel inherits the environment
    try:
        nbclient.NotebookClient(
            nb, timeout=240, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
        ).execute()
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    out = tmp_path / "out"
    assert (out / "run" / "last.pt").is_file() and (out / "converted.pt").is_file()
    assert (out / "model.onnx").stat().st_size > 0
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.get("output_type") == "error"]
    assert not errors
    plots = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if "image/png" in o.get("data", {})]
    assert len(plots) == 2  # sigma^2, and the prediction beside the ground truth
    source = "".join(c.source for c in nb.cells)
    assert "true classes" in source and "true depth (m)" in source  # ground truth shown, not only computed
    assert re.search(r"took [\d.]+ minutes \(\d+ s", nb.cells[0].source)  # the text states its measured time
    assert 'WALKTHROUGH_STEPS", 300' in source  # the measured default
