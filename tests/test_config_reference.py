"""docs/config_reference.md is generated from the typed schema, and the checked-in page is current."""

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_config_reference_page_is_up_to_date():
    # A fresh process: tests elsewhere register toy task kinds, which would appear in the page.
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "config_reference.py"), "--check"],
        env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    page = (REPO / "docs" / "config_reference.md").read_text(encoding="utf-8")
    for section in ("## `model`", "## `train`", "## `loss`", "| `log_every` | integer | 1 |"):
        assert section in page
