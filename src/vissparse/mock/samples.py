"""Synthetic image-token samples with planted ground truth.

Each sample is a ``side x side`` grid of image tokens (default 32 x 32 = 1024) holding:

- one *answer* region: a small square of tokens on the object the question asks about,
  each ``object_weight * v(object) + colour_weight * v(colour) + noise``; these tokens
  relate to the prompt (they share the object's vector with it) and carry the answer;
- several *distractor* regions: other objects in other colours, built the same way;
- *background*: noise.

The question names the answer object; the reference answer is its colour. Sample ``i``
of a stream has its own generator, derived from the stream's seed and ``i``, so any one
sample is built alone, in constant time.
"""

from __future__ import annotations

import itertools
import math
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
        for name in ("n_tokens", "answer_size", "n_distractors", "distractor_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"`{name}` must be an int, got {value!r}")
        for name in ("object_weight", "colour_weight", "noise"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise TypeError(f"`{name}` must be a number, got {value!r}")
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"`{name}` must be a finite number >= 0, got {value!r}")
        side = math.isqrt(max(self.n_tokens, 0))
        if side * side != self.n_tokens or side < 4:
            raise ValueError(f"`n_tokens` must be a square number >= 16, got {self.n_tokens!r}")
        if not 1 <= self.answer_size <= side // 2:
            raise ValueError(f"`answer_size` must be in [1, {side // 2}], got {self.answer_size}")
        if not 1 <= self.distractor_size <= side:
            raise ValueError(
                f"`distractor_size` must be in [1, {side}], got {self.distractor_size}"
            )
        if self.n_distractors < 0 or self.n_distractors >= len(OBJECTS):
            raise ValueError(
                f"`n_distractors` must be in [0, {len(OBJECTS) - 1}], got {self.n_distractors}"
            )

    @property
    def side(self) -> int:
        """Side of the square token grid."""
        return math.isqrt(self.n_tokens)


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


# the largest sample index: indices travel as int64 (``collate_vqa``'s ``index`` tensor)
MAX_INDEX = 2**63 - 1


def check_index(index: object, name: str = "index") -> int:
    """``index`` if it is a sample number in ``[0, MAX_INDEX]``, else a one-line error.

    Example:
        >>> check_index(3)
        3
        >>> check_index(-1)
        Traceback (most recent call last):
        ...
        ValueError: `index` must be a sample number in [0, 9223372036854775807], got -1
    """
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index <= MAX_INDEX:
        raise ValueError(f"`{name}` must be a sample number in [0, {MAX_INDEX}], got {index!r}")
    return index


def _check_seed(seed: object) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"`seed` must be an int, got {seed!r}")
    return seed


def sample_rng(seed: int, index: int) -> random.Random:
    """The generator of sample ``index`` of the stream ``seed``.

    Each sample has its own, so any one is built alone in constant time.
    ``random.Random`` seeds a string through SHA-512: the same on every platform and run.

    Example:
        >>> sample_rng(0, 7).random() == sample_rng(0, 7).random() != sample_rng(1, 7).random()
        True
    """
    return random.Random(f"vissparse.mock sample {seed}:{index}")


def sample_at(
    index: int, world: MockWorld, config: MockSampleConfig | None = None, seed: int = 0
) -> MockSample:
    """Sample ``index`` of the stream ``seed``, built alone: ``make_samples(n)[index]``.

    Example:
        >>> world, cfg = MockWorld(dim=16), MockSampleConfig(n_tokens=64)
        >>> sample_at(2, world, cfg).prompt == make_samples(3, world, cfg)[2].prompt
        True
        >>> sample_at(10**23, world, cfg)
        Traceback (most recent call last):
        ...
        ValueError: `index` must be a sample number in [0, 9223372036854775807], got 100000000000000000000000
    """  # noqa: E501
    index, seed = check_index(index), _check_seed(seed)
    return make_sample(world, config or MockSampleConfig(), sample_rng(seed, index))


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

    Holds one sample at a time; sample ``i`` is :func:`sample_at` ``(i, ...)``.

    Example:
        >>> cfg = MockSampleConfig(n_tokens=64)
        >>> one = next(itertools.islice(iter_samples(MockWorld(dim=16), cfg), 2, None))
        >>> one.prompt == make_samples(3, MockWorld(dim=16), cfg)[2].prompt
        True
    """
    _check_seed(seed)
    cfg = config or MockSampleConfig()
    for index in itertools.count():
        yield sample_at(index, world, cfg, seed)
