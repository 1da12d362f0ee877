"""Shared wiring of the VisSparse monitors: hooks, sanity-check skipping, logging, state."""

from __future__ import annotations

import time
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from torchmetrics import Metric
from typing_extensions import override

from vissparse.lightning import BatchStats, VisSparseModule


class PruningMonitor(Callback):
    """Base class: update metrics from each batch of ``validate`` / ``predict`` and log.

    Subclasses define ``metrics()`` (name -> Metric), ``update(stats)`` and ``values()``.
    Values are logged to every trainer logger per batch
    (``{prefix}/{stage}/{name}_step``, this process's values) and per epoch
    (``{prefix}/{stage}/{name}``, synced over processes); the last epoch values are kept
    on ``last_values``.
    """

    name = "monitor"

    def __init__(self, log_every_n_batches: int = 1, prefix: str = "monitor") -> None:
        if isinstance(log_every_n_batches, bool) or not isinstance(log_every_n_batches, int) \
                or log_every_n_batches < 1:  # fmt: skip
            raise ValueError(
                f"`log_every_n_batches` must be an int >= 1, got {log_every_n_batches!r}"
            )
        self.log_every_n_batches = log_every_n_batches
        self.prefix = prefix
        self.last_values: dict[str, float] = {}
        self._restored = False
        self.batches_seen = 0
        self.step_ms: list[float] = []
        self._start = 0.0

    # --- to be defined by subclasses -------------------------------------------------
    def metrics(self) -> dict[str, Metric]:
        """The metric objects this monitor owns."""
        raise NotImplementedError

    def update(self, stats: BatchStats) -> dict[str, float]:
        """Update the metrics from one batch; return the per-batch values to log."""
        raise NotImplementedError

    def values(self) -> dict[str, float]:
        """The epoch values (synced over processes)."""
        raise NotImplementedError

    # --- hooks -----------------------------------------------------------------------
    @override
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if not isinstance(pl_module, VisSparseModule):
            raise TypeError(
                f"{type(self).__name__} needs a VisSparseModule, got {type(pl_module).__name__}"
            )

    @property
    @override
    def state_key(self) -> str:
        # several monitors of one class can coexist when their prefixes differ
        return f"{type(self).__name__}[prefix={self.prefix}]"

    def _start_batch(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)
        self._start = time.perf_counter()

    def _end_batch(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if trainer.sanity_checking:
            return
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)
        stats: BatchStats | None = getattr(pl_module, "last_batch", None)
        if stats is None:  # a batch of padding repeats only: nothing was answered
            return
        self.step_ms.append((time.perf_counter() - self._start) * 1e3)
        values = self.update(stats)
        self.batches_seen += 1
        if values and self.batches_seen % self.log_every_n_batches == 0:
            self._log(
                trainer,
                {f"{self.prefix}/{stage}/{k}_step": v for k, v in values.items()},
                self.batches_seen,
            )

    def _end_epoch(self, trainer: L.Trainer, stage: str) -> None:
        if trainer.sanity_checking:
            return
        values = self.values()  # every process computes (syncs), rank 0 logs
        if values:
            metrics = {f"{self.prefix}/{stage}/{k}": v for k, v in values.items()}
            self._log(trainer, metrics, self.batches_seen)
        self.last_values = values

    def _reset(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Start an epoch: metrics on the module's device (placed by now), counts at zero.

        A state just restored with ``load_state_dict`` is kept for the epoch that follows.
        """
        if trainer.sanity_checking:
            return
        for metric in self.metrics().values():
            if not self._restored:
                metric.reset()
            metric.to(pl_module.device)
        self._restored = False

    @staticmethod
    def _log(trainer: L.Trainer, metrics: dict[str, float], step: int) -> None:
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=step)

    @override
    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._reset(trainer, pl_module)

    @override
    def on_validation_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:  # fmt: skip
        self._start_batch(trainer, pl_module)

    @override
    def on_validation_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
        batch_idx: int, dataloader_idx: int = 0,
    ) -> None:  # fmt: skip
        self._end_batch(trainer, pl_module, "val")

    @override
    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._end_epoch(trainer, "val")

    @override
    def on_predict_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._reset(trainer, pl_module)

    @override
    def on_predict_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:  # fmt: skip
        self._start_batch(trainer, pl_module)

    @override
    def on_predict_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
        batch_idx: int, dataloader_idx: int = 0,
    ) -> None:  # fmt: skip
        self._end_batch(trainer, pl_module, "predict")

    @override
    def on_predict_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._end_epoch(trainer, "predict")

    # --- checkpointing ---------------------------------------------------------------
    @override
    def state_dict(self) -> dict[str, Any]:
        states = {
            name: {key: _clone(getattr(metric, key)) for key in metric._defaults}
            for name, metric in self.metrics().items()
        }
        counts = {name: metric.update_count for name, metric in self.metrics().items()}
        return {"batches_seen": self.batches_seen, "step_ms": list(self.step_ms),
                "metrics": states, "update_counts": counts}  # fmt: skip

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.batches_seen = int(state_dict["batches_seen"])
        self.step_ms = list(state_dict["step_ms"])
        for name, metric in self.metrics().items():
            for key, value in state_dict["metrics"][name].items():
                setattr(metric, key, _clone(value))
            metric._update_count = int(state_dict["update_counts"][name])
            metric._computed = None
        self._restored = True


def _clone(value: Any) -> Any:
    if isinstance(value, list):
        return [v.detach().clone() for v in value]
    return value.detach().clone()
