import pytest
import torch

from vissparse.strategies import (
    CosineScorer,
    LeastCosineScorer,
    MeanCosineScorer,
    PruningContext,
    TopKStrategy,
    build_scorer,
    select_tokens,
)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_scores_are_float32_whatever_the_input(dtype):
    scores = CosineScorer().score(torch.randn(2, 5, 8).to(dtype), torch.randn(2, 8).to(dtype))
    assert scores.dtype == torch.float32


def test_matches_torch_cosine_similarity():
    tokens, query = torch.randn(3, 7, 16), torch.randn(3, 16)
    expected = torch.nn.functional.cosine_similarity(tokens, query[:, None], dim=-1)
    torch.testing.assert_close(MeanCosineScorer().score(tokens, query), expected)
    torch.testing.assert_close(build_scorer("cosine-mean").score(tokens, query), expected)


def test_least_direction_keeps_the_least_similar():
    tokens = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [0.7, 0.7]]])
    query = torch.tensor([[1.0, 0.0]])
    plain_least = CosineScorer(largest=False, aggregate="mean", centre=False)
    most = TopKStrategy().select(MeanCosineScorer().score(tokens, query), 0.3)
    least = TopKStrategy().select(plain_least.score(tokens, query), 0.3)
    assert most.tolist() == [[True, False, False]]
    assert least.tolist() == [[False, True, False]]
    torch.testing.assert_close(
        LeastCosineScorer().score(tokens, query), plain_least.score(tokens, query)
    )


def test_the_default_is_the_centred_least_similar_softmax():
    """Regression (issue 34 item 3): the default kept the background tokens.

    Image tokens share one dominant direction, which the background carries most; the
    mean prompt embedding leans on it. The seed's cosine keeps the background token, the
    default (centred, per-word softmax mass on the least similar) keeps the two objects.
    """
    tokens = torch.tensor([[[2.0, 0.0, 5.0], [0.0, 2.0, 5.0], [0.0, 0.0, 6.0]]])
    query = torch.tensor([[0.05, 0.0, 1.0]])
    words = torch.tensor([[[0.1, 0.0, 1.0], [0.0, 0.0, 1.0]]])
    ctx = PruningContext(tokens, query, prompt_embeddings=words,
                         prompt_mask=torch.ones(1, 2, dtype=torch.bool))  # fmt: skip
    default = CosineScorer()
    assert (default.largest, default.words, default.aggregate, default.centre,
            default.temperature) == (False, "all", "softmax", True, 0.02)  # fmt: skip
    assert repr(build_scorer("cosine")) == repr(default)
    assert default.requires == {"prompt_embeddings"}
    keep = select_tokens(default, TopKStrategy(), ctx, 0.6).keep
    seed = select_tokens(MeanCosineScorer(), TopKStrategy(), ctx, 0.6).keep
    assert keep.tolist() == [[True, True, False]]
    assert seed[0, 2]  # the seed's plain form keeps the background


def test_without_words_the_query_is_the_only_word():
    """``score(tokens, query)`` keeps the centred least-similar-to-the-mean set."""
    gen = torch.Generator().manual_seed(0)
    tokens, query = torch.randn(3, 40, 16, generator=gen), torch.randn(3, 16, generator=gen)
    ctx = PruningContext(tokens, query, prompt_embeddings=query[:, None],
                         prompt_mask=torch.ones(3, 1, dtype=torch.bool))  # fmt: skip
    torch.testing.assert_close(CosineScorer().score(tokens, query),
                               CosineScorer().score_context(ctx))  # fmt: skip
    mean = CosineScorer(aggregate="mean")
    for ratio in (0.1, 0.25, 0.5):
        assert torch.equal(TopKStrategy().select(CosineScorer().score(tokens, query), ratio),
                           TopKStrategy().select(mean.score(tokens, query), ratio))  # fmt: skip
    with pytest.raises(ValueError, match="word embeddings"):
        CosineScorer(words="content").score(tokens, query)


def test_shape_errors_name_the_argument():
    with pytest.raises(ValueError, match="`query`"):
        CosineScorer().score(torch.zeros(2, 5, 8), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="`image_tokens`"):
        CosineScorer().score(torch.zeros(5, 8), torch.zeros(1, 8))
    with pytest.raises(TypeError, match="`largest`"):
        CosineScorer(largest="yes")
