"""VisionZip: dominant and contextual tokens against a literal statement of the paper."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from tests.strategies.strategies_hyp import keep_ratios, token_batches
from vissparse.strategies import (
    PruningContext,
    Selection,
    TopKStrategy,
    VisionZipScorer,
    kept_count,
    merge_tokens,
    select_tokens,
)
from vissparse.strategies.visionzip import visionzip_row


def paper(hidden, attention, keys, dominant, contextual):
    """The paper's code path for one image (no CLS), as a list of output tokens."""
    top = sorted(range(len(attention)), key=lambda i: (-float(attention[i]), i))[:dominant]
    mask = torch.ones(len(attention), dtype=torch.bool)
    mask[top] = False
    out = [hidden[i] for i in sorted(top)]
    rest_h, rest_k = hidden[mask], torch.nn.functional.normalize(keys[mask].float(), dim=-1)
    if contextual == 0:
        return out
    step = max(1, rest_k.shape[0] // contextual)
    target = torch.arange(0, rest_k.shape[0], step)[:contextual]
    merge = ~torch.isin(torch.arange(rest_k.shape[0]), target)
    sim = rest_k[merge] @ rest_k[target].T
    assign = torch.zeros(int(merge.sum()), len(target))
    assign.scatter_(1, sim.argmax(dim=1, keepdim=True), 1)
    counts = assign.sum(dim=0).clamp(min=1).unsqueeze(-1)
    aggregated = (assign.T @ rest_h[merge]) / counts
    return out + list(rest_h[target] + aggregated)


def test_hand_example_contextual_token_is_target_plus_mean():
    x = torch.tensor([[[1.0], [2.0], [4.0], [8.0], [16.0]]])
    keys = torch.tensor([[[1.0, 0], [0, 1], [1, 0], [1, 0.1], [0.1, 1]]])
    att = torch.tensor([[0.1, 0.5, 0.2, 0.1, 0.1]])
    ctx = PruningContext(x, torch.ones(1, 1), vision_attention=att, vision_keys=keys)
    sel = select_tokens(VisionZipScorer(dominant_fraction=0.5), TopKStrategy(), ctx, 0.4)
    # k = 2, d = 1: the dominant token is the [CLS] slot, so no dominant patch; of 0..4
    # the target is 0 (step 5); token 1, the best-attended non-target, fills the slot;
    # 2 3 4 join 0
    assert sel.keep[0].tolist() == [True, True, False, False, False]
    merged = merge_tokens(x, sel)[0, :2, 0].tolist()
    assert merged == pytest.approx([1.0 + (4 + 8 + 16) / 3, 2.0])


@given(st.integers(1, 30), st.integers(0, 10**6), st.data())
def test_matches_the_paper_on_random_inputs(n, seed, data):
    gen = torch.Generator().manual_seed(seed)
    hidden = torch.randn(n, 3, generator=gen)
    attention = torch.rand(n, generator=gen)
    keys = torch.randn(n, 4, generator=gen)
    k = data.draw(st.integers(1, n))
    fraction = data.draw(st.sampled_from([54 / 64, 0.5, 0.25]))
    into, weight = visionzip_row(attention, keys, k, fraction, count_cls=False)
    sel = Selection((into == torch.arange(n))[None], into[None], weight[None], merge_sum=True)
    ours = merge_tokens(hidden[None], sel)[0][sel.keep[0]]
    d = min(k, max(1, round(k * fraction)))
    expected = paper(hidden, attention, keys, d, min(k - d, n - d))
    # the paper lists dominant then contextual tokens; ours keep the original order
    theirs = torch.stack(expected)
    assert ours.shape == theirs.shape == (k if k <= n else n, 3)
    by_first = lambda t: t[t[:, 0].argsort()]  # noqa: E731
    torch.testing.assert_close(by_first(ours), by_first(theirs), atol=1e-5, rtol=1e-5)


def released_visionzip(hidden_states, attn_weights, metric, dominant, contextual):
    """``CLIPVisionTower_VisionZip.forward`` of dvlab-research/VisionZip
    (``visionzip/clip_encoder.py`` at HEAD, the batched branch), transcribed literally,
    with ``visionzip(model, dominant, contextual)``'s ``dominant_num = dominant - 1``.
    ``hidden_states``, ``attn_weights`` and ``metric`` (keys) are layer -2's, [CLS]
    first. Also returns, for the test only, the contextual targets' token indices."""
    dominant_num = dominant - 1
    contextual_num = contextual
    cls_idx = 0
    cls_attention = attn_weights[:, :, cls_idx, cls_idx + 1 :]
    cls_attention_sum = cls_attention.sum(dim=1)
    topk_indices = cls_attention_sum.topk(dominant_num, dim=1).indices + 1
    all_indices = torch.cat(
        [
            torch.zeros(
                (hidden_states.shape[0], 1), dtype=topk_indices.dtype, device=topk_indices.device
            ),
            topk_indices,
        ],
        dim=1,
    )
    mask = torch.ones_like(hidden_states[:, :, 0], dtype=torch.bool, device=metric.device).scatter_(
        1, all_indices, False
    )
    dominant_tokens = hidden_states.masked_select(~mask.unsqueeze(-1)).view(
        hidden_states.shape[0], dominant_num + 1, hidden_states.shape[2]
    )
    metric_filtered = metric[mask].view(
        hidden_states.shape[0], hidden_states.shape[1] - (dominant_num + 1), metric.shape[2]
    )
    hidden_states_filtered = hidden_states.masked_select(mask.unsqueeze(-1)).view(
        hidden_states.shape[0], hidden_states.shape[1] - (dominant_num + 1), hidden_states.shape[2]
    )
    metric_normalized = metric_filtered / metric_filtered.norm(dim=-1, keepdim=True)
    step = max(1, metric_normalized.shape[1] // contextual_num)
    target_indices = torch.arange(
        0, metric_normalized.shape[1], step, device=metric_normalized.device
    )[:contextual_num]
    target_tokens = metric_normalized[:, target_indices, :]
    tokens_to_merge = metric_normalized[
        :,
        ~torch.isin(
            torch.arange(metric_normalized.shape[1], device=metric_normalized.device),
            target_indices,
        ),
        :,
    ]
    similarity = torch.bmm(tokens_to_merge, target_tokens.transpose(1, 2))
    assign_one_hot = torch.zeros(
        tokens_to_merge.shape[0],
        tokens_to_merge.shape[1],
        contextual_num,
        dtype=hidden_states_filtered.dtype,
        device=metric_normalized.device,
    )
    assign_one_hot.scatter_(2, similarity.argmax(dim=2).unsqueeze(-1), 1)
    counts = assign_one_hot.sum(dim=1).clamp(min=1).unsqueeze(-1)
    hidden_to_merge = hidden_states_filtered[
        :,
        ~torch.isin(
            torch.arange(hidden_states_filtered.shape[1], device=hidden_states_filtered.device),
            target_indices,
        ),
        :,
    ]
    aggregated_hidden = torch.bmm(assign_one_hot.transpose(1, 2), hidden_to_merge) / counts
    target_hidden = hidden_states_filtered[:, target_indices, :]
    contextual_tokens = target_hidden + aggregated_hidden
    hidden_states_save = torch.cat([dominant_tokens, contextual_tokens], dim=1)
    targets = mask[0].nonzero().flatten()[target_indices]  # for the test: token indices
    return hidden_states_save, all_indices, targets


def released_inputs(n, d, seed, heads=4):
    """Layer -2's hidden states, attention ([CLS] row) and keys for ``n`` patches + [CLS]."""
    gen = torch.Generator().manual_seed(seed)
    hidden = torch.randn(1, n + 1, d, generator=gen)
    attn = torch.zeros(1, heads, n + 1, n + 1)
    attn[:, :, 0] = torch.softmax(3 * torch.randn(1, heads, n + 1, generator=gen), dim=-1)
    metric = torch.randn(1, n + 1, d, generator=gen)
    return hidden, attn, metric


@pytest.mark.parametrize("n, d", [(576, 64), (256, 32)])
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("ratio", [0.1, 64 / 576])
def test_default_counts_cls_like_the_released_code(n, d, seed, ratio):
    hidden, attn, metric = released_inputs(n, d, seed)
    x, att, keys = hidden[:, 1:], attn[:, :, 0, 1:].mean(1), metric[:, 1:]
    ctx = PruningContext(x, torch.ones(1, d), vision_attention=att, vision_keys=keys)
    sel = select_tokens(VisionZipScorer(), TopKStrategy(), ctx, ratio)
    k = kept_count(ratio, n)
    dom = round(k * 54 / 64)
    out, all_indices, targets = released_visionzip(hidden, attn, metric, dom, k - dom)
    released = torch.zeros(n, dtype=torch.bool)
    released[all_indices[0, 1:] - 1] = True
    released[targets - 1] = True
    # the released patches are all kept (agreement 1.0); the [CLS] slot is one more
    # patch, the best-attended of the others
    kept = sel.keep[0]
    assert int(kept.sum()) == k == int(released.sum()) + 1 and not (released & ~kept).any()
    slot = int((kept & ~released).nonzero())
    assert slot == int(att[0].masked_fill(released, -1).argmax())
    merged = merge_tokens(x, sel)[0]
    # dominant patches as released (after [CLS], the first of the released output)
    torch.testing.assert_close(merged[all_indices[0, 1:].sort().values - 1], out[0, 1:dom])
    # contextual tokens as released, except the one whose group the slot token would
    # have joined: there the released mean counts it and ours leaves it out
    unit = torch.nn.functional.normalize(keys[0], dim=-1)
    joined = int((targets - 1)[(unit[targets - 1] @ unit[slot]).argmax()])
    into = sel.merge_into[0]
    for t, theirs in zip((targets - 1).tolist(), out[0, dom:], strict=True):
        if t != joined:
            torch.testing.assert_close(merged[t], theirs)
            continue
        group = ((into == t) & (torch.arange(n) != t)).nonzero().flatten()
        expected = x[0, t] + (x[0, group].sum(0) + x[0, slot]) / (group.numel() + 1)
        torch.testing.assert_close(theirs, expected)


@pytest.mark.parametrize("n, d", [(576, 64), (256, 32)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_aligned_count_matches_the_released_code(n, d, seed):
    # count_cls=False keeps d dominant patches: the released code with dominant = d + 1
    hidden, attn, metric = released_inputs(n, d, seed)
    x, att, keys = hidden[:, 1:], attn[:, :, 0, 1:].mean(1), metric[:, 1:]
    ctx = PruningContext(x, torch.ones(1, d), vision_attention=att, vision_keys=keys)
    sel = select_tokens(VisionZipScorer(count_cls=False), TopKStrategy(), ctx, 0.1)
    k = kept_count(0.1, n)
    dom = round(k * 54 / 64)
    out, all_indices, targets = released_visionzip(hidden, attn, metric, dom + 1, k - dom)
    released = torch.zeros(n, dtype=torch.bool)
    released[all_indices[0, 1:] - 1] = True
    released[targets - 1] = True
    assert torch.equal(sel.keep[0], released)
    merged = merge_tokens(x, sel)[0]
    kept_order = torch.cat([all_indices[0, 1:].sort().values - 1, targets - 1])
    torch.testing.assert_close(merged[kept_order], out[0, 1:])


@given(token_batches(max_b=3, max_n=24, dtypes=(torch.float32,)), keep_ratios)
def test_exact_count_padding_and_batch_independence(batch, ratio):
    tokens, query, valid = batch
    gen = torch.Generator().manual_seed(0)
    att = torch.rand(tokens.shape[:2], generator=gen)
    keys = torch.randn(*tokens.shape[:2], 3, generator=gen)
    ctx = PruningContext(tokens, query, valid, vision_attention=att, vision_keys=keys)
    sel = select_tokens(VisionZipScorer(), TopKStrategy(), ctx, ratio)
    n_valid = valid.sum(1) if valid is not None else torch.full((tokens.shape[0],), tokens.shape[1])
    assert sel.keep.sum(1).tolist() == [kept_count(ratio, int(v)) if v else 0 for v in n_valid]
    if valid is not None:
        assert not (sel.keep & ~valid).any() and bool((sel.merge_into[~valid] == -1).all())
    last = PruningContext(tokens[-1:], query[-1:], None if valid is None else valid[-1:],
                          vision_attention=att[-1:], vision_keys=keys[-1:])  # fmt: skip
    alone = select_tokens(VisionZipScorer(), TopKStrategy(), last, ratio)
    assert torch.equal(alone.merge_into[0], sel.merge_into[-1])
