"""torchmetrics metrics of pruning: speedup, accuracy delta, latency.

Example:
    >>> import torch
    >>> from vissparse.metrics import Speedup
    >>> Speedup()(torch.tensor([8.0]), torch.tensor([2.0]))
    tensor(4., dtype=torch.float64)
"""

from vissparse.metrics.accuracy_delta import AccuracyDelta
from vissparse.metrics.functional import accuracy_delta, latency_stats, speedup
from vissparse.metrics.latency import Latency
from vissparse.metrics.speedup import Speedup

__all__ = ["AccuracyDelta", "Latency", "Speedup", "accuracy_delta", "latency_stats", "speedup"]
