"""The attention scorers: they read the text_attention signal and nothing else."""

from __future__ import annotations

import pytest
import torch

from vissparse.llm.attention import attention_rows
from vissparse.strategies import FastVScorer, PDropScorer, TextAttentionScorer, TopKStrategy
from vissparse.strategies.base import required_signals, select_tokens
from vissparse.strategies.context import PruningContext


@pytest.mark.parametrize("cls", [FastVScorer, PDropScorer, TextAttentionScorer])
def test_attention_scorers_rank_by_the_signal(cls: type) -> None:
    attention = torch.tensor([[0.1, 0.7, 0.05, 0.15]])
    ctx = PruningContext(torch.randn(1, 4, 3), torch.randn(1, 3), text_attention=attention)
    keep = select_tokens(cls(), TopKStrategy(), ctx, 0.5).keep
    assert keep.tolist() == [[False, True, False, True]]
    assert required_signals(cls()) == {"text_attention"}
    with pytest.raises(ValueError, match="stage='llm'"):
        cls().score(ctx.image_tokens, ctx.query)
    with pytest.raises(ValueError, match="requires the 'text_attention' signal"):
        cls().score_context(PruningContext(ctx.image_tokens, ctx.query))


def test_rows_name_whose_attention_counts() -> None:
    assert (FastVScorer.attention_rows, PDropScorer.attention_rows,
            TextAttentionScorer.attention_rows) == ("last", "instruction", "prompt")  # fmt: skip


def test_attention_rows_equals_a_full_softmax() -> None:
    torch.manual_seed(0)
    b, heads, kv_heads, n, d = 2, 4, 2, 6, 8
    q, k = torch.randn(b, heads, n, d), torch.randn(b, kv_heads, n, d)
    key_valid = torch.ones(b, n, dtype=torch.bool)
    key_valid[1, 0] = False  # a left pad
    full = torch.einsum("bhqd,bhkd->bhqk", q, k.repeat_interleave(2, dim=1)) * d**-0.5
    causal = torch.ones(n, n, dtype=torch.bool).tril()
    allowed = causal[None, None] & key_valid[:, None, None, :]
    probs = full.masked_fill(~allowed, float("-inf")).softmax(-1).mean(dim=1)  # [B, q, k]
    rows = torch.tensor([[5, 3], [5, 4]])
    row_valid = torch.tensor([[True, True], [True, False]])
    got = attention_rows(q, k, rows, row_valid, key_valid, d**-0.5)
    assert torch.allclose(got[0], (probs[0, 5] + probs[0, 3]) / 2, atol=1e-6)
    assert torch.allclose(got[1], probs[1, 5], atol=1e-6)
    assert got[1, 0] == 0 and got[0, 4:].sum() > 0 and got[0, 5] > 0


def test_padding_rows_on_padding_keys_give_no_nan():
    """A padded row list points at position 0, which may be a left pad: no NaN leaks."""
    q, k = torch.randn(1, 2, 4, 8), torch.randn(1, 2, 4, 8)
    key_valid = torch.tensor([[False, True, True, True]])
    got = attention_rows(q, k, torch.tensor([[0, 3]]), torch.tensor([[False, True]]),
                         key_valid, 8**-0.5)  # fmt: skip
    assert not got.isnan().any() and got[0, 0] == 0
    assert torch.isclose(got.sum(), torch.tensor(1.0))
