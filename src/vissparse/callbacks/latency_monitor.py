"""``LatencyMonitor``: latency of the pruned model per call, mean and percentiles."""

from __future__ import annotations

from collections.abc import Sequence

from torchmetrics import Metric

from vissparse.callbacks.base import PruningMonitor
from vissparse.lightning import BatchStats
from vissparse.metrics import Latency


class LatencyMonitor(PruningMonitor):
    """Logs ``latency_ms`` (pruned, per batch, as the pipeline timed it) and its statistics.

    Per batch: ``monitor/{stage}/latency_ms_step``; per epoch:
    ``monitor/{stage}/latency_ms_mean``, ``monitor/{stage}/latency_ms_p50``, ... The wall
    time of each whole step, baseline included, is kept in ``step_ms``.

    Example:
        >>> LatencyMonitor(percentiles=(50, 95)).latency.percentiles
        (50, 95)
    """

    name = "latency"

    def __init__(
        self,
        percentiles: Sequence[float] = (50, 90, 99),
        log_every_n_batches: int = 1,
        prefix: str = "monitor",
    ) -> None:
        super().__init__(log_every_n_batches, prefix)
        self.latency = Latency(percentiles=percentiles)

    def metrics(self) -> dict[str, Metric]:
        """The latency metric."""
        return {"latency": self.latency}

    def update(self, stats: BatchStats) -> dict[str, float]:
        """Add the batch's pruned latency."""
        self.latency.update(stats.answers.latency_ms)
        return {"latency_ms": stats.answers.latency_ms}

    def values(self) -> dict[str, float]:
        """Mean and percentiles over the epoch."""
        if not self.latency.update_count:
            return {}
        return {f"latency_ms_{k}": float(v) for k, v in self.latency.compute().items()}
