"""Per-call records: what every benchmarked call measured."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class CallRecord:
    """One paired call: the pruned model and the unpruned baseline on the same input.

    ``accuracy`` is 1.0 when the pruned answer matches the reference, else 0.0.

    Example:
        >>> r = CallRecord(0, 0.1, 1024, 103, "red", "red", "red", True, True, 2.0, 8.0)
        >>> r.speedup, r.accuracy
        (4.0, 1.0)
    """

    index: int
    keep_ratio: float
    n_image_tokens: int
    n_kept: int
    answer: str
    baseline_answer: str
    reference: str
    correct: bool
    baseline_correct: bool
    latency_ms: float
    baseline_latency_ms: float
    avg_image_tokens: float | None = None  # stage="llm": the mean over LM layers

    @property
    def accuracy(self) -> float:
        """1.0 if the pruned answer is right, else 0.0."""
        return float(self.correct)

    @property
    def speedup(self) -> float:
        """Baseline latency over pruned latency for this pair."""
        return self.baseline_latency_ms / self.latency_ms

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict, with ``accuracy`` and ``speedup`` included."""
        return {**asdict(self), "accuracy": self.accuracy, "speedup": self.speedup}


@dataclass
class BatchAnswers:
    """A batch answered by the pruned model and, when measured, the unpruned baseline.

    Latencies are for the whole batch, in milliseconds.

    Example:
        >>> BatchAnswers(["red"], None, [[]], [16], [4], 2.0, None).n
        1
    """

    texts: list[str]
    baseline_texts: list[str] | None
    keep_masks: list[list[Any]]
    n_image_tokens: list[int]
    n_kept: list[int]
    latency_ms: float
    baseline_latency_ms: float | None

    @property
    def n(self) -> int:
        """Batch size."""
        return len(self.texts)
