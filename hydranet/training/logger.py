"""Training logs: JSON lines (every record), CSV (step records), TensorBoard when installed."""

from __future__ import annotations

import csv
import io
import json
import warnings
from pathlib import Path
from typing import Any, Optional

from ..data.io import write_bytes_atomic


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

    Files are opened in append mode, so a resumed run continues the same logs; records past
    ``start_step`` (the step the run starts from: those a resume repeats) and lines a crash
    cut short are removed first, so no step is logged twice.
    """

    def __init__(self, out_dir: Path, tensorboard: bool = True, start_step: int = 0):
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.jsonl_path = self.out_dir / "log.jsonl"
        self.csv_path = self.out_dir / "steps.csv"
        truncate_logs(self.out_dir, start_step)
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


def _records(path: Path) -> tuple[list[dict], list[int]]:
    """The records of a ``log.jsonl`` and the numbers of the lines that are not JSON records."""
    records, broken = [], []
    with open(path, encoding="utf-8", errors="replace") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except (ValueError, RecursionError):  # a line cut short, or nested past the parser's depth
                broken.append(lineno)
                continue
            if isinstance(record, dict) and isinstance(record.get("step"), int):
                records.append(record)
            else:
                broken.append(lineno)
    return records, broken


def read_log(path: Path) -> list[dict]:
    """Records of a ``log.jsonl`` (a folder holding one is accepted too).

    Lines that are not records (e.g. the last line of a run killed mid-write) are skipped
    with a warning naming the file and the lines.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "log.jsonl"
    records, broken = _records(path)
    if broken:
        warnings.warn(
            f"{path}: skipped {len(broken)} unreadable line(s): {', '.join(map(str, broken[:5]))}", stacklevel=2
        )
    return records


def truncate_logs(out_dir: Path, step: int) -> None:
    """Drop the records after ``step`` (and unreadable lines) from ``log.jsonl`` and ``steps.csv``."""

    jsonl, steps_csv = Path(out_dir) / "log.jsonl", Path(out_dir) / "steps.csv"
    if jsonl.is_file():
        records, broken = _records(jsonl)
        kept = [r for r in records if r["step"] <= step]
        if broken or len(kept) != len(records):
            write_bytes_atomic(jsonl, "".join(json.dumps(r) + "\n" for r in kept).encode("utf-8"))
    if steps_csv.is_file() and steps_csv.stat().st_size:
        with open(steps_csv, encoding="utf-8", newline="", errors="replace") as f:
            rows = list(csv.reader(f))
        header, body = rows[0], rows[1:]

        def keep(row: list) -> bool:
            try:
                return len(row) == len(header) and int(row[0]) <= step
            except ValueError:
                return False

        kept_rows = [r for r in body if keep(r)]
        if len(kept_rows) != len(body):
            buffer = io.StringIO()
            csv.writer(buffer).writerows([header, *kept_rows])
            write_bytes_atomic(steps_csv, buffer.getvalue().encode("utf-8"))
