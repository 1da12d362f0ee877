"""SCOPE: saliency-weighted greedy coverage, against a literal transcription of the code."""

import pytest
import torch
from hypothesis import given, settings

from tests.strategies.strategies_hyp import keep_ratios, token_batches
from vissparse.strategies import (
    PruningContext,
    TopKStrategy,
    get_scorer,
    kept_count,
    select_tokens,
)
from vissparse.strategies.scope import ScopeScorer, scope_order


def released_scope(visual_feature_vectors, num_selected_token, cls_attn=None, alpha=1.0,
                   combined="multi"):  # fmt: skip
    """kinredon/SCOPE @ 6bf7306, scope/clip_encoder.py::SCOPE, literally (the ALPHA and
    COMBINED environment variables are arguments here)."""
    norm_vectors = visual_feature_vectors / visual_feature_vectors.norm(dim=-1, keepdim=True)
    cosine_simi = torch.bmm(norm_vectors, norm_vectors.transpose(1, 2))
    B, N = visual_feature_vectors.shape[:2]
    device = visual_feature_vectors.device
    dtype = visual_feature_vectors.dtype
    selected = torch.zeros(B, N, dtype=torch.bool, device=device)
    selected_idx = torch.empty(B, num_selected_token, dtype=torch.long, device=device)
    cur_max = torch.zeros(B, N, dtype=dtype, device=device)
    if cls_attn is not None:
        cls_attn_powered = cls_attn**alpha
    else:
        cls_attn_powered = torch.ones(B, N, dtype=dtype, device=device)
    for i in range(num_selected_token):
        unselected_mask = ~selected
        gains = torch.maximum(
            torch.zeros(1, dtype=dtype, device=device),
            cosine_simi.masked_fill(~unselected_mask.unsqueeze(1), 0) - cur_max.unsqueeze(2),
        ).sum(dim=1)
        if combined == "multi":
            gains = gains * cls_attn_powered
        elif combined == "add":
            gains = gains + cls_attn_powered
        else:
            raise NotImplementedError
        gains = gains.masked_fill(~unselected_mask, float("-inf"))
        best_idx = gains.argmax(dim=1)
        selected[torch.arange(B, device=device), best_idx] = True
        selected_idx[:, i] = best_idx
        cur_max = torch.maximum(cur_max, cosine_simi[torch.arange(B, device=device), best_idx])
    return selected_idx, cosine_simi


def coverage(sim, chosen):
    """F(S) = sum_j max(0, max_{i in S} cos(i, j)), by loops (float64 lists)."""
    return sum(max([0.0] + [sim[i][j] for i in chosen]) for j in range(len(sim)))


def context(features, attention, valid=None):
    b, n = features.shape[:2]
    return PruningContext(torch.zeros(b, n, 2), torch.zeros(b, 2), valid,
                          vision_features=features, vision_attention=attention)  # fmt: skip


def heads_attention(b, n, heads, gen):
    """[B, H, N] softmax-like [CLS] attention rows, as a CLIP layer gives them."""
    return torch.softmax(torch.randn(b, heads, n, generator=gen) * 2, dim=-1)


