"""MMTok against a literal transcription of the released greedy coverage selection."""

import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings

from tests.strategies.strategies_hyp import keep_ratios, token_batches
from vissparse.strategies import MMTokScorer, TopKStrategy, get_scorer, kept_count
from vissparse.strategies.base import TokenScorer
from vissparse.strategies.context import PruningContext
from vissparse.strategies.mmtok import coverage_matrix, mmtok_order


def released_selection(text, vision, clip, k, tv_temp=0.02, vv_temp=0.2, alpha=0.5):
    """``SemanticTokenSelector.mm_coverage_selection`` (Ironieser/MMTok @ d1522cd), literally.

    The non-JIT branch, with no padding indices; returns the picks in pick order (the
    released function returns them sorted).
    """

    def l2(x):
        return x / x.norm(dim=-1, keepdim=True).clamp(min=1e-8)

    x_norm = l2(vision).float()
    x_clip_norm = l2(clip).float()
    z_norm = l2(text).float()
    P = z_norm @ x_norm.T
    Q = x_clip_norm @ x_clip_norm.T
    m, n = P.shape
    P = F.softmax(P * (1.0 / tv_temp), dim=1) / m
    Q = F.softmax(Q * (1.0 / vv_temp), dim=1) / n
    k_max = min(k, n)
    Combined = torch.cat([P, Q * alpha], dim=0)
    best_Combined = torch.zeros(m + n, dtype=torch.float32)
    score_mask = torch.zeros(n, dtype=torch.float32)
    selected_indices = torch.empty(k_max, dtype=torch.long)
    for i in range(k_max):
        delta = (Combined - best_Combined.unsqueeze(1)).clamp_min_(0).sum(0)
        delta.add_(score_mask)
        best_idx = torch.argmax(delta)
        selected_indices[i] = best_idx
        torch.maximum(best_Combined, Combined[:, best_idx], out=best_Combined)
        score_mask[best_idx] = float("-inf")
    return selected_indices.tolist()


def context(tokens, features, words, word_mask, valid=None, **kw):
    return PruningContext(tokens, torch.zeros(tokens.shape[0], tokens.shape[2]), valid,
                          prompt_embeddings=words, prompt_mask=word_mask,
                          vision_features=features, **kw)  # fmt: skip


def every(m):
    """A ``[1, m]`` word mask that marks every word."""
    return torch.ones(1, m, dtype=torch.bool)


def draw(n, d, m, seed, dv=None):
    gen = torch.Generator().manual_seed(seed)
    tokens = torch.randn(n, d, generator=gen)
    features = torch.randn(n, dv or d + 8, generator=gen)
    words = torch.randn(m, d, generator=gen)
    return tokens, features, words


@pytest.mark.parametrize(
    ("n", "d", "seed", "tau_tv"),
    [(n, d, seed, 0.02) for n, d in ((576, 64), (256, 32)) for seed in (0, 1, 2)]
    + [(576, 64, 0, 0.01)],  # the released Qwen path's temperature
)
def test_same_picks_as_the_released_code(n, d, seed, tau_tv):
    tokens, features, words = draw(n, d, 7, seed)
    k = kept_count(0.1, n)
    expected = released_selection(words, tokens, features, k, tv_temp=tau_tv)
    cover = coverage_matrix(tokens[None], features[None], words[None],
                            every(7), tau_tv=tau_tv)  # fmt: skip
    assert mmtok_order(cover, steps=k)[0].tolist() == expected
    ctx = context(tokens[None], features[None], words[None], every(7))
    keep = MMTokScorer(tau_tv=tau_tv).plan(ctx, 0.1, TopKStrategy()).keep[0]
    assert keep.nonzero().flatten().tolist() == sorted(expected)


def coverage_by_hand(x, c, z, subset, tau_tv=0.02, tau_vv=0.2, alpha=0.5):
    """``F(S)`` from the paper's formula, with Python loops and ``math``."""

    def cos(a, b):
        return float(a @ b) / (float(a.norm()) * float(b.norm()))

    n, m = len(x), len(z)
    total = 0.0
    for r in range(m):
        e = [math.exp(cos(z[r], x[j]) / tau_tv) for j in range(n)]
        total += max((e[j] / sum(e) / m for j in subset), default=0.0)
    for r in range(n):
        e = [math.exp(cos(c[r], c[j]) / tau_vv) for j in range(n)]
        total += alpha * max((e[j] / sum(e) / n for j in subset), default=0.0)
    return total


