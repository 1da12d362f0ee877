"""Choosing ``keep_ratio`` from measurements: a sweep, and a search for a target."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from vissparse.keep_ratio import MAX_KEEP_RATIO, MIN_KEEP_RATIO

Measure = Callable[[float], dict[str, Any]]


@dataclass
class TuneResult:
    """The outcome of :meth:`vissparse.VisSparse.tune`.

    Attributes:
        keep_ratio: the choice (``None`` when the target cannot be met).
        met: whether the chosen keep ratio meets the target.
        target: ``{"target_speedup": x}`` or ``{"max_accuracy_drop": x}``.
        measurements: every row measured on the way, in the order measured.
        reason: a sentence that explains the choice, or why there is none.
    """

    keep_ratio: float | None
    met: bool
    target: dict[str, float]
    measurements: list[dict[str, Any]] = field(default_factory=list)
    reason: str = ""


def grid(step: float) -> list[float]:
    """Keep ratios from 0.05 to 1.0 in ``step`` increments (both ends included).

    Example:
        >>> grid(0.25)
        [0.05, 0.3, 0.55, 0.8, 1.0]
    """
    if not 0 < step <= MAX_KEEP_RATIO - MIN_KEEP_RATIO:
        raise ValueError(f"`step` must be in (0, 0.95], got {step!r}")
    n = int((MAX_KEEP_RATIO - MIN_KEEP_RATIO) / step + 1e-9)
    values = [round(MIN_KEEP_RATIO + i * step, 6) for i in range(n + 1)]
    return values if values[-1] == MAX_KEEP_RATIO else [*values, MAX_KEEP_RATIO]


def search(
    measure: Measure, ok: Callable[[dict[str, Any]], bool], largest: bool, step: float
) -> tuple[float | None, list[dict[str, Any]]]:
    """Binary search on the keep-ratio grid for the largest (or smallest) ratio that is ok.

    Assumes ``ok`` is monotone in the keep ratio: true below a threshold for a speedup
    target (``largest=True``), true above it for an accuracy target (``largest=False``).
    Each grid point is measured at most once; the order of measurements is fixed, so the
    same measurements give the same choice.

    Example:
        >>> choice, rows = search(lambda r: {"keep_ratio": r, "speedup": 1 / r},
        ...                       lambda row: row["speedup"] >= 4, largest=True, step=0.05)
        >>> choice
        0.25
    """
    points = grid(step)
    seen: dict[int, dict[str, Any]] = {}
    rows: list[dict[str, Any]] = []

    def at(i: int) -> bool:
        if i not in seen:
            seen[i] = measure(points[i])
            rows.append(seen[i])
        return ok(seen[i])

    good_end, bad_end = (0, len(points) - 1) if largest else (len(points) - 1, 0)
    if not at(good_end):
        return None, rows
    if at(bad_end):
        return points[bad_end], rows
    lo, hi = sorted((good_end, bad_end))
    while hi - lo > 1:  # invariant: the good end is ok, the bad end is not
        mid = (lo + hi) // 2
        if at(mid) == largest:
            lo = mid
        else:
            hi = mid
    return points[lo if largest else hi], rows


def explain(
    target: dict[str, float],
    choice: float | None,
    rows: list[dict[str, Any]],
    mock: bool,
    flop_bound: float | None = None,
) -> str:
    """A sentence on the choice, or on why the target cannot be met.

    ``flop_bound`` is the prefill FLOP ratio at the smallest keep ratio, when known.
    """
    by_ratio = sorted(rows, key=lambda r: r["keep_ratio"])
    if "target_speedup" in target:
        goal = target["target_speedup"]
        if choice is None:
            best = by_ratio[0]
            why = (
                "the mock model has no vision encoder; its speedup is limited by the text "
                "tokens and fixed per-call costs"
                if mock
                else "pruning after the vision encoder cannot speed up the encoder itself, "
                "so the prefill speedup is bounded"
                + (
                    f": prefill FLOPs fall at most {flop_bound:.2f}x at keep_ratio "
                    f"{best['keep_ratio']:g}"
                    if flop_bound is not None
                    else ""
                )
            )
            return (
                f"target speedup {goal:g}x cannot be met: even at the smallest keep_ratio "
                f"{best['keep_ratio']:g} the measured speedup is {best['speedup']:.2f}x; {why}"
            )
        row = next(r for r in rows if r["keep_ratio"] == choice)
        return (
            f"keep_ratio {choice:g} is the largest measured keep ratio with speedup >= "
            f"{goal:g}x (measured {row['speedup']:.2f}x, accuracy delta "
            f"{row['accuracy_delta']:+.2%})"
        )
    drop = target["max_accuracy_drop"]
    if choice is None:
        worst = by_ratio[-1]
        return (
            f"max accuracy drop {drop:.2%} cannot be met: even at keep_ratio "
            f"{worst['keep_ratio']:g} the accuracy delta is {worst['accuracy_delta']:+.2%}"
        )
    row = next(r for r in rows if r["keep_ratio"] == choice)
    return (
        f"keep_ratio {choice:g} is the smallest measured keep ratio with accuracy delta <= "
        f"{drop:.2%} (measured {row['accuracy_delta']:+.2%}, speedup {row['speedup']:.2f}x)"
    )
