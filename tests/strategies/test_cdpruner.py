"""CDPruner: greedy DPP MAP against determinants, the relevance formula, exact budgets."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from tests.strategies.strategies_hyp import keep_ratios, token_batches
from vissparse.strategies import (
    CDPrunerScorer,
    PruningContext,
    TopKStrategy,
    kept_count,
    select_tokens,
)
from vissparse.strategies.cdpruner import conditional_relevance, dpp_greedy


def greedy_by_determinants(kernel, k):
    """The paper's greedy MAP stated directly: add the token that maximises det(L_S)."""
    chosen: list[int] = []
    for _ in range(k):
        best, best_det = None, -1.0
        for j in range(kernel.shape[0]):
            if j in chosen:
                continue
            idx = torch.tensor([*chosen, j])
            det = float(torch.linalg.det(kernel[idx][:, idx].double()))
            if det > best_det + 1e-12:
                best, best_det = j, det
        chosen.append(best)
    return chosen


@given(st.integers(2, 7), st.integers(0, 10**6), st.sampled_from([0.1, 0.3, 0.5, 0.7, 0.9, 1.0]))
def test_greedy_matches_determinant_maximisation(n, seed, theta):
    gen = torch.Generator().manual_seed(seed)
    tokens = torch.randn(n, n + 2, generator=gen)  # full rank: gains stay positive
    words = torch.randn(2, n + 2, generator=gen)
    rel = conditional_relevance(tokens, words, theta)
    unit = torch.nn.functional.normalize(tokens, dim=-1)
    kernel = rel[:, None] * (unit @ unit.T) * rel[None, :]
    k = n - 1
    assert dpp_greedy(kernel, k, rel) == greedy_by_determinants(kernel, k)


def test_relevance_negates_and_normalises_like_the_official_code():
    x = torch.tensor([[2.0, 0.0], [0.0, 3.0], [-1.0, 0.0], [1.0, 1.0]])
    words = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    raw = -(
        torch.nn.functional.normalize(x, dim=-1) @ torch.nn.functional.normalize(words, dim=-1).T
    ).mean(-1)
    norm = (raw - raw.min()) / (raw.max() - raw.min() + 1e-6)
    torch.testing.assert_close(conditional_relevance(x, words, 1.0), norm)
    torch.testing.assert_close(conditional_relevance(x, words, 0.5), torch.exp(0.5 * norm))
    # the token least like the text is the most relevant, as in the official code
    assert int(conditional_relevance(x, words).argmax()) == 2


def test_rank_exhausted_falls_back_to_relevance():
    tokens = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [2.0, 0.1]])  # rank 2
    unit = torch.nn.functional.normalize(tokens, dim=-1)
    rel = torch.tensor([1.0, 2.0, 3.0, 0.5])
    picks = dpp_greedy(rel[:, None] * (unit @ unit.T) * rel[None, :], 4, rel)
    assert sorted(picks) == [0, 1, 2, 3] and len(picks) == 4


@given(token_batches(max_b=3, max_n=24, dtypes=(torch.float32,)), keep_ratios)
def test_exact_count_padding_and_batch_independence(batch, ratio):
    tokens, query, valid = batch
    ctx = PruningContext(tokens, query, valid)
    keep = select_tokens(CDPrunerScorer(), TopKStrategy(), ctx, ratio).keep
    n_valid = valid.sum(1) if valid is not None else torch.full((tokens.shape[0],), tokens.shape[1])
    assert keep.sum(1).tolist() == [kept_count(ratio, int(v)) for v in n_valid]
    if valid is not None:
        assert not (keep & ~valid).any()
    last = PruningContext(tokens[-1:], query[-1:], None if valid is None else valid[-1:])
    assert torch.equal(select_tokens(CDPrunerScorer(), TopKStrategy(), last, ratio).keep[0],
                       keep[-1])  # fmt: skip


def test_bad_theta():
    with pytest.raises(ValueError, match="theta"):
        CDPrunerScorer(theta=0.0)
