import pytest
import torch

from vissparse.strategies import CosineScorer, RandomScorer, TopKStrategy, UniformScorer
from vissparse.strategies.base import score_and_select
from vissparse.strategies.baselines import coarse_to_fine_order


def test_random_scorer_is_a_pure_function_of_seed_and_sample():
    x, q = torch.randn(2, 32, 4), torch.zeros(2, 4)
    a, b, c = RandomScorer(seed=1), RandomScorer(seed=1), RandomScorer(seed=2)
    first = a.score(x, q)
    assert first.dtype == torch.float32 and first.shape == (2, 32)
    assert torch.equal(first, b.score(x, q))
    assert torch.equal(a.score(x, q), first)  # earlier calls change nothing
    assert not torch.equal(first, c.score(x, q))  # the seed matters
    assert not torch.equal(first[0], first[1])  # so does the sample
    keys = [b"one", b"two"]
    keyed = a.score(x, q, sample_keys=keys)
    assert torch.equal(keyed, a.score(torch.zeros_like(x), q, sample_keys=keys))
    assert torch.equal(keyed[1], a.score(x[:1], q[:1], sample_keys=[b"two"])[0])
    with pytest.raises(ValueError, match="`sample_keys`"):
        a.score(x, q, sample_keys=[b"one"])
    with pytest.raises(ValueError, match="`sample_keys`"):
        a.score(x, q, sample_keys=["one", "two"])


def test_score_and_select_passes_sample_keys_only_to_scorers_that_use_them():
    seen = []

    class Plain(CosineScorer):
        def score(self, image_tokens, query, valid=None):
            seen.append("plain")
            return super().score(image_tokens, query, valid)

    x, q = torch.randn(1, 8, 4), torch.randn(1, 4)
    score_and_select(Plain(), TopKStrategy(), x, q, 0.5, sample_keys=[b"k"])
    keep = score_and_select(RandomScorer(), TopKStrategy(), x, q, 0.5, sample_keys=[b"k"])
    ref = TopKStrategy().select(RandomScorer().score(x, q, sample_keys=[b"k"]), 0.5)
    assert seen == ["plain"] and torch.equal(keep, ref)


def test_the_older_uses_sample_keys_spelling_still_receives_the_keys():
    got = []

    class Keyed(CosineScorer):
        uses_sample_keys = True

        def score(self, image_tokens, query, valid=None, sample_keys=None):
            got.append(sample_keys)
            return super().score(image_tokens, query, valid)

    score_and_select(Keyed(), TopKStrategy(), torch.randn(1, 4, 2), torch.randn(1, 2), 0.5,
                     sample_keys=[b"k"])  # fmt: skip
    assert got == [[b"k"]]


def test_coarse_to_fine_order_is_a_permutation_of_distinct_scores():
    for n in (1, 2, 3, 7, 16, 49, 576, 1000):
        scores = coarse_to_fine_order(n)
        assert scores.unique().numel() == n


def blocks_hit(mask, side, block):
    grid = mask.view(side, side)
    counts = grid.view(side // block, block, side // block, block).sum(dim=(1, 3))
    return counts


def test_uniform_covers_the_grid_evenly():
    side = 16
    x, q = torch.zeros(1, side * side, 4), torch.zeros(1, 4)
    scores = UniformScorer().score(x, q)
    quarter = TopKStrategy().select(scores, 0.25)[0]
    assert torch.equal(blocks_hit(quarter, side, 2), torch.ones(8, 8, dtype=torch.long))
    sixteenth = TopKStrategy().select(scores, 1 / 16)[0]
    assert torch.equal(blocks_hit(sixteenth, side, 4), torch.ones(4, 4, dtype=torch.long))


def test_uniform_respects_padding():
    x, q = torch.zeros(1, 20, 4), torch.zeros(1, 4)
    valid = torch.zeros(1, 20, dtype=torch.bool)
    valid[0, 4:] = True  # left padding, 16 valid tokens = a 4x4 grid
    mask = TopKStrategy().select(UniformScorer().score(x, q, valid), 0.25, valid)[0]
    assert not bool(mask[:4].any())
    kept = mask[4:].view(4, 4)
    assert torch.equal(kept.view(2, 2, 2, 2).sum(dim=(1, 3)), torch.ones(2, 2, dtype=torch.long))
