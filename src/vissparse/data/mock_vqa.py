"""``MockVQADataset``: synthetic mock-mode samples as a dataset."""

from __future__ import annotations

from typing import Any

from torch.utils.data import Dataset

from vissparse.mock.samples import MockSampleConfig, make_samples
from vissparse.mock.world import MockWorld


class MockVQADataset(Dataset):
    """``n_samples`` synthetic samples; ``image`` is a ``[N, D]`` tensor of image tokens.

    ``dim``, ``n_tokens`` and ``world_seed`` must match the mock ``VisSparse`` that
    answers them (its ``dim``, ``n_tokens`` and ``seed``).

    Example:
        >>> ds = MockVQADataset(3, dim=32, n_tokens=64)
        >>> len(ds), ds[0]["image"].shape
        (3, torch.Size([64, 32]))
    """

    def __init__(
        self, n_samples: int, seed: int = 0, dim: int = 128, n_tokens: int = 1024,
        world_seed: int = 0,
    ) -> None:  # fmt: skip
        world = MockWorld(dim=dim, seed=world_seed)
        self.samples = make_samples(n_samples, world, MockSampleConfig(n_tokens=n_tokens), seed)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, Any]:
        s = self.samples[index]
        return {"image": s.image_tokens, "question": s.prompt, "answer": s.answer, "index": index}
