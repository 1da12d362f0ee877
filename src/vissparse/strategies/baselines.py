"""Prompt-agnostic baselines: random and spatially uniform scores."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import torch
from torch import Tensor

from vissparse.host_sync import to_device
from vissparse.strategies.base import TokenScorer, check_tokens_and_query
from vissparse.strategies.context import ImageLayout, PruningContext
from vissparse.strategies.registry import register_scorer


def token_key(image_tokens: Tensor, query: Tensor, valid: Tensor | None = None) -> bytes:
    """One row's sample key: a hash of its valid tokens' exact float32 bytes and its query.

    Used by :class:`RandomScorer` when the caller gives no ``sample_keys``. It depends
    on the row only, not on the padding or on the other rows of the batch, as long as
    the tokens themselves are bit-identical from call to call (true of the mock; a real
    vision tower may differ in the last bits between batch compositions, which is why
    the HF pipeline passes keys made from the images and prompts instead).

    Example:
        >>> t, q = torch.ones(3, 2), torch.zeros(2)
        >>> token_key(t, q) == token_key(torch.ones(4, 2), q, torch.tensor([1, 1, 1, 0]) > 0)
        True
    """
    rows = image_tokens if valid is None else image_tokens[valid]
    digest = hashlib.blake2b(digest_size=16)
    for part in (rows, query):
        array = part.detach().float().cpu().contiguous().numpy()
        digest.update(str(array.shape).encode())
        digest.update(array.tobytes())
    return digest.digest()


@register_scorer
class RandomScorer(TokenScorer):
    """Uniform random scores, a pure function of ``(seed, sample)`` (name ``"random"``).

    Each row's scores come from a generator seeded with ``seed`` and the row's sample
    key: ``sample_keys[i]`` when the caller passes them (the HF pipeline passes a hash
    of each image's pixels and its prompt), else :func:`token_key` of the row. So the
    masks do not depend on warm-up calls, call order, earlier calls or the other
    samples in a batch; a benchmark run twice gives the same masks, and since the
    scores do not depend on ``keep_ratio`` the top-k masks of one sample nest across
    keep ratios. Random pruning is a strong baseline in published benchmarks, so every
    study should include it; use several seeds to average over masks. Sync-free with
    ``sample_keys`` (the HF pipeline's); without them, not sync-free: :func:`token_key`
    reads the tokens back to hash them.

    Example:
        >>> a, b = RandomScorer(seed=3), RandomScorer(seed=3)
        >>> x, q = torch.randn(2, 4, 8), torch.zeros(2, 8)
        >>> torch.equal(a.score(x, q), b.score(x, q)) and torch.equal(a.score(x, q), a.score(x, q))
        True
        >>> torch.equal(a.score(x[1:], q[1:])[0], a.score(x, q)[1])  # rows are independent
        True
    """

    name = "random"
    requires = frozenset({"sample_keys"})

    def __init__(self, seed: int = 0) -> None:
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"`seed` must be an int, got {seed!r}")
        self.seed = seed

    def row_scores(self, key: bytes, n: int) -> np.ndarray:
        """``n`` float64 draws in [0, 1) for the sample ``key``; a prefix of longer draws."""
        digest = hashlib.blake2b(key, digest_size=16, person=b"vissparse-rand")
        digest.update(str(self.seed).encode())
        return np.random.default_rng(int.from_bytes(digest.digest(), "little")).random(n)

    def score(
        self,
        image_tokens: Tensor,
        query: Tensor,
        valid: Tensor | None = None,
        sample_keys: Sequence[bytes] | None = None,
    ) -> Tensor:
        """Random float32 scores in [0, 1), one generator per row, on the tokens' device."""
        check_tokens_and_query(image_tokens, query, valid)
        b, n = image_tokens.shape[:2]
        if sample_keys is None:
            keys = [token_key(image_tokens[i], query[i], None if valid is None else valid[i])
                    for i in range(b)]  # fmt: skip
        else:
            keys = list(sample_keys)
            if len(keys) != b or not all(isinstance(k, bytes) for k in keys):
                raise ValueError(f"`sample_keys` must be {b} bytes keys, one per row")
        rows = np.stack([self.row_scores(k, n) for k in keys]) if b else np.zeros((0, n))
        # drawn on the host from the keys; the copy to the device does not wait for it
        return to_device(torch.from_numpy(rows).float(), image_tokens.device)

    def __repr__(self) -> str:
        return f"RandomScorer(seed={self.seed})"


def _bit_reverse(values: Tensor, bits: int) -> Tensor:
    out = torch.zeros_like(values)
    for b in range(bits):
        out |= ((values >> b) & 1) << (bits - 1 - b)
    return out


def coarse_to_fine_order(n: int) -> Tensor:
    """Distinct scores in (0, 1] that rank ``n`` tokens coarse-to-fine.

    A perfect square ``n`` is taken as a ``side x side`` grid
    (:func:`coarse_to_fine_grid`), anything else as a 1-D sequence. Results are cached:
    do not modify them.

    Example:
        >>> coarse_to_fine_order(4).argsort(descending=True).tolist()
        [0, 3, 1, 2]
    """
    side = math.isqrt(max(n, 0))
    if side * side == n and side > 1:
        return coarse_to_fine_grid(side, side).flatten()
    return coarse_to_fine_grid(1, max(n, 0)).flatten()


@lru_cache(maxsize=256)
def coarse_to_fine_grid(rows: int, cols: int) -> Tensor:
    """``[rows, cols]`` distinct scores in (0, 1] ranking a raster grid coarse-to-fine.

    Each bit level ``b`` of (row, col) gives a base-4 digit, (even, even) first, then the
    diagonal (odd, odd), then the two off-diagonals; the lowest bit level is the most
    significant digit. So on a square grid the top quarter are the even rows and columns
    (one token per 2x2 block), the top sixteenth one token per 4x4 block, the top half a
    checkerboard, and so on; non-square grids (Qwen's resized images, LLaVA-NeXT's
    crops) follow the same rule on their own rows and columns. A single row or column is
    ranked by the bit-reversed index. Results are cached: do not modify them.

    Example:
        >>> coarse_to_fine_grid(2, 3).flatten().argsort(descending=True).tolist()
        [0, 2, 4, 1, 3, 5]
    """
    n = rows * cols
    if n < 1:
        return torch.zeros(rows, cols)
    index = torch.arange(n, dtype=torch.int64)
    if rows > 1 and cols > 1:
        bits = max(1, math.ceil(math.log2(max(rows, cols))))
        r, c = index // cols, index % cols
        key = torch.zeros_like(index)
        for b in range(bits):
            rb, cb = (r >> b) & 1, (c >> b) & 1
            key |= (2 * (rb ^ cb) + rb) << (2 * (bits - 1 - b))
    else:
        bits = max(1, math.ceil(math.log2(max(n, 2))))
        key = _bit_reverse(index, bits)
    ranks = torch.empty_like(key)
    ranks[key.argsort(stable=True)] = index
    return (1.0 - ranks.float() / n).view(rows, cols)


def layout_scores(layout: ImageLayout, width: int) -> Tensor:
    """``[width]`` coarse-to-fine scores of one image's grid tokens; other tokens 0.

    Each segment is ranked on its own grid, so several segments (LLaVA-NeXT's base tile
    and crops) are sampled in proportion to their sizes.

    Example:
        >>> layout_scores(ImageLayout.grid(2, 2), 5).tolist()
        [1.0, 0.5, 0.25, 0.75, 0.0]
    """
    out = torch.zeros(width)
    for seg in layout.segments:
        rows, cols = seg.shape
        out[seg.index.flatten()] = coarse_to_fine_grid(rows, cols).flatten()
    return out


@register_scorer
class UniformScorer(TokenScorer):
    """Spatially even coverage of the token grid (name ``"uniform"``).

    Ignores the prompt. With the ``"layouts"`` signal (the HF pipeline fills it) each
    image's tokens are ranked on their true 2-D grid (:func:`coarse_to_fine_grid`; Qwen's
    non-square grids, LLaVA-NeXT's base tile and crops), so keeping the top ``k``
    samples the picture evenly at any ``keep_ratio``. Without it, a row's valid tokens
    (the first ``n_valid`` when ``valid`` is given) are taken as a square grid if their
    count is a square, else as a sequence (:func:`coarse_to_fine_order`).

    Example:
        >>> s = UniformScorer().score(torch.zeros(1, 16, 4), torch.zeros(1, 4))
        >>> s.argsort(descending=True)[0, :4].tolist()
        [0, 10, 2, 8]
    """

    name = "uniform"
    requires = frozenset({"layouts"})

    def score_context(self, ctx: PruningContext) -> Tensor:
        """Scores on each row's layout when the context has one, else :meth:`score`."""
        if ctx.layouts is None:
            return self.score(ctx.image_tokens, ctx.query, ctx.valid)
        check_tokens_and_query(ctx.image_tokens, ctx.query, ctx.valid)
        width = ctx.image_tokens.shape[1]
        rows = [layout_scores(layout, width) for layout in ctx.layouts]
        out = torch.stack(rows) if rows else torch.zeros(0, width)
        return to_device(out, ctx.image_tokens.device)  # built on the host: no wait

    def score(self, image_tokens: Tensor, query: Tensor, valid: Tensor | None = None) -> Tensor:
        """Coarse-to-fine grid scores, float32 ``[B, N]``; padding scores 0.

        Not sync-free with ``valid`` (it reads each row's valid tokens back); the
        pipelines score through :meth:`score_context` with layouts, which is.
        """
        check_tokens_and_query(image_tokens, query, valid)
        b, n, _ = image_tokens.shape
        out = torch.zeros(b, n)
        for row in range(b):
            idx = valid[row].nonzero().flatten().cpu() if valid is not None else torch.arange(n)
            out[row, idx] = coarse_to_fine_order(int(idx.numel()))
        return to_device(out, image_tokens.device)  # built on the host: no wait
