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
from vissparse.metrics import AccuracyDelta, Latency, Speedup
from vissparse.records import BatchAnswers


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


@dataclass(frozen=True)
class Shard:
    """Which samples of a process's validation stream are padding repeats.

    Lightning's ``DistributedSampler`` pads the dataset with repeated samples so every
    process gets as many; the padded list's position ``p`` goes to process ``p % world``,
    so this process's ``j``-th sample is a repeat exactly when ``rank + j * world >= n``.
    """

    rank: int
    world: int
    n: int

    def real(self, start: int, count: int) -> list[bool]:
        """For this process's samples ``start .. start + count - 1``: not a repeat?"""
        return [self.rank + j * self.world < self.n for j in range(start, start + count)]


def _samplers(loader: Any) -> list[Any]:
    found = [getattr(loader, "sampler", None)]
    batch_sampler = getattr(loader, "batch_sampler", None)
    found.append(getattr(batch_sampler, "sampler", None))
    return [s for s in found if s is not None]


def plan_shards(loaders: Any, world_size: int, stage: str) -> Shard | None:
    """How to count each sample exactly once under ``world_size`` processes.

    ``None`` when nothing is repeated (one process, or Lightning's unrepeated sampler as
    ``VQADataModule`` and ``trainer.predict`` use); a :class:`Shard` for a padding
    ``DistributedSampler`` (a plain ``DataLoader`` given to ``trainer.validate``). Any
    other loader under several processes is refused before the first batch, since its
    samples would be counted once per process.

    Example:
        >>> plan_shards(None, 1, "validate") is None
        True
    """
    from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
    from torch.utils.data import DistributedSampler

    if world_size <= 1:
        return None
    loaders = loaders if isinstance(loaders, (list, tuple)) else [loaders]
    if len(loaders) != 1:
        raise ValueError(f"`trainer.{stage}` takes one dataloader for a VisSparseModule, "
                         f"got {len(loaders)}")  # fmt: skip
    samplers = _samplers(loaders[0])
    if any(isinstance(s, UnrepeatedDistributedSampler) for s in samplers):
        return None
    shard = [s for s in samplers if isinstance(s, DistributedSampler)]
    fix = ("use `VQADataModule` (from vissparse.data), or leave the Trainer's "
           "`use_distributed_sampler=True` with a plain map-style DataLoader")  # fmt: skip
    if not shard:
        raise ValueError(
            f"under {world_size} processes the {stage} DataLoader is not sharded by a "
            f"DistributedSampler, so every process would count every sample: {fix}"
        )
    sampler = shard[0]
    n = len(sampler.dataset)  # type: ignore[arg-type]
    if sampler.drop_last and n % sampler.num_replicas:
        raise ValueError(
            f"the DistributedSampler drops {n % sampler.num_replicas} of {n} samples "
            f"(drop_last=True), so the metrics would miss them: {fix}"
        )
    return Shard(rank=sampler.rank, world=sampler.num_replicas, n=n)


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

    def on_validation_start(self) -> None:
        """Place the model, and plan how each sample is counted once, before any batch."""
        self._place_model()
        self._shard = plan_shards(self.trainer.val_dataloaders, self.trainer.world_size,
                                  "validate")  # fmt: skip
        self._seen = 0

    def on_predict_start(self) -> None:
        """Place the model before the first batch; refuse loaders that repeat samples."""
        self._place_model()
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