def test_greedy_steps_maximise_the_coverage_gain_by_brute_force():
    tokens, features, words = draw(6, 4, 2, seed=5, dv=4)
    order = mmtok_order(coverage_matrix(tokens[None], features[None], words[None],
                                        every(2)))[0].tolist()  # fmt: skip
    picked: list[int] = []
    for step in range(3):
        gains = {j: coverage_by_hand(tokens, features, words, [*picked, j])
                 for j in range(6) if j not in picked}  # fmt: skip
        assert order[step] == max(gains, key=lambda j: (gains[j], -j))
        picked.append(order[step])
    # k = 1: greedy is the optimum over every single token
    assert coverage_by_hand(tokens, features, words, []) == 0.0
    best = max(itertools.combinations(range(6), 1),
               key=lambda s: coverage_by_hand(tokens, features, words, list(s)))  # fmt: skip
    assert order[0] == best[0]


def test_hand_checkable_example():
    # one word aligned with token 1: token 1 covers most; then 0 and 2 add as much each
    # (token 2 is halfway): the tie goes to the lower index
    tokens = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [0.7, 0.7]]])
    ctx = context(tokens, tokens, torch.tensor([[[0.0, 1.0]]]), torch.tensor([[True]]))
    assert MMTokScorer().order(ctx).tolist() == [[1, 0, 2]]
    assert isinstance(get_scorer("mmtok")(), MMTokScorer)


def test_ties_go_to_the_lower_index():
    tokens, features, words = draw(8, 6, 1, seed=3)
    tokens[2] = tokens[5] = words[0]  # 2 and 5 are the same token, the word's match
    features[5] = features[2]
    order = MMTokScorer().order(context(tokens[None], features[None], words[None],
                                        every(1)))[0].tolist()  # fmt: skip
    assert order[0] == 2 and order[-1] == 5  # 5 adds nothing once 2 is kept
    same = torch.ones(1, 5, 3)  # all tokens alike: every gain ties at every step
    ctx = context(same, same, torch.ones(1, 2, 3), every(2))
    assert MMTokScorer().order(ctx).tolist() == [[0, 1, 2, 3, 4]]


def test_padding_is_never_kept_and_changes_nothing():
    tokens, features, words = draw(40, 8, 4, seed=7)
    mask = every(4)
    alone = MMTokScorer().order(context(tokens[None], features[None], words[None], mask))[0]
    # padded: 10 extra tokens that would win (they match the words and each other), and
    # 3 padded word slots holding junk, all marked invalid / unused
    junk = words.sum(0).expand(10, 8)
    padded_tokens = torch.cat([tokens, junk])[None]
    padded_features = torch.cat([features, features[:1].expand(10, -1) * 5])[None]
    padded_words = torch.cat([words, torch.randn(3, 8)])[None]
    word_mask = torch.tensor([[True] * 4 + [False] * 3])
    valid = torch.tensor([[True] * 40 + [False] * 10])
    ctx = context(padded_tokens, padded_features, padded_words, word_mask, valid)
    order = MMTokScorer().order(ctx)[0]
    assert order[:40].tolist() == alone.tolist()
    assert order[40:].tolist() == list(range(40, 50))  # after every valid one
    for ratio in (0.05, 0.25, 1.0):
        keep = MMTokScorer().plan(ctx, ratio, TopKStrategy()).keep[0]
        assert not keep[40:].any() and int(keep.sum()) == kept_count(ratio, 40)


def test_interior_invalid_tokens_are_out_of_every_softmax():
    # newline-like tokens inside the row: as if they were not there
    tokens, features, words = draw(30, 8, 3, seed=11)
    valid = torch.ones(1, 30, dtype=torch.bool)
    valid[0, [4, 17, 29]] = False
    idx = valid[0].nonzero().flatten()
    mask = every(3)
    cover = coverage_matrix(tokens[None], features[None], words[None], mask, valid)
    compact = coverage_matrix(tokens[None, idx], features[None, idx], words[None], mask)
    rows = torch.cat([torch.arange(3), 3 + idx])
    torch.testing.assert_close(cover[0][rows][:, idx], compact[0], rtol=1e-6, atol=1e-9)
    assert cover[0][:, ~valid[0]].abs().sum() == 0 and cover[0][3 + 4].abs().sum() == 0
    order = MMTokScorer().order(context(tokens[None], features[None], words[None], mask, valid))
    alone = mmtok_order(compact)[0]
    assert order[0, :27].tolist() == idx[alone].tolist()


