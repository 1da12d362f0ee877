"""Hypothesis properties of the mask: cosine scorer + top-k strategy."""

from fractions import Fraction
from math import ceil

import torch
from hypothesis import assume, given
from hypothesis import strategies as st

from tests.strategies.strategies_hyp import keep_ratios, min_gap, token_batches
from vissparse.strategies import (
    CosineScorer,
    MeanCosineScorer,
    TopKStrategy,
    cosine_scores,
    kept_count,
)

SCORER, TOPK = CosineScorer(), TopKStrategy()
# the default's kept set without the prompt's words (tests/strategies/test_cosine.py), as
# cosines: its softmax masses at temperature 0.02 underflow to ties on random tokens, and
# ties go to the lower index, so the order-free properties need distinct cosines
RANKING = CosineScorer(aggregate="mean")


def mask_of(tokens, query, ratio, valid=None, scorer=SCORER):
    return TOPK.select(scorer.score(tokens, query, valid), ratio, valid)


def n_valid_per_row(tokens, valid):
    if valid is None:
        return [tokens.shape[1]] * tokens.shape[0]
    return valid.sum(dim=1).tolist()


def reference_count(ratio: float, n: int) -> int:
    """Independent re-statement of the contract with exact rational arithmetic."""
    if n == 0:
        return 0
    exact = Fraction(ratio) * n
    nearest = round(exact)
    k = nearest if abs(exact - nearest) <= Fraction(1, 10**6) else ceil(exact)
    return min(max(k, 1), n)


@given(token_batches(), keep_ratios)
def test_mask_shape_and_dtype(batch, ratio):
    tokens, query, valid = batch
    mask = mask_of(tokens, query, ratio, valid)
    assert mask.dtype == torch.bool
    assert mask.shape == tokens.shape[:2]


@given(token_batches(), keep_ratios)
def test_exact_kept_count_per_image(batch, ratio):
    tokens, query, valid = batch
    mask = mask_of(tokens, query, ratio, valid)
    for row, n in enumerate(n_valid_per_row(tokens, valid)):
        assert int(mask[row].sum()) == reference_count(ratio, int(n)) == kept_count(ratio, int(n))


@given(token_batches())
def test_keep_ratio_one_keeps_every_valid_token(batch):
    tokens, query, valid = batch
    mask = mask_of(tokens, query, 1.0, valid)
    expected = torch.ones_like(mask) if valid is None else valid
    assert torch.equal(mask, expected)


@given(token_batches(), keep_ratios, keep_ratios)
def test_masks_are_nested(batch, r1, r2):
    tokens, query, valid = batch
    low, high = sorted((r1, r2))
    small, large = mask_of(tokens, query, low, valid), mask_of(tokens, query, high, valid)
    assert not bool((small & ~large).any())


@given(token_batches(), st.randoms(use_true_random=False))
def test_permutation_equivariance(batch, rnd):
    tokens, query, valid = batch
    scores = RANKING.score(tokens, query, valid)
    assume(min_gap(scores, valid) > 1e-5)  # ties go to the lower index, so need distinct scores
    n = tokens.shape[1]
    perm = list(range(n))
    rnd.shuffle(perm)
    perm = torch.tensor(perm)
    ratio = rnd.uniform(0.05, 1.0)
    permuted_valid = None if valid is None else valid[:, perm]
    mask = mask_of(tokens, query, ratio, valid, RANKING)
    permuted = mask_of(tokens[:, perm], query, ratio, permuted_valid, RANKING)
    assert torch.equal(permuted, mask[:, perm])


@given(
    token_batches(),
    keep_ratios,
    st.floats(min_value=1e-2, max_value=1e2),
    st.floats(min_value=1e-2, max_value=1e2),
)
def test_cosine_scale_invariance(batch, ratio, token_scale, query_scale):
    tokens, query, valid = batch
    tokens, query = tokens.float(), query.float()
    assume(min_gap(RANKING.score(tokens, query), valid) > 1e-4)
    assume(bool((tokens.norm(dim=-1) > 1e-3).all()) and bool((query.norm(dim=-1) > 1e-3).all()))
    scaled = mask_of(tokens * token_scale, query * query_scale, ratio, valid, RANKING)
    assert torch.equal(scaled, mask_of(tokens, query, ratio, valid, RANKING))


@given(token_batches(), keep_ratios)
def test_determinism(batch, ratio):
    tokens, query, valid = batch
    assert torch.equal(mask_of(tokens, query, ratio, valid), mask_of(tokens, query, ratio, valid))


@given(token_batches(), keep_ratios, st.sampled_from([True, False]))
def test_invalid_tokens_never_kept(batch, ratio, largest):
    tokens, query, valid = batch
    assume(valid is not None)
    mask = mask_of(tokens, query, ratio, valid, scorer=CosineScorer(largest=largest))
    assert not bool((mask & ~valid).any())


@given(token_batches(), keep_ratios)
def test_batch_independence(batch, ratio):
    tokens, query, valid = batch
    mask = mask_of(tokens, query, ratio, valid)
    for row in range(tokens.shape[0]):
        row_valid = None if valid is None else valid[row : row + 1]
        alone = mask_of(tokens[row : row + 1], query[row : row + 1], ratio, row_valid)
        assert torch.equal(alone[0], mask[row])


@given(token_batches(padding=False), st.data())
def test_no_nan_scores_for_zero_vectors(batch, data):
    tokens, query, _ = batch
    zero_rows = data.draw(st.lists(st.integers(0, tokens.shape[1] - 1), max_size=5))
    tokens[:, zero_rows] = 0
    if data.draw(st.booleans()):
        query = torch.zeros_like(query)
    for largest in (True, False):
        scores = CosineScorer(largest=largest).score(tokens, query)
        assert scores.dtype == torch.float32
        assert bool(torch.isfinite(scores).all())
    assert bool(torch.isfinite(cosine_scores(tokens, query)).all())


def test_prompt_adaptivity_two_queries_two_masks():
    gen = torch.Generator().manual_seed(0)
    tokens = 0.3 * torch.randn(1, 64, 16, generator=gen)
    car, sky = torch.zeros(16), torch.zeros(16)
    car[0], sky[1] = 1.0, 1.0
    tokens[0, :8] += 4 * car  # a "car" region
    tokens[0, 40:48] += 4 * sky  # a "sky" region
    # the seed's plain cosine keeps the region that matches the query
    mask_car = mask_of(tokens, car[None], 0.125, scorer=MeanCosineScorer())
    mask_sky = mask_of(tokens, sky[None], 0.125, scorer=MeanCosineScorer())
    assert not torch.equal(mask_car, mask_sky)
    assert bool(mask_car[0, :8].all()) and bool(mask_sky[0, 40:48].all())
    # the default (centred, least similar) adapts to the query too: it drops that region
    default_car, default_sky = mask_of(tokens, car[None], 0.125), mask_of(tokens, sky[None], 0.125)
    assert not torch.equal(default_car, default_sky)
    assert not bool(default_car[0, :8].any()) and not bool(default_sky[0, 40:48].any())
