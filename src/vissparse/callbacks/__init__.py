"""Lightning callbacks that track latency, speedup and accuracy delta.

Example:
    >>> from vissparse.callbacks import LatencyMonitor, SpeedupMonitor, AccuracyDeltaMonitor
    >>> callbacks = [LatencyMonitor(), SpeedupMonitor(), AccuracyDeltaMonitor()]
"""

from vissparse.callbacks.accuracy_delta_monitor import AccuracyDeltaMonitor
from vissparse.callbacks.base import PruningMonitor
from vissparse.callbacks.latency_monitor import LatencyMonitor
from vissparse.callbacks.speedup_monitor import SpeedupMonitor

__all__ = ["AccuracyDeltaMonitor", "LatencyMonitor", "PruningMonitor", "SpeedupMonitor"]
