"""Pictures of sweeps: speedup and accuracy against keep_ratio."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as err:  # pragma: no cover - matplotlib is in the dev extra
        raise ImportError("plots need matplotlib: pip install 'vissparse[plot]'") from err
    return plt


def plot_sweep(rows: Sequence[dict[str, Any]], path: str | Path, title: str = "") -> Path:
    """Speedup (left axis) and accuracy with the baseline's (right axis) per keep_ratio.

    Example:
        >>> import tempfile
        >>> rows = [{"keep_ratio": 0.1, "speedup": 5.0, "accuracy": 0.8,
        ...          "baseline_accuracy": 0.9}, {"keep_ratio": 1.0, "speedup": 1.0,
        ...          "accuracy": 0.9, "baseline_accuracy": 0.9}]
        >>> plot_sweep(rows, Path(tempfile.mkdtemp()) / "s.png").name
        's.png'
    """
    plt = _pyplot()
    rows = sorted(rows, key=lambda r: r["keep_ratio"])
    ratios = [r["keep_ratio"] for r in rows]
    fig, left = plt.subplots(figsize=(6.4, 4.0), dpi=120)
    left.plot(ratios, [r["speedup"] for r in rows], "o-", color="tab:blue", label="speedup")
    left.axhline(1.0, color="tab:blue", lw=0.6, ls=":")
    left.set_xlabel("keep_ratio")
    left.set_ylabel("speedup (baseline / pruned)", color="tab:blue")
    right = left.twinx()
    right.plot(ratios, [r["accuracy"] for r in rows], "s-", color="tab:red", label="accuracy")
    if all("baseline_accuracy" in r for r in rows):
        right.plot(ratios, [r["baseline_accuracy"] for r in rows], "--", color="tab:red",
                   alpha=0.5, label="baseline accuracy")  # fmt: skip
    right.set_ylabel("accuracy", color="tab:red")
    right.set_ylim(0, 1.05)
    handles = left.get_legend_handles_labels()[0] + right.get_legend_handles_labels()[0]
    left.legend(handles=handles, loc="center right", fontsize=8)
    left.set_title(title or "VisSparse keep_ratio sweep", fontsize=10)
    return save_figure(fig, path)


def save_figure(fig: Any, path: str | Path) -> Path:
    """Lay out ``fig``, write it to ``path`` (creating folders) and close it."""
    plt = _pyplot()
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
