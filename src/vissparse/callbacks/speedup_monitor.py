"""``SpeedupMonitor``: baseline latency over pruned latency, paired per batch."""

from __future__ import annotations

import torch
from torchmetrics import Metric

from vissparse.callbacks.base import PruningMonitor
from vissparse.lightning import BatchStats
from vissparse.metrics import Speedup


class SpeedupMonitor(PruningMonitor):
    """Logs ``monitor/{stage}/speedup_step`` per batch, ``monitor/{stage}/speedup`` per epoch.

    Needs the module's ``measure_baseline=True``.

    Example:
        >>> SpeedupMonitor().speedup.higher_is_better
        True
    """

    name = "speedup"

    def __init__(self, log_every_n_batches: int = 1, prefix: str = "monitor") -> None:
        super().__init__(log_every_n_batches, prefix)
        self.speedup = Speedup()

    def metrics(self) -> dict[str, Metric]:
        """The speedup metric."""
        return {"speedup": self.speedup}

    def update(self, stats: BatchStats) -> dict[str, float]:
        """Add the batch's paired latencies."""
        base, pruned = stats.answers.baseline_latency_ms, stats.answers.latency_ms
        if base is None:
            raise ValueError("SpeedupMonitor needs the module's `measure_baseline=True`")
        self.speedup.update(torch.tensor([base]), torch.tensor([pruned]))
        return {"speedup": base / pruned}

    def values(self) -> dict[str, float]:
        """Speedup over the epoch."""
        return {"speedup": float(self.speedup.compute())} if self.speedup.update_count else {}
