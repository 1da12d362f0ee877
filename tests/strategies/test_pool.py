"""Pooling on the 2-D grid: exact budgets, tiling boxes, and a hand-computed merge."""

import torch
from hypothesis import given
from hypothesis import strategies as st

from tests.strategies.test_context import crops_layout
from vissparse.strategies import (
    ImageLayout,
    PoolScorer,
    PruningContext,
    TopKStrategy,
    kept_count,
    merge_tokens,
    select_tokens,
)
from vissparse.strategies.pool import pool_boxes, split_budget


def test_hand_computed_pool_of_a_4x4_grid():
    x = torch.arange(16.0).view(1, 16, 1)
    ctx = PruningContext(x, torch.ones(1, 1), layouts=[ImageLayout.grid(4, 4)])
    sel = select_tokens(PoolScorer(), TopKStrategy(), ctx, 0.25)
    # four 2x2 boxes; each merges into its top-left-of-centre token, taking the box mean
    assert sel.keep[0].nonzero().flatten().tolist() == [0, 2, 8, 10]
    merged = merge_tokens(x, sel)[0, sel.keep[0], 0]
    assert merged.tolist() == [2.5, 4.5, 10.5, 12.5]  # (0+1+4+5)/4, (2+3+6+7)/4, ...


def test_non_square_grid_and_keep_one_is_the_identity():
    x = torch.randn(1, 12, 3)
    ctx = PruningContext(x, torch.ones(1, 3), layouts=[ImageLayout.grid(3, 4)])
    sel = select_tokens(PoolScorer(), TopKStrategy(), ctx, 1.0)
    assert sel.keep.all() and torch.equal(merge_tokens(x, sel), x)
    half = select_tokens(PoolScorer(), TopKStrategy(), ctx, 0.5)
    assert int(half.keep.sum()) == 6


@given(st.integers(1, 12), st.integers(1, 12), st.data())
def test_boxes_tile_the_grid_exactly(rows, cols, data):
    k = data.draw(st.integers(1, rows * cols))
    boxes = pool_boxes(rows, cols, k)
    assert len(boxes) == k
    cover = torch.zeros(rows, cols, dtype=torch.int64)
    for r0, r1, c0, c1 in boxes:
        assert r1 > r0 and c1 > c0
        cover[r0:r1, c0:c1] += 1
    assert bool((cover == 1).all())


@given(st.integers(1, 6), st.integers(1, 6), st.integers(0, 5), st.floats(0.05, 1.0))
def test_exact_budget_with_newlines_and_padding(rows, cols, base, ratio):
    layout = crops_layout(rows, cols, base)
    n = layout.n_tokens
    ctx = PruningContext(torch.randn(2, n + 3, 2), torch.ones(2, 2),
                         valid=torch.cat([~layout.newline, torch.zeros(3, dtype=torch.bool)])
                         .expand(2, -1).clone(),
                         present=(torch.arange(n + 3) < n).expand(2, -1).clone(),
                         layouts=[layout, layout])  # fmt: skip
    sel = select_tokens(PoolScorer(), TopKStrategy(), ctx, ratio)
    assert sel.keep.sum(dim=1).tolist() == [kept_count(ratio, n)] * 2
    assert not sel.keep[:, n:].any() and bool((sel.merge_into[:, n:] == -1).all())
    # every grid token is merged somewhere once any token of its segment is kept
    assert torch.equal(sel.keep[0], sel.keep[1])


def test_split_budget_is_proportional_and_exact():
    assert split_budget(29, [576, 2304 + 48]) == [6, 23]
    assert sum(split_budget(7, [3, 3, 3])) == 7
    assert split_budget(0, [4, 4]) == [0, 0]
