import torch

from vissparse.strategies import RandomScorer, TopKStrategy, UniformScorer
from vissparse.strategies.baselines import coarse_to_fine_order


def test_random_scorer_is_reproducible_and_seeded():
    x, q = torch.zeros(2, 32, 4), torch.zeros(2, 4)
    a, b, c = RandomScorer(seed=1), RandomScorer(seed=1), RandomScorer(seed=2)
    first = a.score(x, q)
    assert torch.equal(first, b.score(x, q))
    assert not torch.equal(first, c.score(x, q))
    assert not torch.equal(a.score(x, q), first)  # the stream moves on
    a.reset()
    assert torch.equal(a.score(x, q), first)
    assert first.dtype == torch.float32


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
