"""``AccuracyDeltaMonitor``: accuracy lost to pruning, on the same samples."""

from __future__ import annotations

from torchmetrics import Metric

from vissparse.callbacks.base import PruningMonitor
from vissparse.lightning import BatchStats
from vissparse.metrics import AccuracyDelta


class AccuracyDeltaMonitor(PruningMonitor):
    """Logs accuracy, baseline accuracy and their difference per batch and per epoch.

    Needs reference answers in the batches and the module's ``measure_baseline=True``.

    Example:
        >>> AccuracyDeltaMonitor().delta.higher_is_better
        False
    """

    name = "accuracy_delta"

    def __init__(self, log_every_n_batches: int = 1, prefix: str = "monitor") -> None:
        super().__init__(log_every_n_batches, prefix)
        self.delta = AccuracyDelta()

    def metrics(self) -> dict[str, Metric]:
        """The accuracy-delta metric."""
        return {"delta": self.delta}

    def update(self, stats: BatchStats) -> dict[str, float]:
        """Add the batch's correctness, pruned and baseline."""
        if stats.correct is None or stats.baseline_correct is None:
            raise ValueError(
                "AccuracyDeltaMonitor needs reference answers and `measure_baseline=True`"
            )
        self.delta.update(stats.correct, stats.baseline_correct)
        acc = float(stats.correct.float().mean())
        base = float(stats.baseline_correct.float().mean())
        return {"accuracy": acc, "baseline_accuracy": base, "accuracy_delta": base - acc}

    def values(self) -> dict[str, float]:
        """Epoch accuracy, baseline accuracy and delta (synced over processes)."""
        if not self.delta.update_count:
            return {}
        with self.delta.sync_context():  # the counts of every process
            return {
                "accuracy": float(self.delta.accuracy()),
                "baseline_accuracy": float(self.delta.baseline_accuracy()),
                "accuracy_delta": float(self.delta.baseline_accuracy() - self.delta.accuracy()),
            }
