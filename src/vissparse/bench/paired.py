"""Paired benchmark: baseline and pruned calls on the same inputs, in one process.

For every item the unpruned baseline and the pruned pipeline run back to back (their
order alternates from item to item so drift on a shared machine hits both equally),
after a few untimed warm-up pairs. Speedup is the median baseline latency over the median
pruned latency; accuracy delta is baseline accuracy minus pruned accuracy on the same
items.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, Protocol, TypeVar

from tqdm.auto import tqdm

from vissparse.bench.timing import median, quantile, timed
from vissparse.records import CallRecord

T = TypeVar("T")


class Output(Protocol):
    """What a benchmarked call returns: an answer and how many image tokens it kept."""

    text: str

    @property
    def n_kept(self) -> int:
        """Number of image tokens the call kept."""

    @property
    def n_image_tokens(self) -> int:
        """Number of image tokens before pruning."""


_PUNCT = re.compile(r"[^\w\s]")


def normalize_answer(text: str) -> str:
    """Lower-case, strip punctuation and articles, collapse spaces (VQA-style).

    Example:
        >>> normalize_answer("  The Red! ")
        'red'
    """
    words = _PUNCT.sub(" ", text.lower()).split()
    return " ".join(w for w in words if w not in {"a", "an", "the"})


def exact_match(answer: str, reference: str) -> bool:
    """Normalised exact match."""
    return normalize_answer(answer) == normalize_answer(reference)


def paired_benchmark(
    items: Sequence[T],
    run_baseline: Callable[[T], Output],
    run_pruned: Callable[[T], Output],
    reference: Callable[[T], str],
    keep_ratio: float,
    warmup: int = 3,
    progress: bool = True,
    desc: str = "benchmark",
    match: Callable[[str, str], bool] = exact_match,
    on_record: Callable[[CallRecord], None] | None = None,
) -> tuple[dict[str, Any], list[CallRecord]]:
    """Time and score ``run_baseline`` against ``run_pruned`` on every item.

    Returns a summary dict and one :class:`CallRecord` per item. ``on_record`` is called
    with each record as soon as its pair finishes, so a caller keeps the finished
    records of a run that is interrupted.

    Example:
        >>> from types import SimpleNamespace as NS
        >>> out = NS(text="red", n_kept=1, n_image_tokens=4)
        >>> summary, records = paired_benchmark(
        ...     ["x"], lambda i: out, lambda i: out, lambda i: "red", 0.25,
        ...     warmup=0, progress=False)
        >>> summary["accuracy"], len(records)
        (1.0, 1)
    """
    if not items:
        raise ValueError("`items` must hold at least one item to benchmark")
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"`warmup` must be an int >= 0, got {warmup!r}")
    for item in list(items)[:warmup]:
        run_baseline(item)
        run_pruned(item)
    records = []
    with tqdm(total=len(items), desc=desc, disable=not progress, leave=False) as bar:
        for i, item in enumerate(items):
            records.append(_pair(i, item, run_baseline, run_pruned, reference, keep_ratio, match))
            if on_record is not None:
                on_record(records[-1])
            bar.update()
    return summarize(records), records


def _pair(
    i: int,
    item: T,
    run_baseline: Callable[[T], Output],
    run_pruned: Callable[[T], Output],
    reference: Callable[[T], str],
    keep_ratio: float,
    match: Callable[[str, str], bool],
) -> CallRecord:
    """Item ``i``'s baseline and pruned calls, timed back to back (order alternating)."""
    if i % 2 == 0:
        base, base_ms = timed(partial(run_baseline, item))
        pruned, pruned_ms = timed(partial(run_pruned, item))
    else:
        pruned, pruned_ms = timed(partial(run_pruned, item))
        base, base_ms = timed(partial(run_baseline, item))
    ref = reference(item)
    return CallRecord(
        index=i,
        keep_ratio=keep_ratio,
        n_image_tokens=pruned.n_image_tokens,
        n_kept=pruned.n_kept,
        answer=pruned.text,
        baseline_answer=base.text,
        reference=ref,
        correct=match(pruned.text, ref),
        baseline_correct=match(base.text, ref),
        latency_ms=pruned_ms,
        baseline_latency_ms=base_ms,
        avg_image_tokens=getattr(pruned, "avg_image_tokens", None),
    )


def summarize(records: Sequence[CallRecord]) -> dict[str, Any]:
    """Aggregate records: medians of latency, speedup of medians, accuracies and delta."""
    n = len(records)
    pruned = [r.latency_ms for r in records]
    base = [r.baseline_latency_ms for r in records]
    accuracy = sum(r.correct for r in records) / n
    baseline_accuracy = sum(r.baseline_correct for r in records) / n
    return {
        "keep_ratio": records[0].keep_ratio,
        "n_samples": n,
        "speedup": median(base) / median(pruned),
        "accuracy": accuracy,
        "baseline_accuracy": baseline_accuracy,
        "accuracy_delta": baseline_accuracy - accuracy,
        "latency_ms": median(pruned),
        "baseline_latency_ms": median(base),
        "latency_ms_p10": quantile(pruned, 0.1),
        "latency_ms_p90": quantile(pruned, 0.9),
        "baseline_latency_ms_p10": quantile(base, 0.1),
        "baseline_latency_ms_p90": quantile(base, 0.9),
        "n_image_tokens": sum(r.n_image_tokens for r in records) / n,
        "n_kept": sum(r.n_kept for r in records) / n,
        "avg_image_tokens": sum(_seen(r) for r in records) / n,
        "effective_keep_ratio": sum(_seen(r) for r in records)
        / max(1, sum(r.n_image_tokens for r in records)),
    }


def _seen(record: CallRecord) -> float:
    """Image tokens a language-model layer saw on average (the kept ones, before the LM)."""
    return record.n_kept if record.avg_image_tokens is None else record.avg_image_tokens
