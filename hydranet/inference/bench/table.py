"""The bench's rows as a text table."""

from __future__ import annotations

from ...measure import aligned_rows

__all__ = ["format_table"]

_HEADER = (
    "setting",
    "batch",
    "size",
    "model ms",
    "p90",
    "FPS",
    "speed-up",
    "e2e ms",
    "e2e FPS",
    "e2e x",
    "peak MB",
    "max abs diff",
    "max rel diff",
)


def _fmt(value, spec: str, none: str = "-") -> str:
    return none if value is None else format(value, spec)


def _cells(row: dict) -> tuple:
    """One measured row's cells, in the order of the header."""
    return (
        row["setting"],
        str(row["batch"]),
        row["size"],
        _fmt(row["model_ms_median"], ".1f"),
        _fmt(row["model_ms_p90"], ".1f"),
        _fmt(row["model_fps"], ".1f"),
        _fmt(row["speedup"], ".2f") + "x" if row["speedup"] else "-",
        _fmt(row["e2e_ms_median"], ".1f"),
        _fmt(row["e2e_fps"], ".1f"),
        _fmt(row["e2e_speedup"], ".2f") + "x" if row["e2e_speedup"] else "-",
        _fmt(row["peak_memory_mb"], ".0f"),
        _fmt(row["max_abs_diff"], ".2e"),
        _fmt(row["max_rel_diff"], ".2e"),
    )


def format_table(result: dict) -> str:
    """The rows as a text table, then the skipped and failed settings with their reasons."""
    table = [_HEADER]
    notes = []
    for row in result["rows"]:
        if row["status"] != "ok":
            notes.append(f"  {row['setting']} ({row['batch']} x {row['size']}): {row['status']}: {row['reason']}")
            table.append((row["setting"], str(row["batch"]), row["size"]) + (row["status"],) + ("",) * 9)
            continue
        table.append(_cells(row))
    lines = aligned_rows(table, left=3)
    m = result.get("machine", {})
    lines.append("")
    lines.append(
        f"{m.get('cpu')} ({m.get('cpu_count')} cpus, {m.get('torch_threads')} torch threads), "
        f"torch {m.get('torch')}" + (f", {m['gpu']}" if m.get("gpu") else "")
    )
    lines.append(
        "speed-up and diff are relative to the baseline row of the same batch and size; "
        "e2e = uint8 frame -> results in host memory"
    )
    if notes:
        lines.append("not measured:")
        lines.extend(notes)
    return "\n".join(lines)