@pytest.mark.parametrize(("n", "d"), [(576, 64), (256, 32)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pick_order_matches_the_released_code(n, d, seed):
    gen = torch.Generator().manual_seed(seed)
    feats = torch.randn(1, n, d, generator=gen)
    heads = heads_attention(1, n, 16, gen)  # 16 heads (CLIP ViT-L): sum = 16 * mean exactly
    k = kept_count(0.1, n)
    theirs, _ = released_scope(feats, k, heads.sum(dim=1))
    ours = scope_order(feats, heads.mean(dim=1), steps=k)[:, :k]
    assert ours.tolist() == theirs.tolist()
    for ratio in (0.05, 0.1):  # the scorer's keep set is the released code's first k picks
        sel = select_tokens(ScopeScorer(), TopKStrategy(), context(feats, heads.mean(1)), ratio)
        assert set(sel.keep[0].nonzero().flatten().tolist()) == set(
            theirs[0, : kept_count(ratio, n)].tolist()
        )


@pytest.mark.parametrize(("alpha", "combined"), [(2.0, "multi"), (0.5, "multi"), (1.0, "add")])
def test_options_match_the_released_code(alpha, combined):
    gen = torch.Generator().manual_seed(3)
    feats, att = torch.randn(2, 64, 16, generator=gen), torch.rand(2, 64, generator=gen)
    theirs, _ = released_scope(feats, 20, att, alpha, combined)
    ours = scope_order(feats, att, steps=20, alpha=alpha, combined=combined)[:, :20]
    assert ours.tolist() == theirs.tolist()


def test_hand_example_saliency_then_coverage():
    # 0 and 1 near-duplicates, 2 orthogonal, 3 the outlier opposite 0
    feats = torch.tensor([[[1.0, 0.0], [0.98, 0.2], [0.0, 1.0], [-1.0, 0.0]]])
    att = torch.tensor([[0.4, 0.3, 0.2, 0.1]])
    # step 1: gains 1.98 / 2.18 / 1.20 / 1 times 0.4 / 0.3 / 0.2 / 0.1: 0 (0.79 > 0.65);
    # step 2: 1 adds 0.22 * 0.3, 2 adds 1 * 0.2, 3 adds 1 * 0.1: 2; then 3 (0.1), then 1
    assert scope_order(feats, att)[0].tolist() == [0, 2, 3, 1]
    keep = select_tokens(ScopeScorer(), TopKStrategy(), context(feats, att), 0.5).keep
    assert keep.tolist() == [[True, False, True, False]]


@pytest.mark.parametrize("seed", range(4))
def test_uniform_attention_is_plain_greedy_coverage(seed):
    gen = torch.Generator().manual_seed(seed)
    feats = torch.randn(1, 12, 4, generator=gen)
    order = scope_order(feats, torch.full((1, 12), 0.25))[0].tolist()
    # the released code without attention is pure coverage: the same order
    assert order == released_scope(feats, 12, None)[0][0].tolist()
    # each pick has the largest coverage increment (coverage has exact ties: a pair that
    # only covers each other gains the same either way, so up to rounding)
    unit = torch.nn.functional.normalize(feats[0].double(), dim=-1)
    sim = (unit @ unit.T).tolist()
    for p in range(12):
        base = coverage(sim, order[:p])
        best = max(coverage(sim, [*order[:p], i]) - base for i in range(12) if i not in order[:p])
        assert coverage(sim, order[: p + 1]) - base >= best - 1e-6


def test_negative_cosines_add_no_gain():
    gen = torch.Generator().manual_seed(0)
    feats = torch.rand(1, 8, 4, generator=gen) + 0.1  # all pairwise cosines positive
    att = torch.rand(1, 8, generator=gen) + 0.5
    alone = scope_order(feats, att)[0].tolist()
    # a token opposite every other: its negative cosines must not change anyone's gain
    far = torch.cat([feats, -feats.sum(dim=1, keepdim=True)], dim=1)
    with_far = scope_order(far, torch.cat([att, torch.full((1, 1), 1e-3)], dim=1))[0].tolist()
    assert [i for i in with_far if i != 8] == alone
    # picked first, it covers no other token (coverage never goes below 0)
    first = scope_order(far, torch.cat([att, torch.full((1, 1), 100.0)], dim=1))[0].tolist()
    assert first == [8, *alone]


def test_ties_go_to_the_lower_index():
    feats = torch.ones(1, 5, 3)  # all duplicates: picking any one covers all
    assert scope_order(feats, torch.full((1, 5), 0.2))[0].tolist() == [0, 1, 2, 3, 4]
    feats = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]]])
    assert scope_order(feats, torch.full((1, 4), 0.5))[0].tolist() == [0, 1, 2, 3]


