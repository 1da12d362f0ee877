"""VisPruner: important plus diverse tokens, against a literal transcription of the code."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.strategies.strategies_hyp import keep_ratios, token_batches
from vissparse.strategies import PruningContext, TopKStrategy, get_scorer, kept_count, select_tokens
from vissparse.strategies.vispruner import VisPrunerScorer, vispruner_ranks


def released_encode_images(image_features, image_attentions, visual_token_num, important_ratio,
                           odd_fix=False):  # fmt: skip
    """Theia-4869/VisPruner @ aefa01a, llava/model/llava_arch.py::encode_images (l.141-187),
    literally, from the vision tower's outputs to ``index_masks`` (projector left out).

    ``argsort`` is made stable (the code's is not; the inputs here have no ties). With
    ``odd_fix`` the gather's ``expand(-1, R // 2 - r)`` becomes ``expand(-1, max((R + 1)
    // 2 - r, 0))``: the same for even ``R`` and ``r <= R // 2``; for odd ``R`` the code
    raises (one column short), and for ``r`` beyond ``R // 2 + 1`` too (negative size).
    """
    B, N, _C = image_features.shape
    device = image_features.device
    index_masks = torch.ones(B, N, dtype=torch.bool, device=device)
    important_token_num = int(visual_token_num * important_ratio)
    diverse_token_num = visual_token_num - important_token_num
    image_attentions = image_attentions.mean(dim=1)
    token_indices = image_attentions.argsort(dim=-1, descending=True, stable=True)
    important_indices = token_indices[:, :important_token_num]
    residual_indices = token_indices[:, important_token_num:]
    image_normalized = image_features / image_features.norm(dim=-1, keepdim=True)
    while diverse_token_num > 0:
        R = residual_indices.shape[1]
        r = min(8, R - diverse_token_num)
        if r <= 0:
            break
        residual_tokens = image_normalized[
            torch.arange(B).unsqueeze(-1).expand(-1, R), residual_indices
        ]
        a, b = residual_tokens[..., ::2, :], residual_tokens[..., 1::2, :]
        scores = a @ b.transpose(-1, -2)
        scores = scores.max(dim=-1).values
        distinct_indices = scores.argsort(dim=-1, descending=True, stable=True)[:, r:]
        half = (R + 1) // 2 if odd_fix else R // 2
        if odd_fix:  # r > half (few tokens left): the code's expand(-1, negative) fails
            half = max(half, r)
        residual_indices = torch.cat([
            residual_indices[..., ::2][torch.arange(B).unsqueeze(-1).expand(-1, half - r),
                                       distinct_indices],
            residual_indices[..., 1::2],
        ], dim=-1)  # fmt: skip
    if diverse_token_num > 0:
        selected_indices = torch.cat([important_indices, residual_indices], dim=-1)
    else:
        selected_indices = important_indices
    index_masks = torch.zeros(B, N, dtype=torch.bool, device=device)
    index_masks.scatter_(1, selected_indices, True)
    return index_masks, selected_indices


def context(features, attention, valid=None):
    b, n = features.shape[:2]
    return PruningContext(torch.zeros(b, n, 2), torch.zeros(b, 2), valid,
                          vision_features=features, vision_attention=attention)  # fmt: skip


def ratio_for(t, n):
    """A keep ratio whose budget over ``n`` tokens is ``t``."""
    ratio = t / n
    assert kept_count(ratio, n) == t
    return ratio


# (N, D, budget T, important_ratio): the README's settings, even residual lengths
CASES = [(576, 64, 64, 0.5), (576, 64, 128, 0.5), (576, 64, 64, 0.75), (256, 32, 32, 0.5),
         (256, 32, 64, 0.5)]  # fmt: skip


@pytest.mark.parametrize(("n", "d", "t", "important_ratio"), CASES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kept_set_matches_the_released_code(n, d, t, important_ratio, seed):
    gen = torch.Generator().manual_seed(seed)
    feats = torch.randn(1, n, d, generator=gen)
    heads = torch.softmax(torch.randn(1, 16, n, generator=gen) * 2, dim=-1)
    scorer = VisPrunerScorer(important_ratio)
    theirs, picks = released_encode_images(feats, heads, t, important_ratio)
    sel = select_tokens(scorer, TopKStrategy(), context(feats, heads.mean(1)), ratio_for(t, n))
    assert torch.equal(sel.keep, theirs)
    # and the picks rank in the released order: important, then the final residual list
    ranks = vispruner_ranks(feats, heads.mean(1), torch.tensor([t]),
                            important_ratio=important_ratio, max_budget=t)  # fmt: skip
    assert ranks[0].argsort(descending=True)[:t].tolist() == picks[0].tolist()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_odd_residual_lengths_keep_every_surviving_a_token(seed):
    gen = torch.Generator().manual_seed(seed)
    feats = torch.randn(1, 576, 64, generator=gen)
    att = torch.rand(1, 1, 576, generator=gen)
    t = kept_count(0.1, 576)  # 58: T_imp = 29, R = 547 is odd
    with pytest.raises(IndexError, match="could not be broadcast"):  # the code as released
        released_encode_images(feats, att, t, 0.5)
    theirs, _ = released_encode_images(feats, att, t, 0.5, odd_fix=True)
    sel = select_tokens(VisPrunerScorer(), TopKStrategy(), context(feats, att[:, 0]), 0.1)
    assert torch.equal(sel.keep, theirs)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 40), st.integers(0, 10**6), st.data())
def test_small_cases_match_the_fixed_released_code(n, seed, data):
    """Every budget and split: odd lengths, short last rounds, rounds that drop all of A."""
    gen = torch.Generator().manual_seed(seed)
    feats, att = torch.randn(1, n, 4, generator=gen), torch.rand(1, 1, n, generator=gen)
    t = data.draw(st.integers(1, n))
    important_ratio = data.draw(st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0]))
    theirs, _ = released_encode_images(feats, att, t, important_ratio, odd_fix=True)
    ranks = vispruner_ranks(feats, att[:, 0], torch.tensor([t]), important_ratio=important_ratio,
                            max_budget=t)  # fmt: skip
    assert torch.equal(ranks > 0, theirs)


def test_a_round_that_drops_all_of_a_splits_b_next():
    # important 0 1; residual 2..7 (by attention): A = 2 4 6, B = 3 5 7; r = 4 > |A| drops
    # all of A; then A = 3 7, B = 5: 7 duplicates 5 more than 3 does, so 7 goes
    feats = torch.tensor([[[0.0, 0.0, 1.0], [0.0, 0.0, -1.0], [1.0, 1.0, 1.0], [0.0, 1.0, 0.0],
                           [1.0, -1.0, 1.0], [1.0, 0.0, 0.0], [-1.0, 1.0, 1.0],
                           [0.9, 0.1, 0.0]]])  # fmt: skip
    att = torch.linspace(1.0, 0.3, 8)[None]
    keep = select_tokens(VisPrunerScorer(), TopKStrategy(), context(feats, att), 0.5).keep
    assert keep[0].nonzero().flatten().tolist() == [0, 1, 3, 5]


def test_important_tokens_are_the_top_attention():
    gen = torch.Generator().manual_seed(4)
    feats, att = torch.randn(1, 100, 8, generator=gen), torch.rand(1, 100, generator=gen)
    for ratio in (0.05, 0.2, 0.5):
        t = kept_count(ratio, 100)
        keep = select_tokens(VisPrunerScorer(), TopKStrategy(), context(feats, att), ratio).keep
        top = att[0].argsort(descending=True)[: int(t * 0.5)]
        assert keep[0, top].all()
    everything = VisPrunerScorer(important_ratio=1.0)
    keep = select_tokens(everything, TopKStrategy(), context(feats, att), 0.2).keep
    assert keep[0].nonzero().flatten().tolist() == sorted(att[0].topk(20).indices.tolist())


def test_hand_example_drops_the_duplicated_a_tokens():
    # 0 important; the rest by attention 1 2 3 4 5; A = 1 3 5, B = 2 4; 1 ~ 2 and 3 ~ 4
    feats = torch.tensor([[[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.99, 0.1, 0.0],
                           [0.0, 1.0, 0.0], [0.1, 0.99, 0.0], [-1.0, -1.0, 0.0]]])  # fmt: skip
    att = torch.tensor([[0.5, 0.2, 0.1, 0.09, 0.08, 0.03]])
    keep = select_tokens(VisPrunerScorer(0.25), TopKStrategy(), context(feats, att), 4 / 6).keep
    assert keep.tolist() == [[True, False, True, False, True, True]]
    # rounds of 8, 8, 8, 6 on odd lengths 35, 27, 19, 11, each split in the new order
    gen = torch.Generator().manual_seed(0)
    feats, att = torch.randn(1, 40, 3, generator=gen), torch.rand(1, 1, 40, generator=gen)
    theirs, _ = released_encode_images(feats, att, 10, 0.5, odd_fix=True)
    sel = select_tokens(VisPrunerScorer(), TopKStrategy(), context(feats, att[:, 0]), 0.25)
    assert torch.equal(sel.keep, theirs)


def test_ties_go_to_the_lower_index():
    feats = torch.ones(1, 8, 2)  # every token the same, attention equal
    keep = select_tokens(VisPrunerScorer(), TopKStrategy(), context(feats, torch.ones(1, 8)), 0.5)
    # important 0 1; residual 2..7: A = 2 4 6, B = 3 5 7; r = 4 drops all of A; then
    # A = 3 7, B = 5, r = 1 drops 3 (ties: the earlier position first)
    assert keep.keep[0].nonzero().flatten().tolist() == [0, 1, 5, 7]
    # (R = 3 is odd: as released, `expand(-1, R // 2 - r)` is empty there and the code
    # keeps 3 tokens of 4; with the fix it keeps ours)
    theirs, _ = released_encode_images(feats, torch.ones(1, 1, 8), 4, 0.5, odd_fix=True)
    assert torch.equal(keep.keep, theirs)
    as_released, _ = released_encode_images(feats, torch.ones(1, 1, 8), 4, 0.5)
    assert int(as_released.sum()) == 3


def test_padding_is_never_kept_and_rows_are_independent():
    gen = torch.Generator().manual_seed(5)
    feats, att = torch.randn(3, 60, 8, generator=gen), torch.rand(3, 60, generator=gen)
    valid = torch.ones(3, 60, dtype=torch.bool)
    valid[0, 37:] = False
    valid[1, ::3] = False
    valid[2, :5] = False
    att[~valid] = 1.0  # padding that would rank first by attention
    for ratio in (0.05, 0.25, 0.6, 1.0):
        sel = select_tokens(VisPrunerScorer(), TopKStrategy(), context(feats, att, valid), ratio)
        assert not (sel.keep & ~valid).any()
        assert sel.keep.sum(1).tolist() == [kept_count(ratio, int(v)) for v in valid.sum(1)]
        for row in range(3):  # the row alone, its padding removed: the same tokens
            index = valid[row].nonzero().flatten()
            alone = select_tokens(
                VisPrunerScorer(),
                TopKStrategy(),
                context(feats[row, index][None], att[row, index][None]),
                ratio,
            )
            assert torch.equal(index[alone.keep[0]], sel.keep[row].nonzero().flatten())


@settings(max_examples=40, deadline=None)
@given(token_batches(max_b=3, max_n=40, dtypes=(torch.float32,)), keep_ratios)
def test_exact_count_and_batch_independence(batch, ratio):
    tokens, _, valid = batch
    att = torch.rand(tokens.shape[:2], generator=torch.Generator().manual_seed(1))
    sel = select_tokens(VisPrunerScorer(), TopKStrategy(), context(tokens, att, valid), ratio)
    n_valid = valid.sum(1) if valid is not None else torch.full((tokens.shape[0],), tokens.shape[1])
    assert sel.keep.sum(1).tolist() == [kept_count(ratio, int(v)) for v in n_valid]
    if valid is not None:
        assert not (sel.keep & ~valid).any()
    last = context(tokens[-1:], att[-1:], None if valid is None else valid[-1:])
    assert torch.equal(select_tokens(VisPrunerScorer(), TopKStrategy(), last, ratio).keep[0],
                       sel.keep[-1])  # fmt: skip


def test_registered_and_arguments_checked():
    assert isinstance(get_scorer("vispruner")(), VisPrunerScorer)
    assert VisPrunerScorer.requires == {"vision_attention", "vision_features"}
    for bad in ({"important_ratio": 1.5}, {"important_ratio": True}, {"vision_layer": "x"}):
        with pytest.raises(ValueError, match=f"`{next(iter(bad))}`"):
            VisPrunerScorer(**bad)
    with pytest.raises(ValueError, match="'vision_attention'"):
        select_tokens(VisPrunerScorer(), TopKStrategy(),
                      PruningContext(torch.zeros(1, 4, 2), torch.zeros(1, 2),
                                     vision_features=torch.ones(1, 4, 2)), 0.5)  # fmt: skip
    with pytest.raises(ValueError, match="select_tokens"):
        VisPrunerScorer().score(torch.zeros(1, 4, 2), torch.zeros(1, 2))
