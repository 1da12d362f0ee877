"""Accuracy against measured speed: the Pareto front of methods x keep ratios.

Comparing methods at equal tokens hides what a method costs; comparing at equal time is
what a user decides by. A point is one method at one keep ratio: its accuracy (from an
evaluation) and its measured prefill speedup (from a timing on the same family). A
point is Pareto-optimal when no other point is at least as accurate and at least as
fast, and strictly better in one of the two.

Example:
    >>> pareto_optimal([(1.0, 0.9), (2.0, 0.8), (2.0, 0.7), (3.0, 0.8)])
    [True, False, False, True]
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vissparse.bench.plots import _pyplot, save_figure


def pareto_optimal(points: Sequence[tuple[float, float]]) -> list[bool]:
    """Per ``(speedup, accuracy)`` point, whether no other point dominates it.

    Higher is better in both; equal points do not dominate each other.
    """
    return [
        not any(
            s2 >= s and a2 >= a and (s2 > s or a2 > a)
            for j, (s2, a2) in enumerate(points)
            if j != i
        )
        for i, (s, a) in enumerate(points)
    ]


def join_points(
    accuracy: Sequence[dict[str, Any]], speed: Sequence[dict[str, Any]]
) -> list[dict[str, Any]]:
    """One point per ``(scorer, stage, keep_ratio)`` that has both an accuracy and a speed.

    ``accuracy`` rows have ``scorer``, ``keep_ratio``, ``accuracy`` (optionally
    ``ci_low``, ``ci_high``, ``of_ceiling`` and ``stage``); ``speed`` rows ``scorer``,
    ``keep_ratio``, ``prefill_speedup`` (optionally ``stage``, ``overhead_ms``). Stage
    defaults to ``"input"``. An accuracy row at keep 1.0 becomes the ``unpruned`` point
    at speedup 1.0 (once). Each point gets ``pareto`` (see :func:`pareto_optimal`) and
    ``method``: the scorer, marked ``(in LLM)`` when it prunes inside the model.

    Example:
        >>> acc = [{"scorer": "a", "keep_ratio": 0.1, "accuracy": 0.5},
        ...        {"scorer": "a", "keep_ratio": 1.0, "accuracy": 0.9}]
        >>> fast = [{"scorer": "a", "keep_ratio": 0.1, "prefill_speedup": 3.0}]
        >>> [(p["method"], p["pareto"]) for p in join_points(acc, fast)]
        [('a', True), ('unpruned', True)]
    """
    speeds = {(r["scorer"], r.get("stage", "input"), r["keep_ratio"]): r for r in speed}
    points: list[dict[str, Any]] = []
    for r in accuracy:
        stage = r.get("stage", "input")
        if r["keep_ratio"] == 1.0:
            if not any(p["method"] == "unpruned" for p in points):
                points.append({**_accuracy(r), "method": "unpruned", "scorer": "unpruned",
                               "stage": "input", "keep_ratio": 1.0,
                               "prefill_speedup": 1.0})  # fmt: skip
            continue
        fast = speeds.get((r["scorer"], stage, r["keep_ratio"]))
        if fast is None:
            continue
        method = f"{r['scorer']} (in LLM)" if stage == "llm" else r["scorer"]
        points.append({**_accuracy(r), "method": method, "scorer": r["scorer"], "stage": stage,
                       "keep_ratio": r["keep_ratio"], "prefill_speedup": fast["prefill_speedup"],
                       "overhead_ms": fast.get("overhead_ms")})  # fmt: skip
    front = pareto_optimal([(p["prefill_speedup"], p["accuracy"]) for p in points])
    for p, best in zip(points, front, strict=True):
        p["pareto"] = best
    return points


def _accuracy(row: dict[str, Any]) -> dict[str, Any]:
    keys = ("accuracy", "ci_low", "ci_high", "of_ceiling")
    return {k: row[k] for k in keys if k in row}


def pareto_table(points: Sequence[dict[str, Any]]) -> str:
    """Markdown: one row per point, fastest first; ``yes`` marks the Pareto front.

    Example:
        >>> pts = [{"method": "a", "keep_ratio": 0.1, "accuracy": 0.5, "of_ceiling": 0.625,
        ...         "prefill_speedup": 3.0, "pareto": True}]
        >>> print(pareto_table(pts).splitlines()[-1])
        | a | 0.1 | 50.0 | 62% | 3.00x | yes |
    """
    lines = ["| method | keep | accuracy | of ceiling | prefill speedup | Pareto-optimal |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for p in sorted(points, key=lambda p: (-p["prefill_speedup"], -p["accuracy"])):
        share = f"{100 * p['of_ceiling']:.0f}%" if p.get("of_ceiling") is not None else ""
        lines.append(f"| {p['method']} | {p['keep_ratio']:g} | {100 * p['accuracy']:.1f} | "
                     f"{share} | {p['prefill_speedup']:.2f}x | "
                     f"{'yes' if p['pareto'] else ''} |")  # fmt: skip
    return "\n".join(lines)


def plot_pareto(
    points: Sequence[dict[str, Any]], path: str | Path, title: str = "",
    styles: dict[str, dict[str, Any]] | None = None,
) -> Path:  # fmt: skip
    """Accuracy against prefill speedup, a line per method over its keep ratios.

    The Pareto front is a thick grey step line (the best accuracy at least as fast as each
    speedup), ``unpruned`` a star.

    ``styles`` maps a scorer to matplotlib line options (colour, line style).

    Example:
        >>> import tempfile
        >>> pts = join_points([{"scorer": "a", "keep_ratio": k, "accuracy": k}
        ...                    for k in (0.1, 0.5, 1.0)],
        ...                   [{"scorer": "a", "keep_ratio": k, "prefill_speedup": 1 / k}
        ...                    for k in (0.1, 0.5)])
        >>> plot_pareto(pts, Path(tempfile.mkdtemp()) / "p.png").suffix
        '.png'
    """
    plt = _pyplot()
    styles = styles or {}
    fig, ax = plt.subplots(figsize=(7.6, 4.6), dpi=120)
    front = sorted((p for p in points if p["pareto"]), key=lambda p: p["prefill_speedup"])
    if front:
        ax.step([p["prefill_speedup"] for p in front], [p["accuracy"] for p in front],
                where="pre", color="grey", lw=5, alpha=0.35, label="Pareto front")  # fmt: skip
    for method in dict.fromkeys(p["method"] for p in points):
        mine = sorted((p for p in points if p["method"] == method),
                      key=lambda p: p["prefill_speedup"])  # fmt: skip
        x, y = [p["prefill_speedup"] for p in mine], [p["accuracy"] for p in mine]
        if method == "unpruned":
            ax.plot(x, y, "*", color="black", ms=10, label="unpruned")
            continue
        style = dict(styles.get(mine[0]["scorer"], {}))
        if mine[0]["stage"] == "llm":
            style["ls"] = ":"
        ax.plot(x, y, marker="o", ms=3, label=method, **style)
    ax.set_xscale("log")
    from matplotlib.ticker import FuncFormatter

    times = FuncFormatter(lambda v, _: f"{v:.3g}x")
    ax.xaxis.set_major_formatter(times)
    ax.xaxis.set_minor_formatter(times)
    ax.set_xlabel("measured prefill speedup (log scale)")
    ax.set_ylabel("testbed accuracy")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    if title:
        ax.set_title(title, fontsize=10)
    return save_figure(fig, path)