def test_padding_is_never_kept_nor_covered_and_rows_are_independent():
    gen = torch.Generator().manual_seed(5)
    feats, att = torch.randn(3, 40, 8, generator=gen), torch.rand(3, 40, generator=gen)
    valid = torch.ones(3, 40, dtype=torch.bool)
    valid[0, 25:] = False
    valid[1, ::3] = False
    feats[~valid] = feats[~valid] * 50  # padding features that would win coverage
    att[~valid] = 1.0
    for ratio in (0.05, 0.25, 1.0):
        sel = select_tokens(ScopeScorer(), TopKStrategy(), context(feats, att, valid), ratio)
        assert not (sel.keep & ~valid).any()
        assert sel.keep.sum(1).tolist() == [kept_count(ratio, int(v)) for v in valid.sum(1)]
        for row in range(3):  # the row alone, its padding removed: the same tokens
            index = valid[row].nonzero().flatten()
            alone = select_tokens(
                ScopeScorer(),
                TopKStrategy(),
                context(feats[row, index][None], att[row, index][None]),
                ratio,
            )
            assert torch.equal(index[alone.keep[0]], sel.keep[row].nonzero().flatten())


@settings(max_examples=40, deadline=None)
@given(token_batches(max_b=3, max_n=24, dtypes=(torch.float32,)), keep_ratios)
def test_exact_count_and_batch_independence(batch, ratio):
    tokens, _, valid = batch
    att = torch.rand(tokens.shape[:2], generator=torch.Generator().manual_seed(1))
    ctx = context(tokens, att, valid)
    sel = select_tokens(ScopeScorer(), TopKStrategy(), ctx, ratio)
    n_valid = valid.sum(1) if valid is not None else torch.full((tokens.shape[0],), tokens.shape[1])
    assert sel.keep.sum(1).tolist() == [kept_count(ratio, int(v)) for v in n_valid]
    if valid is not None:
        assert not (sel.keep & ~valid).any()
    last = context(tokens[-1:], att[-1:], None if valid is None else valid[-1:])
    assert torch.equal(select_tokens(ScopeScorer(), TopKStrategy(), last, ratio).keep[0],
                       sel.keep[-1])  # fmt: skip


def test_full_order_scores_agree_with_the_stopped_plan():
    gen = torch.Generator().manual_seed(2)
    feats, att = torch.randn(2, 30, 6, generator=gen), torch.rand(2, 30, generator=gen)
    ctx = context(feats, att)
    scorer = ScopeScorer()
    scores = scorer.score_context(ctx)
    for ratio in (0.1, 0.5):
        assert torch.equal(TopKStrategy().select(scores, ratio),
                           scorer.plan(ctx, ratio, TopKStrategy()).keep)  # fmt: skip


def test_registered_and_arguments_checked():
    assert isinstance(get_scorer("scope")(), ScopeScorer)
    assert ScopeScorer.requires == {"vision_attention", "vision_features"}
    for bad in ({"alpha": -1.0}, {"alpha": True}, {"combined": "mul"}, {"vision_layer": 1.5}):
        with pytest.raises(ValueError, match=f"`{next(iter(bad))}`"):
            ScopeScorer(**bad)
    with pytest.raises(ValueError, match="'vision_features'"):
        select_tokens(ScopeScorer(), TopKStrategy(),
                      PruningContext(torch.zeros(1, 4, 2), torch.zeros(1, 2),
                                     vision_attention=torch.ones(1, 4)), 0.5)  # fmt: skip
    with pytest.raises(ValueError, match="select_tokens"):
        ScopeScorer().score(torch.zeros(1, 4, 2), torch.zeros(1, 2))


def test_every_pick_once_and_padding_last():
    feats = torch.randn(2, 9, 3, generator=torch.Generator().manual_seed(0))
    valid = torch.tensor([[True] * 9, [True, False] * 4 + [True]])
    order = scope_order(feats, torch.rand(2, 9), valid)
    for row in range(2):
        assert sorted(order[row].tolist()) == list(range(9))
        n = int(valid[row].sum())
        assert valid[row, order[row, :n]].all() and not valid[row, order[row, n:]].any()
    assert order[1, 5:].tolist() == [1, 3, 5, 7]
