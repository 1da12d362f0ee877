"""``collate_vqa`` and ``VQADataModule``."""

from __future__ import annotations

import os
from typing import Any

import lightning as L
import torch
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import DataLoader, Dataset

from vissparse.data.mock_vqa import MockVQADataset
from vissparse.data.vqa_jsonl import VQAJsonlDataset


def collate_vqa(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Batch VQA samples: lists of images, questions and answers, and their indices.

    Example:
        >>> collate_vqa([{"image": 1, "question": "q", "answer": "a", "index": 4}])["index"]
        tensor([4])
    """
    return {
        "images": [it["image"] for it in items],
        "questions": [it["question"] for it in items],
        "answers": [it["answer"] for it in items],
        "index": torch.tensor([it["index"] for it in items], dtype=torch.long),
    }


class VQADataModule(L.LightningDataModule):
    """Validation / prediction loaders over a VQA dataset (a JSONL path or a dataset).

    Under several processes each sample goes to exactly one process (no padding by
    repeated samples, uneven last batches allowed), so aggregated accuracies are exact.

    Example:
        >>> dm = VQADataModule(MockVQADataset(5, dim=32, n_tokens=64), batch_size=2)
        >>> len(dm.val_dataloader())
        3
    """

    def __init__(
        self, data: Dataset | str | os.PathLike[str], batch_size: int = 8, num_workers: int = 0
    ) -> None:
        super().__init__()
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"`batch_size` must be an int >= 1, got {batch_size!r}")
        self.dataset = data if isinstance(data, Dataset) else VQAJsonlDataset(data)
        self.batch_size = batch_size
        self.num_workers = num_workers

    @classmethod
    def mock(
        cls, n_samples: int, seed: int = 0, batch_size: int = 8, **kwargs: Any
    ) -> VQADataModule:
        """A data module over :class:`MockVQADataset`."""
        return cls(MockVQADataset(n_samples, seed=seed, **kwargs), batch_size=batch_size)

    def _loader(self) -> DataLoader:
        sampler = None
        trainer = getattr(self, "trainer", None)
        if trainer is not None and trainer.world_size > 1:
            if len(self.dataset) < trainer.world_size:  # type: ignore[arg-type]
                raise ValueError(
                    f"{len(self.dataset)} samples cannot be shared by {trainer.world_size} "  # type: ignore[arg-type]
                    "processes: every process needs at least one sample"
                )
            sampler = UnrepeatedDistributedSampler(
                self.dataset, num_replicas=trainer.world_size, rank=trainer.global_rank,
                shuffle=False,
            )  # fmt: skip
        return DataLoader(
            self.dataset, batch_size=self.batch_size, shuffle=False, sampler=sampler,
            num_workers=self.num_workers, collate_fn=collate_vqa,
        )  # fmt: skip

    def val_dataloader(self) -> DataLoader:
        """The evaluation loader."""
        return self._loader()

    def predict_dataloader(self) -> DataLoader:
        """The same samples, for ``trainer.predict``."""
        return self._loader()
