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
    # k = 2: token 1 dominant; of 0 2 3 4 the target is 0 (step 4); 2 3 4 join it
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
    into, weight = visionzip_row(attention, keys, k, fraction)
    sel = Selection((into == torch.arange(n))[None], into[None], weight[None], merge_sum=True)
    ours = merge_tokens(hidden[None], sel)[0][sel.keep[0]]
    d = min(k, max(1, round(k * fraction)))
    expected = paper(hidden, attention, keys, d, min(k - d, n - d))
    # the paper lists dominant then contextual tokens; ours keep the original order
    theirs = torch.stack(expected)
    assert ours.shape == theirs.shape == (k if k <= n else n, 3)
    by_first = lambda t: t[t[:, 0].argsort()]  # noqa: E731
    torch.testing.assert_close(by_first(ours), by_first(theirs), atol=1e-5, rtol=1e-5)


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
