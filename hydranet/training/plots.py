"""Matplotlib plots of a training run: task losses, sigma^2, effective weights, validation metrics."""

from __future__ import annotations

from pathlib import Path

from .logger import read_log


def _series(records: list[dict], kind: str, field: str) -> dict[str, tuple[list, list]]:
    """``{name: (steps, values)}`` for ``record[field][name]`` over records of ``kind``."""
    out: dict[str, tuple[list, list]] = {}
    for r in records:
        if r.get("type") != kind:
            continue
        for name, value in (r.get(field) or {}).items():
            if isinstance(value, (int, float)):
                steps, values = out.setdefault(name, ([], []))
                steps.append(r["step"])
                values.append(value)
    return out


MARKERS_UP_TO = 60  # points per curve drawn with a marker each (a short run stays readable)


def _style_axis(ax) -> None:
    """Steps are whole numbers: integer ticks only on the x axis."""
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("step")
    ax.grid(alpha=0.3)


def _plain_log_labels(ax) -> None:
    """Log-axis ticks written as plain numbers (0.9, 2) rather than 9x10^-1."""
    from matplotlib.ticker import FuncFormatter

    plain = FuncFormatter(lambda v, _: f"{v:.3g}")
    ax.yaxis.set_major_formatter(plain)
    ax.yaxis.set_minor_formatter(plain)


def _marker(n: int) -> dict:
    return {"marker": "o", "markersize": 3} if n <= MARKERS_UP_TO else {}


def plot_run(run: Path, out: Path | None = None) -> list[Path]:
    """Write ``training.png`` (and ``validation.png`` when the run validated) for a run folder.

    Curves of up to :data:`MARKERS_UP_TO` points mark each point; step axes have integer ticks.

    Returns the written files.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run = Path(run)
    out = Path(out) if out else run
    out.mkdir(parents=True, exist_ok=True)
    records = read_log(run)
    panels = [
        ("loss", "task loss (raw)", True),
        ("weighted", "weighted loss", False),
        ("sigma2", "sigma^2 (learnt variance)", True),
        ("weight", "effective weight", True),
    ]
    panels = [p for p in panels if _series(records, "step", p[0])]
    written = []
    if panels:
        fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.6), squeeze=False)
        for ax, (field, title, log_scale) in zip(axes[0], panels):
            for name, (steps, values) in _series(records, "step", field).items():
                ax.plot(steps, values, label=name, linewidth=1.2, **_marker(len(steps)))
            if log_scale and all(v > 0 for _, vs in _series(records, "step", field).values() for v in vs):
                ax.set_yscale("log")
                _plain_log_labels(ax)
            ax.set_title(title)
            _style_axis(ax)
            ax.legend(fontsize=8)
        fig.tight_layout()
        written.append(out / "training.png")
        fig.savefig(written[-1], dpi=110)
        plt.close(fig)
    val = [r for r in records if r.get("type") == "val"]
    if val:
        metrics: dict[str, tuple[list, list]] = {}
        for r in val:
            for task, values in (r.get("metrics") or {}).items():
                for metric, value in values.items():
                    if isinstance(value, (int, float)) and "/" not in metric and metric not in ("samples", "pixels"):
                        steps, vs = metrics.setdefault(f"{task}/{metric}", ([], []))
                        steps.append(r["step"])
                        vs.append(value)
        if metrics:
            cols = min(4, len(metrics))
            rows = -(-len(metrics) // cols)
            fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.8 * rows), squeeze=False)
            for ax, (name, (steps, vs)) in zip(axes.flat, metrics.items()):
                ax.plot(steps, vs, marker="o", markersize=4)
                ax.set_title(name, fontsize=9)
                _style_axis(ax)
            for ax in list(axes.flat)[len(metrics) :]:
                ax.axis("off")
            fig.tight_layout()
            written.append(out / "validation.png")
            fig.savefig(written[-1], dpi=110)
            plt.close(fig)
    return written
