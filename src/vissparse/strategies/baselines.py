"""Prompt-agnostic baselines: random and spatially uniform scores."""

from __future__ import annotations

import math
from functools import lru_cache

import torch
from torch import Tensor

from vissparse.strategies.base import TokenScorer, check_tokens_and_query
from vissparse.strategies.registry import register_scorer


@register_scorer
class RandomScorer(TokenScorer):
    """Uniform random scores from one seeded stream (name ``"random"``).

    Reproducible: two scorers built with the same seed give the same scores for the same
    sequence of calls; :meth:`reset` rewinds the stream. Random pruning is a strong
    baseline in published benchmarks, so every study should include it.

    Example:
        >>> a, b = RandomScorer(seed=3), RandomScorer(seed=3)
        >>> x, q = torch.zeros(2, 4, 8), torch.zeros(2, 8)
        >>> torch.equal(a.score(x, q), b.score(x, q))
        True
    """

    name = "random"

    def __init__(self, seed: int = 0) -> None:
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"`seed` must be an int, got {seed!r}")
        self.seed = seed
        self.reset()

    def reset(self) -> None:
        """Rewind the random stream to the start."""
        self._generator = torch.Generator().manual_seed(self.seed)

    def score(self, image_tokens: Tensor, query: Tensor, valid: Tensor | None = None) -> Tensor:
        """Random float32 scores in [0, 1), drawn on the CPU and moved to the tokens."""
        check_tokens_and_query(image_tokens, query, valid)
        scores = torch.rand(image_tokens.shape[:2], generator=self._generator)
        return scores.to(image_tokens.device)

    def __repr__(self) -> str:
        return f"RandomScorer(seed={self.seed})"


def _bit_reverse(values: Tensor, bits: int) -> Tensor:
    out = torch.zeros_like(values)
    for b in range(bits):
        out |= ((values >> b) & 1) << (bits - 1 - b)
    return out


@lru_cache(maxsize=64)
def coarse_to_fine_order(n: int) -> Tensor:
    """Distinct scores in (0, 1] that rank ``n`` tokens coarse-to-fine over a square grid.

    If ``n`` is a perfect square the tokens are a ``side x side`` grid in row-major
    order. Each bit level ``b`` of (row, col) gives a base-4 digit, (even, even) first,
    then the diagonal (odd, odd), then the two off-diagonals; the lowest bit level is
    the most significant digit. So the top quarter are the even rows and columns (one
    token per 2x2 block), the top sixteenth one token per 4x4 block, the top half a
    checkerboard, and so on. Otherwise the tokens are treated as a 1-D sequence and the
    plain index is bit-reversed. Results are cached per ``n``: do not modify them.

    Example:
        >>> coarse_to_fine_order(4).argsort(descending=True).tolist()
        [0, 3, 1, 2]
    """
    if n < 1:
        return torch.zeros(0)
    side = math.isqrt(n)
    index = torch.arange(n, dtype=torch.int64)
    if side * side == n and side > 1:
        bits = max(1, math.ceil(math.log2(side)))
        rows, cols = index // side, index % side
        key = torch.zeros_like(index)
        for b in range(bits):
            r, c = (rows >> b) & 1, (cols >> b) & 1
            key |= (2 * (r ^ c) + r) << (2 * (bits - 1 - b))
    else:
        bits = max(1, math.ceil(math.log2(max(n, 2))))
        key = _bit_reverse(index, bits)
    ranks = torch.empty_like(key)
    ranks[key.argsort()] = index
    return 1.0 - ranks.float() / n


@register_scorer
class UniformScorer(TokenScorer):
    """Spatially even coverage of a square token grid (name ``"uniform"``).

    Ignores the prompt. Each row's valid tokens (the first ``n_valid`` of the row when
    ``valid`` is given) are ranked by :func:`coarse_to_fine_order`, so keeping the top
    ``k`` samples the grid evenly at any ``keep_ratio``.

    Example:
        >>> s = UniformScorer().score(torch.zeros(1, 16, 4), torch.zeros(1, 4))
        >>> s.argsort(descending=True)[0, :4].tolist()
        [0, 10, 2, 8]
    """

    name = "uniform"

    def score(self, image_tokens: Tensor, query: Tensor, valid: Tensor | None = None) -> Tensor:
        """Coarse-to-fine grid scores, float32 ``[B, N]``; padding scores 0."""
        check_tokens_and_query(image_tokens, query, valid)
        b, n, _ = image_tokens.shape
        out = torch.zeros(b, n)
        for row in range(b):
            idx = valid[row].nonzero().flatten().cpu() if valid is not None else torch.arange(n)
            out[row, idx] = coarse_to_fine_order(int(idx.numel()))
        return out.to(image_tokens.device)
