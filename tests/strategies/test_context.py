"""The pruning context: layouts, newline scores, merging, selections and signals."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from vissparse.strategies import (
    CosineScorer,
    GridSegment,
    ImageLayout,
    PruningContext,
    Selection,
    TopKStrategy,
    kept_count,
    merge_tokens,
    select_tokens,
)
from vissparse.strategies.base import TokenScorer, required_signals
from vissparse.strategies.context import check_requires, check_selection, newline_scores


def crops_layout(rows: int, cols: int, base: int = 0) -> ImageLayout:
    """``base`` loose-free base tokens as a 1 x base grid, then rows closed by newlines."""
    ends = base + (torch.arange(rows) + 1) * (cols + 1) - 1
    index = (ends - cols).unsqueeze(1) + torch.arange(cols)
    segments = (GridSegment(index, row_ends=ends),)
    if base:
        segments = (*ImageLayout.grid(1, base).segments, *segments)
    return ImageLayout(base + rows * (cols + 1), segments)


def test_merge_tokens_hand_example():
    # tokens 0 and 2 kept; 1 merges into 0 with weight 3, 3 into 2, 4 is discarded
    x = torch.tensor([[[1.0, 0.0], [5.0, 4.0], [2.0, 2.0], [0.0, 6.0], [9.0, 9.0]]])
    sel = Selection(
        keep=torch.tensor([[True, False, True, False, False]]),
        merge_into=torch.tensor([[0, 0, 2, 2, -1]]),
        merge_weight=torch.tensor([[1.0, 3.0, 1.0, 1.0, 7.0]]),
    )
    out = merge_tokens(x, check_selection(sel, (1, 5), "m"))
    assert out[0, 0].tolist() == [(1 + 15) / 4, 12 / 4]
    assert out[0, 2].tolist() == [1.0, 4.0]
    assert torch.equal(out[0, [1, 3, 4]], x[0, [1, 3, 4]])  # not kept: unchanged
    assert merge_tokens(x, Selection(sel.keep)) is x  # mask-only: nothing merges


def test_merge_keeps_dtype_and_a_token_merged_with_itself_is_unchanged():
    x = torch.randn(2, 6, 4).to(torch.bfloat16)
    keep = torch.ones(2, 6, dtype=torch.bool)
    out = merge_tokens(x, Selection(keep, torch.arange(6).expand(2, 6).clone()))
    assert out.dtype == torch.bfloat16 and torch.equal(out, x)


@pytest.mark.parametrize(
    ("into", "keep"),
    [
        ([[1, 1, 2]], [[True, False, True]]),  # a token merged into one that is dropped
        ([[0, 0, 0]], [[True, False, True]]),  # a kept token merged into another
        ([[0, 3, 2]], [[True, False, True]]),  # out of range
    ],
)
def test_bad_selections_are_refused(into, keep):
    sel = Selection(torch.tensor(keep), torch.tensor(into))
    with pytest.raises(ValueError, match="merge_into"):
        check_selection(sel, (1, 3), "MyMethod")


def test_newline_takes_its_rows_best_score_and_is_kept_with_its_row():
    layout = crops_layout(rows=3, cols=2, base=2)  # 0 1 | 2 3 nl4 | 5 6 nl7 | 8 9 nl10
    scores = torch.tensor([[0.5, 0.1, 0.2, 0.9, -5.0, 0.3, 0.0, -5.0, 0.05, 0.04, -5.0]])
    filled = newline_scores(scores, [layout])
    assert filled[0, [4, 7, 10]].tolist() == pytest.approx([0.9, 0.3, 0.05])
    valid = ~layout.newline.unsqueeze(0)
    ctx = PruningContext(torch.randn(1, 11, 3), torch.randn(1, 3), valid,
                         present=torch.ones(1, 11, dtype=torch.bool), layouts=[layout])  # fmt: skip

    class Fixed(TokenScorer):
        def score(self, image_tokens, query, valid=None):
            return scores

    keep = select_tokens(Fixed(), TopKStrategy(), ctx, 4 / 11).keep[0]
    # budget 4 of 11, newlines counted: 3 (0.9), its newline, 0 (0.5), 5 (0.3)
    assert keep.nonzero().flatten().tolist() == [0, 3, 4, 5]


@given(st.integers(1, 6), st.integers(1, 6), st.integers(0, 5),
       st.floats(0.05, 1.0), st.integers(0, 10**6))  # fmt: skip
def test_budget_counts_newlines_exactly(rows, cols, base, ratio, seed):
    layout = crops_layout(rows, cols, base)
    n = layout.n_tokens
    gen = torch.Generator().manual_seed(seed)
    ctx = PruningContext(torch.randn(1, n + 2, 4, generator=gen), torch.randn(1, 4, generator=gen),
                         valid=torch.cat([~layout.newline, torch.zeros(2, dtype=torch.bool)])[None],
                         present=(torch.arange(n + 2) < n)[None], layouts=[layout])  # fmt: skip
    keep = select_tokens(CosineScorer(aggregate="mean"), TopKStrategy(), ctx, ratio).keep[0]
    assert int(keep.sum()) == kept_count(ratio, n)
    assert not keep[n:].any()  # padding
    line = layout.line_of()
    for newline in layout.newline.nonzero().flatten().tolist():  # a kept newline has its row
        if keep[newline]:
            assert keep[:n][line == newline].any()


def test_layout_line_of_and_loose_newline():
    layout = crops_layout(2, 3)
    assert layout.line_of().tolist() == [3, 3, 3, -1, 7, 7, 7, -1]
    loose = ImageLayout(5, ImageLayout.grid(2, 2).segments, loose=torch.tensor([4]))
    assert loose.line_of().tolist() == [4, 4, 4, 4, -1]
    assert loose.newline.tolist() == [False] * 4 + [True]


def test_signals_are_declared_and_checked():
    from vissparse.strategies import get_scorer

    assert required_signals(get_scorer("random")()) == {"sample_keys"}
    assert required_signals(get_scorer("cosine")()) == {"prompt_embeddings"}
    assert required_signals(get_scorer("cosine-least")()) == frozenset()
    assert required_signals(get_scorer("pool")()) == {"layouts"}
    assert required_signals(get_scorer("cosine-max")()) == {"prompt_embeddings"}
    with pytest.raises(ValueError, match="unknown signals"):
        check_requires({"cls_attention_at_layer_99"}, "MyScorer")
    with pytest.raises(TypeError, match="set of signal names"):
        check_requires("layouts", "MyScorer")
    ctx = PruningContext(torch.zeros(1, 4, 2), torch.ones(1, 2))
    with pytest.raises(ValueError, match="'layouts' signal"):
        select_tokens(get_scorer("pool")(), TopKStrategy(), ctx, 0.5)
