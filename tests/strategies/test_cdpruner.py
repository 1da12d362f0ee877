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


def official_encode_images(image_features, image_embeds, text_embeds, visual_token_num):
    """``CDPruner.encode_images`` of Theia-4869/CDPruner (``llava/model/llava_arch.py``,
    HEAD 9541616, l.141-187), transcribed literally less the towers and the projector:
    ``image_features`` is the projector's output, ``image_embeds`` the CLIP image
    embeddings, ``text_embeds`` the CLIP text embeddings. Returns the pick order and the
    index mask."""
    B, N, _C = image_features.shape
    device = image_features.device
    image_normalized = image_features / image_features.norm(dim=-1, keepdim=True)
    image_normalized = image_normalized.float()
    similarity = torch.matmul(image_normalized, image_normalized.transpose(1, 2))
    image_embeds = image_embeds / image_embeds.norm(dim=-1, keepdim=True)
    text_embeds = text_embeds / text_embeds.norm(dim=-1, keepdim=True)
    relevance = torch.matmul(image_embeds, text_embeds.t())
    relevance = (-relevance).mean(dim=-1)
    relevance = (relevance - relevance.min() + 1e-6) / (relevance.max() - relevance.min())
    # theta = 0.5
    # alpha = theta / (2 * (1 - theta))
    # relevance = torch.exp(alpha * relevance) # (B, N)     <- commented out upstream
    kernel = relevance.unsqueeze(2) * similarity * relevance.unsqueeze(1)
    cis = torch.zeros((visual_token_num, B, N), device=device)
    di2s = torch.diagonal(kernel, dim1=1, dim2=2).clone()
    select_idx = torch.empty((visual_token_num, B), dtype=torch.long, device=device)
    for i in range(visual_token_num):
        j = torch.argmax(di2s, dim=-1)
        select_idx[i] = j
        eis = (kernel[torch.arange(B), j]
               - torch.einsum("tb,tbn->bn", cis[:i, torch.arange(B), j], cis[:i])) \
            / torch.sqrt(di2s[torch.arange(B), j]).unsqueeze(-1)  # fmt: skip
        cis[i, :, :] = eis
        di2s -= torch.square(eis)
        di2s[torch.arange(B), j] = -float("inf")
    order = select_idx.t().clone()
    select_idx = torch.sort(select_idx.t()).values
    index_masks = torch.zeros(B, N, dtype=torch.bool, device=device)
    index_masks.scatter_(1, select_idx, True)
    return order, index_masks


@pytest.mark.parametrize("n, d", [(576, 64), (256, 32)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_default_matches_the_released_code(n, d, seed):
    # VisSparse has no CLIP text tower: the image tokens and the prompt's embeddings
    # share one space, so the released function gets them as both its feature inputs
    gen = torch.Generator().manual_seed(seed)
    tokens = torch.randn(1, n, d, generator=gen)
    words = torch.randn(1, 7, d, generator=gen)
    ratio = 0.1
    k = kept_count(ratio, n)
    order, official = official_encode_images(tokens, tokens, words[0], k)
    ctx = PruningContext(tokens, words.mean(1), prompt_embeddings=words,
                         prompt_mask=torch.ones(1, 7, dtype=torch.bool))  # fmt: skip
    ours = select_tokens(CDPrunerScorer(), TopKStrategy(), ctx, ratio).keep
    assert torch.equal(ours, official)  # agreement 1.0 on the kept set
    rel = conditional_relevance(tokens[0], words[0])
    unit = torch.nn.functional.normalize(tokens[0], dim=-1)
    picks = dpp_greedy(rel[:, None] * (unit @ unit.T) * rel[None, :], k, rel)
    assert picks == order[0].tolist()  # and in pick order


def test_paper_relevance_step_is_an_option_and_changes_the_selection():
    gen = torch.Generator().manual_seed(0)
    tokens = torch.randn(1, 256, 32, generator=gen)
    words = torch.randn(1, 7, 32, generator=gen)
    _, official = official_encode_images(tokens, tokens, words[0], kept_count(0.1, 256))
    ctx = PruningContext(tokens, words.mean(1), prompt_embeddings=words,
                         prompt_mask=torch.ones(1, 7, dtype=torch.bool))  # fmt: skip
    paper = select_tokens(CDPrunerScorer(theta=0.5), TopKStrategy(), ctx, 0.1).keep
    assert paper.sum() == official.sum() and not torch.equal(paper, official)


def test_relevance_negates_and_normalises_like_the_official_code():
    x = torch.tensor([[2.0, 0.0], [0.0, 3.0], [-1.0, 0.0], [1.0, 1.0]])
    words = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    raw = -(
        torch.nn.functional.normalize(x, dim=-1) @ torch.nn.functional.normalize(words, dim=-1).T
    ).mean(-1)
    norm = (raw - raw.min() + 1e-6) / (raw.max() - raw.min())
    torch.testing.assert_close(conditional_relevance(x, words), norm)
    torch.testing.assert_close(conditional_relevance(x, words, 1.0), norm)
    torch.testing.assert_close(conditional_relevance(x, words, 0.5), torch.exp(0.5 * norm))
    # the token least like the text is the most relevant, as in the official code
    assert int(conditional_relevance(x, words).argmax()) == 2
    # every token equally relevant: the official code divides by zero, ours stays finite
    assert torch.isfinite(conditional_relevance(x, torch.zeros(1, 2))).all()


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
