"""Hypothesis properties of the random baseline: masks depend on (seed, sample, keep) only."""

import torch
from hypothesis import given
from hypothesis import strategies as st

from tests.strategies.strategies_hyp import keep_ratios, token_batches
from vissparse.strategies import RandomScorer, TopKStrategy

TOPK = TopKStrategy()
seeds = st.integers(-(2**40), 2**40)


def masks(scorer, tokens, query, ratio, valid=None, keys=None):
    return TOPK.select(scorer.score(tokens, query, valid, sample_keys=keys), ratio, valid)


@given(token_batches(), seeds, keep_ratios, st.integers(0, 5))
def test_masks_ignore_earlier_calls_and_other_instances(batch, seed, ratio, warmup):
    tokens, query, valid = batch
    fresh = masks(RandomScorer(seed), tokens, query, ratio, valid)
    used = RandomScorer(seed)
    for _ in range(warmup):  # warm-up calls, on this batch and on others
        used.score(tokens, query, valid)
        used.score(torch.randn(3, 7, tokens.shape[2]), torch.randn(3, tokens.shape[2]))
    assert torch.equal(masks(used, tokens, query, ratio, valid), fresh)


@given(token_batches(), seeds, keep_ratios, st.data())
def test_a_row_gets_the_same_mask_in_any_batch(batch, seed, ratio, data):
    tokens, query, valid = batch
    scorer = RandomScorer(seed)
    together = masks(scorer, tokens, query, ratio, valid)
    order = data.draw(st.permutations(range(tokens.shape[0])))
    extra = data.draw(st.integers(0, 6))  # more padding, as a longer batch-mate gives
    pad = torch.randn(tokens.shape[0], extra, tokens.shape[2]).to(tokens.dtype)
    longer = torch.cat([tokens, pad], dim=1)[list(order)]
    longer_valid = torch.ones(tokens.shape[:2], dtype=torch.bool) if valid is None else valid
    longer_valid = torch.cat([longer_valid, torch.zeros(tokens.shape[0], extra, dtype=torch.bool)],
                             dim=1)[list(order)]  # fmt: skip
    shuffled = masks(scorer, longer, query[list(order)], ratio, longer_valid)
    for new_row, row in enumerate(order):
        alone = masks(scorer, tokens[row : row + 1], query[row : row + 1], ratio,
                      None if valid is None else valid[row : row + 1])  # fmt: skip
        assert torch.equal(alone[0], together[row])
        assert torch.equal(shuffled[new_row, : tokens.shape[1]], together[row])


@given(token_batches(padding=False), seeds, keep_ratios, keep_ratios)
def test_masks_nest_across_keep_ratios(batch, seed, r1, r2):
    tokens, query, _ = batch
    small, large = sorted((r1, r2))
    scorer = RandomScorer(seed)
    inner, outer = masks(scorer, tokens, query, small), masks(scorer, tokens, query, large)
    assert bool((inner <= outer).all())


@given(token_batches(max_b=3), seeds, keep_ratios)
def test_sample_keys_decide_the_mask_whatever_the_tokens(batch, seed, ratio):
    tokens, query, valid = batch
    keys = [f"sample-{i}".encode() for i in range(tokens.shape[0])]
    scorer = RandomScorer(seed)
    noisy = tokens + 1e-3 * torch.randn(tokens.shape).to(tokens.dtype)  # last bits differ
    assert torch.equal(masks(scorer, tokens, query, ratio, valid, keys),
                       masks(scorer, noisy, query, ratio, valid, keys))  # fmt: skip
