"""DART (before-LLM variant) against a literal statement of the paper's pivot loop."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from tests.strategies.strategies_hyp import keep_ratios, token_batches
from vissparse.strategies import DartScorer, PruningContext, TopKStrategy, kept_count, select_tokens
from vissparse.strategies.dart import dart_picks


def paper_loop(x, words, k, p):
    """The paper's selection with the exact budget (see the module docstring)."""
    unit = torch.nn.functional.normalize(x.float(), dim=-1)
    img = sorted(range(len(x)), key=lambda i: (-float(x[i].abs().sum()), i))[: min(p, k)]
    anchors = [unit[i] for i in img]
    if words is not None:
        order = sorted(range(len(words)), key=lambda i: (-float(words[i].abs().sum()), i))[:p]
        anchors += [torch.nn.functional.normalize(words[i].float(), dim=0) for i in order]
    chosen, rest = list(img), k - len(img)
    for j, a in enumerate(anchors):
        quota = rest // len(anchors) + (j < rest % len(anchors))
        free = [i for i in range(len(x)) if i not in chosen]
        free.sort(key=lambda i: (float(unit[i] @ a), i))
        chosen += free[:quota]
    return chosen


def test_hand_example_with_a_text_pivot():
    x = torch.tensor([[3.0, 0.0], [2.5, 0.1], [0.0, 1.0], [0.1, -1.0], [-1.0, 0.0]])
    words = torch.tensor([[0.0, 2.0]])
    # image pivot 0 (largest L1 norm); 2 more: token 4 (least like token 0, cosine -1),
    # then token 3 (least like the word (0, 1), cosine -0.995)
    assert dart_picks(x, words, 3, pivots=1) == [0, 4, 3]


@given(token_batches(max_b=1, max_n=24, padding=False, dtypes=(torch.float32,)), keep_ratios,
       st.integers(1, 5), st.booleans())  # fmt: skip
def test_picks_follow_the_paper_loop_with_an_exact_budget(batch, ratio, pivots, with_words):
    tokens, _, _ = batch
    words = torch.randn(3, tokens.shape[-1]) if with_words else None
    k = kept_count(ratio, tokens.shape[1])
    picks = dart_picks(tokens[0], words, k, pivots)
    assert len(picks) == len(set(picks)) == k
    assert picks == paper_loop(tokens[0], words, k, pivots)


@given(token_batches(max_b=3, max_n=32, dtypes=(torch.float32,)), keep_ratios)
def test_exact_count_padding_and_batch_independence(batch, ratio):
    tokens, query, valid = batch
    words = torch.randn(tokens.shape[0], 4, tokens.shape[-1])
    mask = torch.ones(tokens.shape[0], 4, dtype=torch.bool)
    ctx = PruningContext(tokens, query, valid, prompt_embeddings=words, prompt_mask=mask)
    keep = select_tokens(DartScorer(), TopKStrategy(), ctx, ratio).keep
    n_valid = valid.sum(1) if valid is not None else torch.full((tokens.shape[0],), tokens.shape[1])
    assert keep.sum(1).tolist() == [kept_count(ratio, int(v)) for v in n_valid]
    if valid is not None:
        assert not (keep & ~valid).any()
    last = PruningContext(tokens[-1:], query[-1:], None if valid is None else valid[-1:],
                          prompt_embeddings=words[-1:], prompt_mask=mask[-1:])  # fmt: skip
    assert torch.equal(select_tokens(DartScorer(), TopKStrategy(), last, ratio).keep[0], keep[-1])


def test_bad_pivots_and_score_without_budget():
    with pytest.raises(ValueError, match="pivots"):
        DartScorer(pivots=0)
    with pytest.raises(ValueError, match="budget"):
        DartScorer().score(torch.zeros(1, 2, 2), torch.ones(1, 2))
