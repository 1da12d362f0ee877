"""``MockVQADataset``: synthetic mock-mode samples as a dataset."""

from __future__ import annotations

import operator
from typing import Any

from torch.utils.data import Dataset

from vissparse.mock.samples import MockSampleConfig, check_index, sample_at
from vissparse.mock.world import MockWorld


class MockVQADataset(Dataset):
    """``n_samples`` synthetic samples; ``image`` is a ``[N, D]`` tensor of image tokens.

    ``dim``, ``n_tokens`` and ``world_seed`` must match the mock ``VisSparse`` that
    answers them (its ``dim``, ``n_tokens`` and ``seed``). Each sample is built when it
    is read (``make_samples(n_samples, ...)[index]``), so the dataset holds none of them.

    Example:
        >>> ds = MockVQADataset(3, dim=32, n_tokens=64)
        >>> len(ds), ds[0]["image"].shape
        (3, torch.Size([64, 32]))
    """

    def __init__(
        self, n_samples: int, seed: int = 0, dim: int = 128, n_tokens: int = 1024,
        world_seed: int = 0,
    ) -> None:  # fmt: skip
        if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 1:
            raise ValueError(f"`n_samples` must be an int >= 1, got {n_samples!r}")
        check_index(n_samples - 1, "n_samples")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"`seed` must be an int, got {seed!r}")
        self.n_samples, self.seed = n_samples, seed
        self.world = MockWorld(dim=dim, seed=world_seed)
        self.config = MockSampleConfig(n_tokens=n_tokens)

    def __len__(self) -> int:
        return self.n_samples

    def __getitem__(self, index: int) -> dict[str, Any]:
        try:
            index = operator.index(index)  # ints, numpy and 0-d torch integers
        except TypeError:
            raise TypeError(f"`index` must be an int, got {index!r}") from None
        if not -self.n_samples <= index < self.n_samples:
            raise IndexError(f"`index` {index} is out of range for {self.n_samples} samples")
        index %= self.n_samples
        s = sample_at(index, self.world, self.config, self.seed)
        return {"image": s.image_tokens, "question": s.prompt, "answer": s.answer, "index": index}
