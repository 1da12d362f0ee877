"""Spatial average pooling on each image's true 2-D token grid, as a merging method."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from vissparse.strategies.base import BudgetedMethod, MaskStrategy
from vissparse.strategies.context import GridSegment, ImageLayout, PruningContext, Selection
from vissparse.strategies.registry import register_scorer

Box = tuple[int, int, int, int]  # rows [r0, r1), columns [c0, c1)


def _cuts(n: int, parts: int) -> list[int]:
    return [i * n // parts for i in range(parts + 1)]


def pool_boxes(rows: int, cols: int, k: int, bands: int | None = None) -> list[Box]:
    """Exactly ``k`` rectangles that tile a ``rows x cols`` grid, as square as possible.

    The grid is cut into ``bands`` horizontal bands (by default about
    ``sqrt(k * rows / cols)``) of near-equal height, and each band into near-equal
    columns, so that the cell counts add up to ``k`` (``1 <= k <= rows * cols``).

    Example:
        >>> pool_boxes(4, 4, 4)
        [(0, 2, 0, 2), (0, 2, 2, 4), (2, 4, 0, 2), (2, 4, 2, 4)]
        >>> len(pool_boxes(24, 24, 58))
        58
    """
    if not 1 <= k <= rows * cols:
        raise ValueError(f"`k` must be in [1, {rows * cols}] for a {rows}x{cols} grid, got {k}")
    if bands is None:
        bands = round(math.sqrt(k * rows / cols))
    bands = min(max(bands, math.ceil(k / cols), 1), rows, k)
    row_cuts = _cuts(rows, bands)
    boxes = []
    for band in range(bands):
        cells = k // bands + (1 if band < k % bands else 0)
        col_cuts = _cuts(cols, cells)
        for j in range(cells):
            boxes.append((row_cuts[band], row_cuts[band + 1], col_cuts[j], col_cuts[j + 1]))
    return boxes


def split_budget(k: int, sizes: list[int]) -> list[int]:
    """``k`` split in proportion to ``sizes`` by largest remainder (ties to the first).

    Example:
        >>> split_budget(5, [576, 1728])
        [1, 4]
    """
    total = sum(sizes)
    if total == 0:
        return [0] * len(sizes)
    exact = [k * s / total for s in sizes]
    shares = [min(math.floor(e), s) for e, s in zip(exact, sizes, strict=True)]
    order = sorted(range(len(sizes)), key=lambda i: (-(exact[i] - shares[i]), i))
    for i in order:
        if sum(shares) >= k:
            break
        if shares[i] < sizes[i]:
            shares[i] += 1
    return shares


def pool_segment(seg: GridSegment, k: int, into: Tensor) -> None:
    """Pool one segment to ``k`` tokens (its newlines included), writing ``into`` in place.

    Each box's tokens merge into the box's centre token. Where rows end in newline
    tokens, one newline per band is kept (the last row's) and counts against ``k``; with
    ``k == 1`` the single token is the pooled grid and no newline stays. Where no band
    count fits ``k`` exactly (one column and an odd ``k``), one more newline is kept.
    """
    rows, cols = seg.shape
    if k <= 0:
        return
    bands = None
    n_boxes = k
    if seg.row_ends is not None and k >= 2:
        # bands + boxes = k, with one to cols boxes per band
        estimate = math.sqrt(k * rows / (cols + 1))
        feasible = [b for b in range(1, min(rows, k // 2) + 1) if b <= k - b <= b * cols]
        if feasible:
            bands = min(feasible, key=lambda b: (abs(b - estimate), b))
        else:  # e.g. one column and an odd k: one newline more is kept below
            bands = max(1, min(rows, k // 2))
        n_boxes = min(k - bands, bands * cols)
    n_boxes = min(n_boxes, rows * cols)
    boxes = pool_boxes(rows, cols, n_boxes, bands)
    for r0, r1, c0, c1 in boxes:
        centre = int(seg.index[(r0 + r1 - 1) // 2, (c0 + c1 - 1) // 2])
        into[seg.index[r0:r1, c0:c1].flatten()] = centre
    if bands is not None and seg.row_ends is not None:
        ends = [int(seg.row_ends[r1 - 1]) for r1 in sorted({r1 for _, r1, _, _ in boxes})]
        spare = [int(e) for e in seg.row_ends if int(e) not in ends]
        for newline in ends + spare[: k - n_boxes - len(ends)]:
            into[newline] = newline


def pool_selection(layout: ImageLayout, k: int, width: int) -> Tensor:
    """``[width]`` long ``merge_into`` of one image pooled to ``k`` tokens (-1: dropped).

    Example:
        >>> pool_selection(ImageLayout.grid(2, 2), 1, 5).tolist()
        [0, 0, 0, 0, -1]
    """
    into = torch.full((width,), -1, dtype=torch.long)
    shares = split_budget(k, [seg.n_tokens for seg in layout.segments])
    for seg, share in zip(layout.segments, shares, strict=True):
        pool_segment(seg, share, into)
    return into


@register_scorer
class PoolScorer(BudgetedMethod):
    """Average pooling on the true 2-D grid, down to the token budget (name ``"pool"``).

    Not sync-free: it reads each row's valid tokens and budget back to the host
    (:meth:`row_budgets`) and builds the boxes there.

    Each image's grid (Qwen's merged-patch grid of any aspect ratio; LLaVA's patch grid;
    LLaVA-NeXT's base tile and crops, budget split by size) is tiled by exactly ``k``
    near-square boxes (:func:`pool_boxes`). A box's tokens are averaged into one token that
    takes the position id of the box's centre token, so the language model sees ``k``
    image tokens and drop mode stays exact. On LLaVA-NeXT one newline token per pooled
    band is kept and counted in ``k``. Prompt-agnostic: it ignores the query, the scores
    and the ``strategy``. Needs the ``"layouts"`` signal.

    Deviation from the usual pooling baselines (a fixed 2x2 or 3x3 stride that renumbers
    positions): the box sizes follow ``keep_ratio`` so every method is compared at the
    same token count, and positions are the original ones.

    Example:
        >>> from vissparse.strategies import TopKStrategy
        >>> from vissparse.strategies.context import ImageLayout, PruningContext
        >>> x = torch.arange(16.0).view(1, 16, 1)
        >>> ctx = PruningContext(x, torch.ones(1, 1), layouts=[ImageLayout.grid(4, 4)])
        >>> sel = PoolScorer().plan(ctx, 0.25, TopKStrategy())
        >>> sel.keep.nonzero()[:, 1].tolist()
        [0, 2, 8, 10]
    """

    name = "pool"
    requires = frozenset({"layouts"})

    def plan(self, ctx: PruningContext, keep_ratio: float, strategy: MaskStrategy) -> Selection:
        """Keep ``k`` box-centre tokens per image, each the mean of its box."""
        budgets = self.row_budgets(ctx, keep_ratio)
        layouts = ctx.need("layouts", self)
        assert isinstance(layouts, (list, tuple))
        b, n = ctx.image_tokens.shape[:2]
        if len(layouts) != b:
            raise ValueError(f"`layouts` must hold one layout per row ({b}), got {len(layouts)}")
        rows = [pool_selection(layouts[row], k, n) for row, _, k in budgets]
        into = torch.stack(rows) if rows else torch.zeros(0, n, dtype=torch.long)
        into = into.to(ctx.image_tokens.device)
        return Selection.merging(into)
