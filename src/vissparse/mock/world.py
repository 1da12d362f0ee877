"""The synthetic world of mock mode: a vocabulary of word vectors, objects and colours.

Every word has a fixed random unit vector (seeded by the world seed and the word), which
plays the part of the language model's input embedding. Objects (``car``, ``dog``, ...)
are the things a question asks about; colours are the answer classes.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass, field

import torch
from torch import Tensor

OBJECTS = (
    "car", "dog", "house", "tree", "boat", "bird", "flower", "kite",
    "bus", "cat", "ball", "chair", "lamp", "cup", "hat", "train",
)  # fmt: skip
COLOURS = ("red", "green", "blue", "yellow", "black", "white", "orange", "purple")
QUESTION_TEMPLATES = (
    "What color is the {obj}?",
    "Which colour does the {obj} have?",
    "Tell me the color of the {obj}.",
    "What is the colour of that {obj}?",
)
SYSTEM_PROMPT = "You are a helpful assistant. Look at the image and answer with one word."

_WORD = re.compile(r"[a-z]+")


def tokenize(text: str) -> list[str]:
    """Lower-case words of ``text``; the mock tokenizer.

    Example:
        >>> tokenize("What color is the car?")
        ['what', 'color', 'is', 'the', 'car']
    """
    return _WORD.findall(text.lower())


@dataclass
class MockWorld:
    """Word vectors of width ``dim``, deterministic in ``seed``.

    Example:
        >>> world = MockWorld(dim=16)
        >>> world.embed(["car", "car"]).shape
        torch.Size([2, 16])
    """

    dim: int = 128
    seed: int = 0
    _cache: dict[str, Tensor] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if isinstance(self.dim, bool) or not isinstance(self.dim, int) or self.dim < 8:
            raise ValueError(f"`dim` must be an int >= 8, got {self.dim!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise TypeError(f"`seed` must be an int, got {self.seed!r}")

    def vector(self, word: str) -> Tensor:
        """The unit vector of one word."""
        vec = self._cache.get(word)
        if vec is None:
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + zlib.crc32(word.encode()))
            vec = torch.randn(self.dim, generator=gen)
            vec = vec / vec.norm()
            self._cache[word] = vec
        return vec

    def embed(self, words: list[str]) -> Tensor:
        """``[len(words), dim]`` embeddings."""
        if not words:
            return torch.zeros(0, self.dim)
        return torch.stack([self.vector(w) for w in words])

    def colour_prototypes(self) -> Tensor:
        """``[len(COLOURS), dim]`` answer-class prototypes."""
        return self.embed(list(COLOURS))