def test_each_row_divides_by_its_own_counts():
    tokens, features, words = draw(12, 6, 4, seed=2)
    valid = torch.tensor([[True] * 12, [True] * 9 + [False] * 3])
    mask = torch.tensor([[True] * 4, [True, False, True, False]])
    cover = coverage_matrix(tokens.expand(2, -1, -1), features.expand(2, -1, -1),
                            words.expand(2, -1, -1), mask, valid)  # fmt: skip
    # each word row of P sums to 1 / m, each image row of Q to alpha / n
    torch.testing.assert_close(cover[0, :4].sum(-1), torch.full((4,), 1 / 4))
    torch.testing.assert_close(cover[1, [0, 2]].sum(-1), torch.full((2,), 1 / 2))
    torch.testing.assert_close(cover[1, 4:13].sum(-1), torch.full((9,), 0.5 / 9))
    assert cover[1, [1, 3]].abs().sum() == 0 and cover[1, 13:].abs().sum() == 0


def test_rows_are_independent_of_their_batch_mates():
    rows = [draw(n, 8, m, seed) for n, m, seed in ((20, 3, 0), (33, 5, 1), (27, 2, 2))]
    width, slots = 33, 5
    tokens = torch.zeros(3, width, 8)
    features = torch.zeros(3, width, 16)
    words = torch.zeros(3, slots, 8)
    valid = torch.zeros(3, width, dtype=torch.bool)
    mask = torch.zeros(3, slots, dtype=torch.bool)
    for i, (t, f, w) in enumerate(rows):
        tokens[i, : len(t)], features[i, : len(f)], words[i, : len(w)] = t, f, w
        valid[i, : len(t)], mask[i, : len(w)] = True, True
    batch = MMTokScorer().order(context(tokens, features, words, mask, valid))
    for i, (t, f, w) in enumerate(rows):
        alone = MMTokScorer().order(context(t[None], f[None], w[None],
                                            every(len(w))))  # fmt: skip
        assert batch[i, : len(t)].tolist() == alone[0].tolist()
        # the same row, same padded width, other batch mates: bit for bit
        mates = MMTokScorer().order(context(tokens[[i, (i + 1) % 3]], features[[i, (i + 1) % 3]],
                                            words[[i, (i + 1) % 3]], mask[[i, (i + 1) % 3]],
                                            valid[[i, (i + 1) % 3]]))  # fmt: skip
        assert torch.equal(mates[0], batch[i])


def test_content_mask_chooses_the_words_and_prompt_mask_is_the_fallback():
    tokens, features, words = draw(24, 8, 4, seed=4)
    everything = every(4)
    content = torch.tensor([[False, True, False, True]])
    with_content = MMTokScorer().order(
        context(tokens[None], features[None], words[None], everything, content_mask=content)
    )
    only = MMTokScorer().order(context(tokens[None], features[None], words[None], content))
    fallback = MMTokScorer().order(context(tokens[None], features[None], words[None], everything))
    assert torch.equal(with_content, only)
    assert not torch.equal(with_content, fallback)  # the words matter


@settings(max_examples=40, deadline=None)
@given(token_batches(max_b=3, max_n=24, max_d=8, dtypes=(torch.float32,)), keep_ratios)
def test_exact_budget_invalid_never_kept_and_stopping_at_k_changes_nothing(batch, ratio):
    tokens, query, valid = batch
    words = torch.stack([query, query.flip(-1), tokens[:, 0]], dim=1)
    word_mask = torch.tensor([[True, True, False]]).expand(tokens.shape[0], -1)
    ctx = context(tokens.round(), tokens.flip(-1), words, word_mask, valid)  # ties too
    fast = MMTokScorer().plan(ctx, ratio, TopKStrategy()).keep
    whole = TokenScorer.plan(MMTokScorer(), ctx, ratio, TopKStrategy()).keep
    assert torch.equal(fast, whole)
    budget = ctx.budget_mask()
    assert not (fast & ~budget).any()
    for row in range(tokens.shape[0]):
        assert int(fast[row].sum()) == kept_count(ratio, int(budget[row].sum()))


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match="`tau_tv`"):
        MMTokScorer(tau_tv=0)
    with pytest.raises(ValueError, match="`alpha`"):
        MMTokScorer(alpha=-1)
    tokens = torch.randn(1, 4, 2)
    with pytest.raises(ValueError, match="vision_features"):
        no_features = PruningContext(tokens, torch.zeros(1, 2), prompt_embeddings=tokens,
                                     prompt_mask=every(4))  # fmt: skip
        MMTokScorer().score_context(no_features)
    with pytest.raises(ValueError, match="`vision_features`"):
        MMTokScorer().order(context(tokens, torch.randn(1, 3, 2), tokens,
                                    every(4)))  # fmt: skip
    with pytest.raises(ValueError, match="score_context"):
        MMTokScorer().score(tokens, torch.zeros(1, 2))
