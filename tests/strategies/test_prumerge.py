"""PruMerge+: IQR outliers, the uniform fill, attention-weighted merging, exact budgets."""

import numpy as np
import pytest
import torch
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
from vissparse.strategies.prumerge import iqr_outliers


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
    sel = select_tokens(PruMergePlusScorer(), TopKStrategy(), ctx, 2 / 9)
    # 8 is the only outlier; the uniform fill takes the grid's first token, 0; tokens 1 2
    # share 0's key, tokens 3 to 7 share 8's
    assert sel.merge_into[0].tolist() == [0, 0, 0, 8, 8, 8, 8, 8, 8]
    merged = merge_tokens(x, sel)[0, [0, 8], 0]
    expected_8 = (0.1 * (4 + 5 + 6 + 7 + 8) + 5.0 * 9) / (0.5 + 5.0)
    assert merged.tolist() == pytest.approx([2.0, expected_8])


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
