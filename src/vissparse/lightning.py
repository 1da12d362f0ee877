"""``VisSparseModule``: evaluate a pruning setting with ``trainer.validate`` / ``predict``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import lightning as L
import torch
from torch import Tensor
from torchmetrics import MeanMetric

from vissparse.api import VisSparse
from vissparse.bench.paired import exact_match
from vissparse.loader_checks import (
    Shard,
    as_loaders,
    check_collate,
    check_drop_last,
    plan_shards,
)
from vissparse.metrics import AccuracyDelta, Latency, Speedup
from vissparse.records import BatchAnswers

__all__ = ["BatchStats", "Shard", "VisSparseModule", "plan_shards"]


@dataclass
class BatchStats:
    """What the module measured on its last batch; callbacks read it.

    Attributes:
        answers: the batch's answers, masks and latencies.
        correct: ``[n]`` bool, pruned answer matches the reference (``None`` without one).
        baseline_correct: ``[n]`` bool for the baseline (``None`` if not measured).
        index: ``[n]`` dataset indices of the samples answered (``None`` without them).
    """

    answers: BatchAnswers
    correct: Tensor | None
    baseline_correct: Tensor | None
    index: Tensor | None = None


class VisSparseModule(L.LightningModule):
    """A LightningModule around a :class:`VisSparse` pipeline (mock or HuggingFace).

    ``validation_step`` runs the pruned model and, paired on the same batch, the unpruned
    baseline; it scores both against the references with ``match`` (VQA-style normalised
    exact match by default) and logs ``val/accuracy``, ``val/baseline_accuracy``,
    ``val/accuracy_delta``, ``val/speedup`` and ``val/latency_ms_{mean,p50,p90,p99}``.
    ``predict_step`` returns one dict per sample. Batches come from
    :func:`vissparse.data.collate_vqa`.

    Example:
        >>> module = VisSparseModule(base_model="mock", mock=True, keep_ratio=0.25,
        ...                          dim=32, n_tokens=64)
        >>> module.vissparse.keep_ratio
        0.25
    """

    def __init__(
        self,
        vissparse: VisSparse | None = None,
        *,
        measure_baseline: bool = True,
        match: Callable[[str, str], bool] = exact_match,
        generate_kwargs: dict[str, Any] | None = None,
        warmup: bool = True,
        **vissparse_kwargs: Any,
    ) -> None:
        super().__init__()
        if vissparse is None:
            vissparse = VisSparse(**vissparse_kwargs)
        elif vissparse_kwargs:
            raise TypeError(
                f"pass either a VisSparse instance or its arguments, not both "
                f"(got {sorted(vissparse_kwargs)})"
            )
        if not isinstance(vissparse, VisSparse):
            raise TypeError(f"`vissparse` must be a VisSparse, got {type(vissparse).__name__}")
        self.vissparse = vissparse
        self.measure_baseline = measure_baseline
        self.match = match
        self.generate_kwargs = dict(generate_kwargs or {})
        if vissparse.mock and self.generate_kwargs:
            raise ValueError("`generate_kwargs` apply to HuggingFace models, not mock mode")
        self.accuracy = MeanMetric()
        self.baseline_accuracy = MeanMetric()
        self.accuracy_delta = AccuracyDelta()
        self.speedup = Speedup()
        self.latency = Latency()
        self.warmup = warmup
        self._warm = False
        self.last_batch: BatchStats | None = None
        self._shard: Shard | None = None
        self._seen = 0

    # --- placement -------------------------------------------------------------------
    def _place_model(self) -> None:
        """Put the HF model on this module's device unless ``device_map`` placed it.

        ``VisSparse`` is not a submodule (its model may be dispatched over devices by
        ``device_map``), so Lightning does not move it; this does, once the trainer has
        chosen the device.
        """
        if self.vissparse.mock:
            return
        model = self.vissparse.pipeline.model
        if getattr(model, "hf_device_map", None):
            return
        if model.device != self.device:
            model.to(self.device)

    def setup(self, stage: str) -> None:
        """Check the DataLoaders given to ``trainer.validate`` / ``predict`` for a collate_fn.

        This runs before Lightning fetches the first batch (which happens before
        ``on_validation_start``), so a loader without ``collate_fn`` gets the module's hint
        rather than torch's ``default_collate`` error. The loaders are read from the loop's
        data source (Lightning keeps no public handle on them yet); loaders that a
        datamodule makes are checked in ``on_*_start``.
        """
        loop = (
            getattr(self.trainer, f"{stage}_loop", None)
            if stage in ("validate", "predict")
            else None
        )
        given = getattr(getattr(loop, "_data_source", None), "instance", None)
        if isinstance(given, (L.LightningModule, L.LightningDataModule)):
            return
        for loader in as_loaders(given):
            check_collate(loader, stage)

    def _check_loaders(self, loaders: Any, stage: str) -> None:
        for loader in as_loaders(loaders):
            check_collate(loader, stage)
            check_drop_last(loader, stage)

    def on_validation_start(self) -> None:
        """Place the model, and plan how each sample is counted once, before any batch."""
        self._place_model()
        self._check_loaders(self.trainer.val_dataloaders, "validate")
        self._shard = plan_shards(self.trainer.val_dataloaders, self.trainer.world_size,
                                  "validate")  # fmt: skip
        self._seen = 0

    def on_predict_start(self) -> None:
        """Place the model before the first batch; refuse loaders that repeat samples."""
        self._place_model()
        self._check_loaders(self.trainer.predict_dataloaders, "predict")
        if plan_shards(self.trainer.predict_dataloaders, self.trainer.world_size, "predict"):
            raise ValueError(  # Lightning shards predict without repeats; a padded one does
                "the predict DataLoader repeats samples across processes: use "
                "`VQADataModule` (from vissparse.data) or Lightning's own sampler"
            )

    # --- running a batch -------------------------------------------------------------
    def answer(self, batch: dict[str, Any]) -> BatchStats:
        """Answer a collated batch and score it; stores the result on ``last_batch``.

        With ``warmup=True`` the first batch a process sees is answered once untimed
        first, so one-off start-up costs do not land in the latency of either side.
        """
        if not isinstance(batch, dict) or not {"images", "questions"} <= batch.keys():
            got = sorted(batch) if isinstance(batch, dict) else type(batch).__name__
            raise TypeError(
                "a batch must be a dict with 'images' and 'questions' (and 'answers' to "
                f"score), got {got}: pass `collate_fn=collate_vqa` (from vissparse.data) to "
                "your DataLoader"
            )
        if self.warmup and not self._warm:
            self.vissparse.pipeline.answer_batch(
                batch["images"], batch["questions"], measure_baseline=self.measure_baseline,
                **self.generate_kwargs,
            )  # fmt: skip
            self._warm = True
        answers: BatchAnswers = self.vissparse.pipeline.answer_batch(
            batch["images"], batch["questions"], measure_baseline=self.measure_baseline,
            **self.generate_kwargs,
        )  # fmt: skip
        refs = batch.get("answers")
        index = batch.get("index")
        correct = baseline_correct = None
        if refs is not None:
            correct = torch.tensor(
                [self.match(a, r) for a, r in zip(answers.texts, refs, strict=True)]
            )
            if answers.baseline_texts is not None:
                baseline_correct = torch.tensor(
                    [self.match(a, r) for a, r in zip(answers.baseline_texts, refs, strict=True)]
                )
        self.last_batch = BatchStats(answers, correct, baseline_correct, index)
        return self.last_batch

    def forward(self, batch: dict[str, Any]) -> BatchStats:
        """Same as :meth:`answer`."""
        return self.answer(batch)

    # --- validation ------------------------------------------------------------------
    def _real_samples(self, batch: dict[str, Any]) -> dict[str, Any] | None:
        """The batch without the sampler's padding repeats (None if nothing is left)."""
        if self._shard is None or not isinstance(batch, dict) or "questions" not in batch:
            return batch
        n = len(batch["questions"])
        real = self._shard.real(self._seen, n)
        self._seen += n
        if all(real):
            return batch
        if not any(real):
            return None
        keep = [i for i, r in enumerate(real) if r]
        return {k: v[keep] if isinstance(v, Tensor) else [v[i] for i in keep]
                for k, v in batch.items()}  # fmt: skip

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        """Pruned vs baseline on one batch; updates and logs the metrics.

        Under several processes, the samples Lightning's ``DistributedSampler`` repeats
        to even out the shards are left out, so every sample counts exactly once.
        """
        real = self._real_samples(batch)
        if real is None:  # only repeats: nothing to answer or count
            self.last_batch = None
            return
        stats = self.answer(real)
        ans, n = stats.answers, stats.answers.n
        if stats.correct is None:
            raise ValueError("validation batches need reference `answers`")
        self.accuracy.update(stats.correct.float().to(self.device))
        self.log("val/accuracy", self.accuracy, on_epoch=True, batch_size=n)
        self.latency.update(ans.latency_ms)
        if stats.baseline_correct is not None and ans.baseline_latency_ms is not None:
            self.baseline_accuracy.update(stats.baseline_correct.float().to(self.device))
            self.accuracy_delta.update(stats.correct, stats.baseline_correct)
            self.speedup.update(
                torch.tensor([ans.baseline_latency_ms]), torch.tensor([ans.latency_ms])
            )
            self.log("val/baseline_accuracy", self.baseline_accuracy, on_epoch=True, batch_size=n)
            self.log("val/accuracy_delta", self.accuracy_delta, on_epoch=True, batch_size=n)
            self.log("val/speedup", self.speedup, on_epoch=True, batch_size=n)

    def on_validation_epoch_end(self) -> None:
        """Log latency statistics (synced over processes) and reset them."""
        if self.latency.update_count:
            stats = self.latency.compute()
            self.log_dict({f"val/latency_ms_{k}": v.float() for k, v in stats.items()})
        self.latency.reset()

    # --- prediction ------------------------------------------------------------------
    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> list[dict[str, Any]]:
        """One dict per sample: answer, keep mask(s) and per-sample metrics.

        ``latency_ms`` is the batch's latency divided by its size (amortized).
        """
        stats = self.answer(batch)
        ans = stats.answers
        rows = []
        for i in range(ans.n):
            row: dict[str, Any] = {
                "index": int(batch["index"][i]) if "index" in batch else i,
                "question": batch["questions"][i],
                "answer": ans.texts[i],
                "keep_mask": ans.keep_masks[i],
                "n_image_tokens": ans.n_image_tokens[i],
                "n_kept": ans.n_kept[i],
                "latency_ms": ans.latency_ms / ans.n,
            }
            if stats.correct is not None:
                row["reference"] = batch["answers"][i]
                row["correct"] = bool(stats.correct[i])
            if ans.baseline_texts is not None and ans.baseline_latency_ms is not None:
                row["baseline_answer"] = ans.baseline_texts[i]
                row["baseline_latency_ms"] = ans.baseline_latency_ms / ans.n
                row["speedup"] = ans.baseline_latency_ms / ans.latency_ms
                if stats.baseline_correct is not None:
                    row["baseline_correct"] = bool(stats.baseline_correct[i])
            rows.append(row)
        return rows

    def configure_optimizers(self) -> None:
        """No training: VisSparse is training-free."""
        return None
