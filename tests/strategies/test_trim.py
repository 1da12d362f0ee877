"""TRIM against a literal statement of its released ``token_reduction`` (TextSim)."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.strategies.strategies_hyp import keep_ratios
from vissparse.strategies import (
    PruningContext,
    TopKStrategy,
    TrimScorer,
    get_scorer,
    kept_count,
    select_tokens,
)
from vissparse.strategies.trim import trim_scores


class FixedSpace(torch.nn.Module):
    """A CLIP-like space: LayerNorm + projection for patches, a fixed embedding per text."""

    def __init__(self, width: int, dim: int, seed: int) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.post_layernorm = torch.nn.LayerNorm(width)
        with torch.no_grad():
            self.post_layernorm.weight.copy_(1 + 0.1 * torch.randn(width, generator=gen))
            self.post_layernorm.bias.copy_(0.1 * torch.randn(width, generator=gen))
        self.visual_projection = torch.nn.Linear(width, dim, bias=False)
        with torch.no_grad():
            self.visual_projection.weight.copy_(torch.randn(dim, width, generator=gen))
        self.texts = {}
        self.gen = gen
        self.dim = dim

    def embed_text(self, texts, device=None):
        for t in texts:
            if t not in self.texts:
                self.texts[t] = torch.randn(self.dim, generator=self.gen)
        return torch.stack([self.texts[t] for t in texts])

    @torch.no_grad()
    def embed_patches(self, features):
        return self.visual_projection(self.post_layernorm(features))


def released_textsim(features, space, text, k):
    """The released ``token_reduction`` for ``TextSim:k`` on ``[B, N, D]`` features.

    Project with ``post_layernorm`` and ``visual_projection``, dot with the prompt's
    ``text_embeds``, negate, softmax over the patches, keep the top ``int(N * k)``.
    """
    with torch.no_grad():
        proj = space.visual_projection(space.post_layernorm(features))
    similarities = torch.matmul(proj, text.unsqueeze(2)).squeeze(2)
    similarities = -similarities
    similarities = torch.softmax(similarities, dim=-1)
    keep = int(features.shape[1] * k)
    idx = torch.topk(similarities, keep, dim=1, largest=True, sorted=False).indices
    mask = torch.zeros(features.shape[:2], dtype=torch.bool)
    mask[torch.arange(features.shape[0]).unsqueeze(1), idx] = True
    return mask


def trim_keep(space, features, texts, ratio, largest=False, valid=None):
    b, n, _ = features.shape
    ctx = PruningContext(torch.zeros(b, n, 4), torch.zeros(b, 4), valid,
                         vision_features=features, prompt_texts=texts)  # fmt: skip
    return select_tokens(TrimScorer(clip=space, largest=largest), TopKStrategy(), ctx, ratio).keep


@pytest.mark.parametrize(("n", "d"), [(576, 64), (256, 32)])
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("k", [0.125, 0.25, 0.1])
def test_kept_set_equals_the_released_code(n, d, seed, k):
    space = FixedSpace(d, 16, seed)
    features = torch.randn(2, n, d, generator=torch.Generator().manual_seed(seed + 10))
    texts = ["What color is the car?", "How many dogs are there?"]
    ours = trim_keep(space, features, texts, k)
    released = released_textsim(features, space, space.embed_text(texts), k)
    if n * k == int(n * k):  # the same count: the same set
        assert torch.equal(ours, released)
    else:  # VisSparse keeps ceil(n * k), the released code int(n * k): a superset
        assert bool((released <= ours).all())
        assert ours.sum(dim=1).tolist() == [kept_count(k, n)] * 2


def test_largest_keeps_the_most_aligned_patches():
    space = FixedSpace(8, 4, 0)
    features = torch.randn(1, 20, 8, generator=torch.Generator().manual_seed(1))
    text = space.embed_text(["q"])
    dots = (space.embed_patches(features) @ text[0])[0]
    top = set(torch.topk(dots, 5).indices.tolist())
    bottom = set(torch.topk(-dots, 5).indices.tolist())
    assert (
        set(trim_keep(space, features, ["q"], 0.25, largest=True)[0].nonzero()[:, 0].tolist())
        == top
    )
    assert set(trim_keep(space, features, ["q"], 0.25)[0].nonzero()[:, 0].tolist()) == bottom


def test_hand_computed_scores():
    patches = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [2.0, 0.0]]])
    text = torch.tensor([[1.0, 0.5]])
    assert trim_scores(patches, text).tolist() == [[-1.0, -0.5, -2.0]]
    assert trim_scores(patches, text, largest=True).tolist() == [[1.0, 0.5, 2.0]]


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 3), st.integers(2, 40), keep_ratios, st.integers(0, 2**16), st.data())
def test_exact_count_no_padding_and_batch_independence(b, n, ratio, seed, data):
    space = FixedSpace(6, 3, 0)
    gen = torch.Generator().manual_seed(seed)
    features = torch.randn(b, n, 6, generator=gen)
    valid = torch.rand(b, n, generator=gen) > 0.3
    valid[:, 0] = True
    texts = [data.draw(st.sampled_from(["a?", "what is it?", "red car"])) for _ in range(b)]
    keep = trim_keep(space, features, texts, ratio, valid=valid)
    for row in range(b):
        assert int(keep[row].sum()) == kept_count(ratio, int(valid[row].sum()))
        assert not bool((keep[row] & ~valid[row]).any())  # padding is never kept
        alone = trim_keep(space, features[row : row + 1], texts[row : row + 1], ratio,
                          valid=valid[row : row + 1])  # fmt: skip
        assert torch.equal(alone[0], keep[row])


def test_contract_errors_and_registry():
    scorer = get_scorer("trim")()  # by name: nothing is loaded until the first call
    assert isinstance(scorer, TrimScorer) and scorer._space is None
    assert scorer.requires == {"vision_features", "prompt_texts"}
    with pytest.raises(ValueError, match="reads the vision features and the prompt's text"):
        scorer.score(torch.zeros(1, 3, 2), torch.zeros(1, 2))
    with pytest.raises(ValueError, match="`clip` must be a CLIP checkpoint"):
        TrimScorer(clip=3)
    with pytest.raises(ValueError, match="`largest` must be a bool"):
        TrimScorer(largest="yes")
    with pytest.raises(ValueError, match="`load_options` takes local_files_only, cache_dir"):
        TrimScorer(load_options={"local_file_only": True})
    with pytest.raises(ValueError, match="with a loaded space"):
        TrimScorer(clip=FixedSpace(6, 3, 0), load_options={"revision": "main"})
    assert TrimScorer(load_options={"revision": "v1"}).load_options == {"revision": "v1"}
    ctx = PruningContext(torch.zeros(1, 3, 2), torch.zeros(1, 2),
                         vision_features=torch.zeros(1, 3, 6))  # fmt: skip
    with pytest.raises(ValueError, match="'prompt_texts' signal"):
        TrimScorer(clip=FixedSpace(6, 3, 0)).score_context(ctx)
    ctx.prompt_texts = ["a", "b"]
    with pytest.raises(ValueError, match="one text per image"):
        TrimScorer(clip=FixedSpace(6, 3, 0)).score_context(ctx)
