"""DivPrune against a literal statement of the paper's greedy max-min selection."""

import torch
from hypothesis import given

from tests.strategies.strategies_hyp import keep_ratios, token_batches
from vissparse.strategies import DivPruneScorer, TopKStrategy, get_scorer, kept_count
from vissparse.strategies.divprune import divprune_order


def paper_greedy(x: torch.Tensor, k: int) -> list[int]:
    """The paper's loop on one image's tokens ``[n, d]``: the first ``k`` picks."""
    unit = x.float() / x.float().norm(dim=1, keepdim=True).clamp_min(1e-8)
    dist = 1.0 - unit @ unit.t()
    dist = (dist + dist.t()) / 2  # d(i, j) = d(j, i) exactly: ties go to the lower index
    picked: list[int] = []
    for i in range(k):
        if i == 0:  # farthest from its nearest other token
            scores = torch.topk(dist, 2, dim=0, largest=False).values[1, :]
        else:  # farthest from the tokens picked so far
            scores = dist[picked].min(dim=0).values
            # the one deviation (see the module docstring): a kept token is not picked
            # again; the paper's loop re-picks one when all the rest are at distance 0
            scores[picked] = float("-inf")
        picked.append(int(torch.argmax(scores)))
    return picked


def test_hand_computed_example():
    # a and b nearly coincide; d is farthest from its nearest token (c, at distance 1),
    # then a (distance 2 from d), then c, and b (0.005 from a) comes last
    tokens = torch.tensor([[[1.0, 0.0], [0.99, 0.1], [0.0, 1.0], [-1.0, 0.0]]])
    assert divprune_order(tokens)[0].tolist() == [3, 0, 2, 1]
    keep = TopKStrategy().select(DivPruneScorer().score(tokens, torch.zeros(1, 2)), 0.5)
    assert keep[0].tolist() == [True, False, False, True]
    assert isinstance(get_scorer("divprune")(), DivPruneScorer)


@given(token_batches(max_b=3, max_n=24, padding=False, dtypes=(torch.float32,)), keep_ratios)
def test_topk_of_the_scores_is_the_papers_k_set(batch, ratio):
    tokens, query, _ = batch
    n = tokens.shape[1]
    k = kept_count(ratio, n)
    keep = TopKStrategy().select(DivPruneScorer().score(tokens, query), ratio)
    for row in range(tokens.shape[0]):
        if n < 2:
            continue
        expected = set(paper_greedy(tokens[row], k))
        assert set(keep[row].nonzero().flatten().tolist()) == expected


@given(token_batches(max_b=3, max_n=24, dtypes=(torch.float32,)))
def test_padding_and_batch_mates_change_nothing(batch):
    tokens, _, valid = batch
    if valid is None:
        valid = torch.ones(tokens.shape[:2], dtype=torch.bool)
    order = divprune_order(tokens, valid)
    for row in range(tokens.shape[0]):
        idx = valid[row].nonzero().flatten()
        m = len(idx)
        assert sorted(order[row].tolist()) == list(range(tokens.shape[1]))  # a permutation
        assert set(order[row, :m].tolist()) == set(idx.tolist())  # valid tokens first
        invalid = order[row, m:].tolist()
        assert invalid == sorted(invalid)
        alone = divprune_order(tokens[row : row + 1, idx])[0]
        assert order[row, :m].tolist() == idx[alone].tolist()
        if m >= 2:
            assert idx[paper_greedy(tokens[row, idx], m)].tolist() == order[row, :m].tolist()


@given(token_batches(max_b=3, max_n=32, dtypes=(torch.float32,)), keep_ratios)
def test_stopping_at_k_keeps_what_the_whole_order_keeps(batch, ratio):
    from vissparse.strategies.base import TokenScorer
    from vissparse.strategies.context import PruningContext

    tokens, query, valid = batch
    ctx = PruningContext(tokens.round(), query, valid)  # rounded: ties and duplicates
    fast = DivPruneScorer().plan(ctx, ratio, TopKStrategy()).keep
    whole = TokenScorer.plan(DivPruneScorer(), ctx, ratio, TopKStrategy()).keep
    assert torch.equal(fast, whole)
