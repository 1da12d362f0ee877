"""PruMerge+: IQR outliers, the uniform fill, attention-weighted merging, exact budgets."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given

from tests.strategies.strategies_hyp import keep_ratios, token_batches
from vissparse.strategies import (
    ImageLayout,
    PruMergePlusScorer,
    PruningContext,
    TopKStrategy,
    kept_count,
    merge_tokens,
    select_tokens,
)
from vissparse.strategies.prumerge import iqr_outliers, released_merge


@given(token_batches(max_b=1, max_n=40, padding=False, dtypes=(torch.float32,)))
def test_outliers_follow_the_interquartile_rule(batch):
    values = batch[0][0, :, 0].abs()
    q1, q3 = np.percentile(values.numpy(), [25, 75])
    expected = values.numpy() > q3 + 1.5 * (q3 - q1)
    assert iqr_outliers(values).tolist() == expected.tolist()


def test_hand_example_outlier_uniform_fill_and_weighted_merge():
    x = torch.tensor([[[1.0], [2.0], [3.0], [4.0], [5.0], [6.0], [7.0], [8.0], [9.0]]])
    att = torch.tensor([[0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 5.0]])
    keys = torch.eye(2)[[0, 0, 0, 1, 1, 1, 1, 1, 1]][None]
    ctx = PruningContext(x, torch.ones(1, 1), vision_attention=att, vision_keys=keys,
                         layouts=[ImageLayout.grid(3, 3)])  # fmt: skip
    sel = select_tokens(PruMergePlusScorer(merge="partition"), TopKStrategy(), ctx, 2 / 9)
    # 8 is the only outlier; the uniform fill takes the grid's first token, 0; tokens 1 2
    # share 0's key, tokens 3 to 7 share 8's
    assert sel.merge_into[0].tolist() == [0, 0, 0, 8, 8, 8, 8, 8, 8]
    merged = merge_tokens(x, sel)[0, [0, 8], 0]
    expected_8 = (0.1 * (4 + 5 + 6 + 7 + 8) + 5.0 * 9) / (0.5 + 5.0)
    assert merged.tolist() == pytest.approx([2.0, expected_8])


def test_hand_example_released_merge_and_appended_token():
    x = torch.tensor([[[1.0], [2.0], [3.0], [4.0], [5.0], [6.0], [7.0], [8.0], [9.0]]])
    att = torch.tensor([[0.125, 0.125, 0.125, 0.125, 0.125, 0.125, 0.125, 0.125, 4.0]])
    keys = torch.tensor([[[1.0, 0], [1, 0.1], [1, 0.2], [0.1, 1], [0.2, 1], [0.3, 1], [0.4, 1],
                          [0.5, 1], [0, 1]]])  # fmt: skip
    ctx = PruningContext(x, torch.ones(1, 1), vision_attention=att, vision_keys=keys,
                         layouts=[ImageLayout.grid(3, 3)])  # fmt: skip
    sel = select_tokens(PruMergePlusScorer(neighbours=2), TopKStrategy(), ctx, 3 / 9)
    # k = 3: the outlier 8 and the grid's first token 0, and the appended token in the
    # place of 7, the last token not kept
    assert sel.keep[0].nonzero().flatten().tolist() == [0, 7, 8]
    merged = merge_tokens(x, sel)[0, [0, 7, 8], 0]
    # 0's 2 nearest keys: 1 and 2; 8's: 3 and 4; the centre
    # at weight 1, the neighbours at their attention, not normalised
    expected = [1 + 0.125 * (2 + 3), 0.125 * (2 + 3 + 4 + 5 + 6 + 7 + 8), 9 + 0.125 * (4 + 5)]
    assert merged.tolist() == pytest.approx(expected)


def complement_idx(idx, dim):
    """``complement_idx`` of 42Shawn/LLaVA-PruMerge (``clip_encoder.py``), literally."""
    a = torch.arange(dim, device=idx.device)
    ndim = idx.ndim
    dims = idx.shape
    n_idx = dims[-1]
    dims = dims[:-1] + (-1,)  # noqa: RUF005
    for i in range(1, ndim):  # noqa: B007
        a = a.unsqueeze(0)
    a = a.expand(*dims)
    masked = torch.scatter(a, -1, idx, 0)
    compl, _ = torch.sort(masked, dim=-1, descending=False)
    compl = compl.permute(-1, *tuple(range(ndim - 1)))
    compl = compl[n_idx:].permute(*(tuple(range(1, ndim)) + (0,)))  # noqa: RUF005
    return compl


def outlier_dectection(attn):
    """``outlier_dectection`` of the same file, literally."""
    attn_np = attn.to(dtype=torch.float32).cpu().numpy().flatten()
    Q1 = np.percentile(attn_np, 25)
    Q3 = np.percentile(attn_np, 75)
    IQR = Q3 - Q1
    upper_bound = Q3 + 1.5 * IQR
    outlier_indices = np.where((attn_np > upper_bound))[0]  # noqa: UP034
    ratio = len(outlier_indices) / len(attn_np)
    return ratio


def released_prumerge_plus(image_features, desired_layer_q, desired_layer_k):
    """``CLIPVisionTower.token_prune_merge_advanced_plus`` (``if_adaptive=True``) of
    42Shawn/LLaVA-PruMerge (``llava/model/multimodal_encoder/clip_encoder.py`` at HEAD),
    transcribed literally from the attention on, the tower's hooks and forward left out.
    One change: the uniform sequence's ``arange(0, 575, ...)`` (LLaVA-1.5's 576 patches,
    hard-coded) ends at ``N - 1``. Also returns, for the test only, ``idx``."""
    B, N, C = image_features.shape
    attn = (desired_layer_q @ desired_layer_k.transpose(-2, -1)) * C**-0.5
    attn = F.softmax(attn, dim=-1)
    cls_attn = attn[:, 0, 1:]
    reduction_ratio = outlier_dectection(cls_attn)
    _, idx = torch.topk(cls_attn, int(N * reduction_ratio), dim=1, largest=True)
    step_length = int(1 / reduction_ratio)
    arithmetic_sequence = torch.arange(0, N - 1, int(step_length / 3))
    original_tensor_1d = idx.flatten()
    filtered_sequence = torch.tensor(
        [x for x in arithmetic_sequence if x not in original_tensor_1d]
    )
    concatenated_tensor = torch.cat((idx, filtered_sequence.unsqueeze(0)), dim=1)
    idx = concatenated_tensor
    index = idx.unsqueeze(-1).expand(-1, -1, C)
    Key_wo_cls = desired_layer_k[:, 1:]
    x_others = torch.gather(image_features, dim=1, index=index)
    x_others_attn = torch.gather(cls_attn, dim=1, index=idx)
    Key_others = torch.gather(Key_wo_cls, dim=1, index=index)
    compl = complement_idx(idx, N)
    non_topk = torch.gather(image_features, dim=1, index=compl.unsqueeze(-1).expand(-1, -1, C))
    non_topk_Key = torch.gather(Key_wo_cls, dim=1, index=compl.unsqueeze(-1).expand(-1, -1, C))
    non_topk_attn = torch.gather(cls_attn, dim=1, index=compl)
    Key_others_norm = F.normalize(Key_others, p=2, dim=-1)
    non_topk_Key_norm = F.normalize(non_topk_Key, p=2, dim=-1)
    B, left_tokens, C = x_others.size()
    updated_x_others = torch.zeros_like(x_others)
    for b in range(B):
        for i in range(left_tokens):
            key_others_norm = Key_others_norm[b, i, :].unsqueeze(0).unsqueeze(0)
            before_i_Key = Key_others_norm[b, :i, :].unsqueeze(0)
            after_i_Key = Key_others_norm[b, i + 1 :, :].unsqueeze(0)
            before_i_x_others = x_others[b, :i, :].unsqueeze(0)
            after_i_x_others = x_others[b, i + 1 :, :].unsqueeze(0)
            rest_x_others = torch.cat(
                [before_i_x_others, after_i_x_others, non_topk[b, :, :].unsqueeze(0)], dim=1
            )
            before_i_x_others_attn = x_others_attn[b, :i].unsqueeze(0)
            after_i_x_others_attn = x_others_attn[b, i + 1 :].unsqueeze(0)
            rest_x_others_attn = torch.cat(
                [before_i_x_others_attn, after_i_x_others_attn, non_topk_attn[b, :].unsqueeze(0)],
                dim=1,
            )
            rest_Keys = torch.cat(
                [before_i_Key, after_i_Key, non_topk_Key_norm[b, :, :].unsqueeze(0)], dim=1
            )
            cos_sim_matrix = torch.bmm(key_others_norm, rest_Keys.transpose(1, 2))
            _, cluster_indices = torch.topk(cos_sim_matrix, k=int(32), dim=2, largest=True)  # noqa: UP018, RUF046
            cluster_tokens = rest_x_others[:, cluster_indices.squeeze(), :]
            weights = rest_x_others_attn[:, cluster_indices.squeeze()].unsqueeze(-1)
            weighted_avg = torch.sum(cluster_tokens * weights, dim=1)  # / torch.sum(weights)
            updated_center = x_others[b, i, :] + weighted_avg
            updated_x_others[b, i, :] = updated_center
    extra_one_token = torch.sum(non_topk * non_topk_attn.unsqueeze(-1), dim=1, keepdim=True)
    updated_x_others = torch.cat([updated_x_others, extra_one_token], dim=1)
    image_features = updated_x_others
    return image_features, idx, cls_attn


def released_inputs(n, d, seed):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(1, n, d, generator=gen)
    q = torch.randn(1, n + 1, d, generator=gen)
    k = torch.randn(1, n + 1, d, generator=gen)
    return x, q, k


@pytest.mark.parametrize("n, d", [(576, 64), (256, 32)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_released_merge_matches_the_released_code(n, d, seed):
    x, q, k = released_inputs(n, d, seed)
    out, idx, cls_attn = released_prumerge_plus(x, q, k)
    att = cls_attn[0]
    # the outliers are the released ones (its first int(N * ratio) picks)
    n_out = int(iqr_outliers(att).sum())
    assert set(iqr_outliers(att).nonzero().flatten().tolist()) == set(idx[0, :n_out].tolist())
    # on the released kept set, the merge gives the released values, row for row
    chosen = torch.zeros(n, dtype=torch.bool)
    chosen[idx[0]] = True
    ours = released_merge(att, k[0, 1:], chosen, neighbours=32) @ x[0]
    rank = torch.cumsum(chosen.long(), 0) - 1  # a chosen token's row in ours
    torch.testing.assert_close(ours[rank[idx[0]]], out[0, :-1])
    torch.testing.assert_close(ours[-1], out[0, -1])


@pytest.mark.parametrize("n, d", [(576, 64), (256, 32)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_default_scorer_merges_as_released_at_a_fixed_budget(n, d, seed):
    x, q, k = released_inputs(n, d, seed)
    out, idx, cls_attn = released_prumerge_plus(x, q, k)
    budget = idx.shape[1] + 1  # the released count, its appended token included
    ctx = PruningContext(x, torch.ones(1, d), vision_attention=cls_attn, vision_keys=k[:, 1:],
                         layouts=[ImageLayout.sequence(n)])  # fmt: skip
    sel = select_tokens(PruMergePlusScorer(), TopKStrategy(), ctx, (budget - 0.5) / n)
    keep = sel.keep[0]
    assert int(keep.sum()) == budget  # exact: the appended token counts
    outliers = iqr_outliers(cls_attn[0])
    assert not (outliers & ~keep).any()  # every released outlier is kept
    merged = merge_tokens(x, sel)[0]
    # a token both keep has the released value (its neighbours are all other tokens);
    # the uniform fill differs (a fixed budget in grid order, see the module docstring)
    both = [(row, int(t)) for row, t in enumerate(idx[0]) if keep[t]]
    assert len(both) >= int(outliers.sum())
    rows, tokens = zip(*both, strict=True)
    torch.testing.assert_close(merged[list(tokens)], out[0, list(rows)])
    # the appended token sits at the last token not kept by the method, and sums the rest
    slot = int(keep.nonzero().flatten()[~outliers[keep]].max())
    chosen = keep.clone()
    chosen[slot] = False
    rest = ~chosen
    expected = (cls_attn[0, rest, None] * x[0, rest]).sum(0)
    torch.testing.assert_close(merged[slot], expected)


@given(token_batches(max_b=3, max_n=25, dtypes=(torch.float32,)), keep_ratios)
def test_exact_count_padding_and_batch_independence(batch, ratio):
    tokens, query, valid = batch
    b, n = tokens.shape[:2]
    gen = torch.Generator().manual_seed(1)
    att = torch.rand(b, n, generator=gen) ** 4
    keys = torch.randn(b, n, 3, generator=gen)
    layouts = [ImageLayout.sequence(n)] * b
    ctx = PruningContext(tokens, query, valid, vision_attention=att, vision_keys=keys,
                         layouts=layouts)  # fmt: skip
    sel = select_tokens(PruMergePlusScorer(), TopKStrategy(), ctx, ratio)
    n_valid = valid.sum(1) if valid is not None else torch.full((b,), n)
    assert sel.keep.sum(1).tolist() == [kept_count(ratio, int(v)) for v in n_valid]
    if valid is not None:
        assert not (sel.keep & ~valid).any() and bool((sel.merge_into[~valid] == -1).all())
    last = PruningContext(tokens[-1:], query[-1:], None if valid is None else valid[-1:],
                          vision_attention=att[-1:], vision_keys=keys[-1:],
                          layouts=layouts[-1:])  # fmt: skip
    alone = select_tokens(PruMergePlusScorer(), TopKStrategy(), last, ratio)
    assert torch.equal(alone.merge_into[0], sel.merge_into[-1])


def test_bad_options():
    with pytest.raises(ValueError, match="`merge`"):
        PruMergePlusScorer(merge="mean")
    with pytest.raises(ValueError, match="`neighbours`"):
        PruMergePlusScorer(neighbours=0)
