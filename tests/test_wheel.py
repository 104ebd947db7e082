"""Installed as users install it (a wheel, not editable): the bundled checkpoint travels as
package data and `hydranet demo` with no weights works from another working directory."""

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    src = tmp_path_factory.mktemp("src")
    for name in ("setup.py", "README.md", "LICENSE"):
        shutil.copy(REPO / name, src / name)
    shutil.copytree(REPO / "hydranet", src / "hydranet", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    out = tmp_path_factory.mktemp("dist")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--disable-pip-version-check",
            "-q",
            "-w",
            str(out),
            str(src),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if proc.returncode != 0 and "No module named pip" in proc.stderr:
        pytest.skip("pip is not available in this interpreter")
    assert proc.returncode == 0, proc.stderr[-2000:]
    (path,) = out.glob("hydranet-*.whl")
    return path


def test_wheel_ships_the_checkpoint_and_the_license(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert "hydranet/assets/hydranet_synthetic.pt" in names
    assert any(n.endswith(".dist-info/METADATA") for n in names)
    assert any(n.endswith("LICENSE") for n in names)
    assert not any(n.startswith("weights/") for n in names)


def test_demo_runs_from_an_installed_wheel(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--disable-pip-version-check",
            "-q",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": str(target), "OMP_NUM_THREADS": "1"}
    env.pop("HYDRANET_WEIGHTS", None)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "hydranet",
            "demo",
            "--max-frames",
            "2",
            "--clip-size",
            "64x48",
            "--no-progress",
            "--out",
            "clip/demo.mp4",
        ],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"weights {target / 'hydranet' / 'assets' / 'hydranet_synthetic.pt'}" in proc.stdout
    assert (work / "clip" / "demo.mp4").stat().st_size > 0
