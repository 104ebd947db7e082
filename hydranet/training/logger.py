"""Training logs: JSON lines (every record), CSV (step records), TensorBoard when installed."""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Optional


def flatten(record: dict, prefix: str = "") -> dict:
    """``{"loss": {"segm": 1}}`` -> ``{"loss/segm": 1}``."""
    flat = {}
    for key, value in record.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}/"))
        else:
            flat[name] = value
    return flat


class RunLogger:
    """Appends records to ``log.jsonl`` and step records to ``steps.csv`` in ``out_dir``.

    Files are opened in append mode, so a resumed run continues the same logs.
    """

    def __init__(self, out_dir: Path, tensorboard: bool = True):
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.jsonl_path = self.out_dir / "log.jsonl"
        self.csv_path = self.out_dir / "steps.csv"
        self._jsonl = open(self.jsonl_path, "a", encoding="utf-8")
        self._csv_fields: Optional[list[str]] = None
        self._tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(str(self.out_dir / "tensorboard"))
            except ImportError:  # tensorboard is optional
                self._tb = None

    def log(self, kind: str, step: int, **values: Any) -> None:
        record = {"type": kind, "step": step, **values}
        self._jsonl.write(json.dumps(record) + "\n")
        self._jsonl.flush()
        flat = flatten(values)
        if kind == "step":
            self._write_csv({"step": step, **flat})
        if self._tb is not None:
            for key, value in flat.items():
                if isinstance(value, (int, float)):
                    self._tb.add_scalar(f"{kind}/{key}", value, step)

    def _write_csv(self, row: dict) -> None:
        if self._csv_fields is None:
            if self.csv_path.exists() and self.csv_path.stat().st_size:
                with open(self.csv_path, encoding="utf-8") as f:
                    self._csv_fields = next(csv.reader(f))
            else:
                self._csv_fields = list(row)
                with open(self.csv_path, "w", newline="", encoding="utf-8") as f:
                    csv.writer(f).writerow(self._csv_fields)
        with open(self.csv_path, "a", newline="", encoding="utf-8") as f:
            csv.DictWriter(f, self._csv_fields, extrasaction="ignore").writerow(row)

    def close(self) -> None:
        self._jsonl.close()
        if self._tb is not None:
            self._tb.close()


def read_log(path: Path) -> list[dict]:
    """Records of a ``log.jsonl`` (a folder holding one is accepted too)."""
    path = Path(path)
    if path.is_dir():
        path = path / "log.jsonl"
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
