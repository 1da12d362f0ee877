"""How ``VisSparseModule`` checks its DataLoaders: every sample answered, counted once.

Lightning fetches a first batch before ``on_validation_start``; these checks run on the
loaders before that batch is used (``check_collate`` from the module's ``setup``) and
decide how samples repeated across processes are left out (:func:`plan_shards`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


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


def as_loaders(loaders: Any) -> list[Any]:
    """One loader, a list/tuple or a dict of them (as Lightning holds them), as a list."""
    if loaders is None:
        return []
    if isinstance(loaders, dict):
        return list(loaders.values())
    return list(loaders) if isinstance(loaders, (list, tuple)) else [loaders]


def check_collate(loader: Any, stage: str) -> None:
    """Refuse a DataLoader that batches with torch's ``default_collate`` (no ``collate_fn``).

    ``default_collate`` cannot batch PIL images, and the module reads lists named
    ``images`` / ``questions`` that :func:`vissparse.data.collate_vqa` builds; without this
    check torch's error comes from the first fetch, before any hint of the module's.
    A loader with ``batch_size=None`` (the dataset yields whole batches) is left alone.

    Example:
        >>> from torch.utils.data import DataLoader
        >>> check_collate(DataLoader([1, 2], batch_size=2), "validate")
        Traceback (most recent call last):
        ...
        TypeError: the validate DataLoader has no `collate_fn` (torch's default_collate cannot batch VQA samples): pass `collate_fn=collate_vqa` (from vissparse.data) to your DataLoader, or use `VQADataModule`
    """  # noqa: E501
    from torch.utils.data import default_collate

    if getattr(loader, "batch_sampler", None) is None:
        return
    if getattr(loader, "collate_fn", None) is default_collate:
        raise TypeError(
            f"the {stage} DataLoader has no `collate_fn` (torch's default_collate cannot batch "
            "VQA samples): pass `collate_fn=collate_vqa` (from vissparse.data) to your "
            "DataLoader, or use `VQADataModule`"
        )


def check_drop_last(loader: Any, stage: str) -> None:
    """Refuse a DataLoader whose ``drop_last=True`` would leave samples unanswered.

    The metrics must cover every sample; a last, short batch that ``drop_last`` throws
    away would be missed without a word. ``drop_last=True`` is fine when the batch size
    divides the samples the loader sees (its process's share). (``trainer.predict``
    rebuilds its loaders without ``drop_last``.)

    Example:
        >>> from torch.utils.data import DataLoader
        >>> check_drop_last(DataLoader(range(4), batch_size=2, drop_last=True), "validate")
        >>> check_drop_last(DataLoader(range(5), batch_size=2, drop_last=True), "validate")
        Traceback (most recent call last):
        ...
        ValueError: `drop_last=True` makes the validate DataLoader skip 1 of its 5 samples (batch_size=2), so the metrics would miss them: pass `drop_last=False`
    """  # noqa: E501
    batches = getattr(loader, "batch_sampler", None)
    if batches is None or not getattr(batches, "drop_last", False):
        return
    size = getattr(batches, "batch_size", None)
    try:
        n = len(batches.sampler)
    except (AttributeError, TypeError):  # an iterable dataset: the count is unknown
        n = None
    if n is not None and isinstance(size, int) and n % size == 0:
        return
    skipped = f"{n % size} of its {n}" if n is not None and isinstance(size, int) else "the last"
    raise ValueError(
        f"`drop_last=True` makes the {stage} DataLoader skip {skipped} samples "
        f"(batch_size={size}), so the metrics would miss them: pass `drop_last=False`"
    )
