"""Synthetic image-token samples with planted ground truth.

Each sample is a ``side x side`` grid of image tokens (default 32 x 32 = 1024) holding:

- one *answer* region: a small square of tokens on the object the question asks about,
  each ``object_weight * v(object) + colour_weight * v(colour) + noise``; these tokens
  relate to the prompt (they share the object's vector with it) and carry the answer;
- several *distractor* regions: other objects in other colours, built the same way;
- *background*: noise.

The question names the answer object; the reference answer is its colour.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

from vissparse.mock.world import COLOURS, OBJECTS, QUESTION_TEMPLATES, MockWorld


@dataclass(frozen=True)
class MockSampleConfig:
    """Knobs of the synthetic workload.

    Example:
        >>> MockSampleConfig(n_tokens=256).side
        16
    """

    n_tokens: int = 1024
    answer_size: int = 3
    n_distractors: int = 4
    distractor_size: int = 4
    object_weight: float = 1.0
    colour_weight: float = 1.0
    noise: float = 0.6

    def __post_init__(self) -> None:
        side = round(self.n_tokens**0.5)
        if side * side != self.n_tokens or side < 4:
            raise ValueError(f"`n_tokens` must be a square number >= 16, got {self.n_tokens!r}")
        if not 1 <= self.answer_size <= side // 2:
            raise ValueError(f"`answer_size` must be in [1, {side // 2}], got {self.answer_size}")
        if self.n_distractors < 0 or self.n_distractors >= len(OBJECTS):
            raise ValueError(f"`n_distractors` must be in [0, {len(OBJECTS) - 1}]")

    @property
    def side(self) -> int:
        """Side of the square token grid."""
        return round(self.n_tokens**0.5)


@dataclass
class MockSample:
    """One synthetic image-question pair.

    Attributes:
        image_tokens: ``[N, D]`` image tokens (the mock's "image", already in the
            language model's embedding space).
        prompt: the question, e.g. ``"What color is the car?"``.
        answer: the reference answer, a colour word.
        answer_tokens: ``[N]`` bool, the planted tokens that carry the answer.
        objects: ``(object, colour)`` of every planted region, the answer first.
    """

    image_tokens: Tensor
    prompt: str
    answer: str
    answer_tokens: Tensor
    objects: list[tuple[str, str]]


def _place(side: int, size: int, taken: Tensor, rng: random.Random) -> Tensor:
    """Indices of a free ``size x size`` square; falls back to overlapping after tries."""
    for attempt in range(200):
        r, c = rng.randrange(side - size + 1), rng.randrange(side - size + 1)
        rows = torch.arange(r, r + size).repeat_interleave(size)
        cols = torch.arange(c, c + size).repeat(size)
        idx = rows * side + cols
        if attempt == 199 or not bool(taken[idx].any()):
            return idx
    raise AssertionError("unreachable")


def make_sample(world: MockWorld, config: MockSampleConfig, rng: random.Random) -> MockSample:
    """Build one sample from ``rng`` (a ``random.Random``), deterministically.

    Example:
        >>> s = make_sample(MockWorld(dim=16), MockSampleConfig(n_tokens=64), random.Random(0))
        >>> s.image_tokens.shape, int(s.answer_tokens.sum())
        (torch.Size([64, 16]), 9)
    """
    gen = torch.Generator().manual_seed(rng.randrange(2**31))
    n, d = config.n_tokens, world.dim
    tokens = torch.randn(n, d, generator=gen) * (config.noise / d**0.5)
    taken = torch.zeros(n, dtype=torch.bool)
    answer_tokens = torch.zeros(n, dtype=torch.bool)
    names = rng.sample(OBJECTS, config.n_distractors + 1)
    colours = [rng.choice(COLOURS) for _ in names]
    # distractors never share the answer's colour, so losing the answer region matters
    colours[1:] = [rng.choice([c for c in COLOURS if c != colours[0]]) for _ in colours[1:]]
    for i, (obj, colour) in enumerate(zip(names, colours, strict=True)):
        size = config.answer_size if i == 0 else config.distractor_size
        idx = _place(config.side, size, taken, rng)
        taken[idx] = True
        signal = config.object_weight * world.vector(obj) + config.colour_weight * world.vector(
            colour
        )
        tokens[idx] += signal
        if i == 0:
            answer_tokens[idx] = True
    prompt = rng.choice(QUESTION_TEMPLATES).format(obj=names[0])
    return MockSample(
        image_tokens=tokens,
        prompt=prompt,
        answer=colours[0],
        answer_tokens=answer_tokens,
        objects=list(zip(names, colours, strict=True)),
    )


def make_samples(
    n_samples: int, world: MockWorld, config: MockSampleConfig | None = None, seed: int = 0
) -> list[MockSample]:
    """``n_samples`` samples, the same for the same ``seed``.

    Example:
        >>> len(make_samples(3, MockWorld(dim=16), MockSampleConfig(n_tokens=64)))
        3
    """
    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 1:
        raise ValueError(f"`n_samples` must be an int >= 1, got {n_samples!r}")
    return list(itertools.islice(iter_samples(world, config, seed), n_samples))


def iter_samples(
    world: MockWorld, config: MockSampleConfig | None = None, seed: int = 0
) -> Iterator[MockSample]:
    """The endless stream whose first ``n`` items are ``make_samples(n, ...)``.

    Holds one sample at a time, so sample ``i`` alone costs no memory for the others.

    Example:
        >>> cfg = MockSampleConfig(n_tokens=64)
        >>> one = next(itertools.islice(iter_samples(MockWorld(dim=16), cfg), 2, None))
        >>> one.prompt == make_samples(3, MockWorld(dim=16), cfg)[2].prompt
        True
    """
    rng = random.Random(seed)
    cfg = config or MockSampleConfig()
    while True:
        yield make_sample(world, cfg, rng)
