import pytest
import torch

from vissparse.strategies import CosineScorer, LeastCosineScorer, TopKStrategy


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_scores_are_float32_whatever_the_input(dtype):
    scores = CosineScorer().score(torch.randn(2, 5, 8).to(dtype), torch.randn(2, 8).to(dtype))
    assert scores.dtype == torch.float32


def test_matches_torch_cosine_similarity():
    tokens, query = torch.randn(3, 7, 16), torch.randn(3, 16)
    expected = torch.nn.functional.cosine_similarity(tokens, query[:, None], dim=-1)
    torch.testing.assert_close(CosineScorer().score(tokens, query), expected)


def test_least_direction_keeps_the_least_similar():
    tokens = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [0.7, 0.7]]])
    query = torch.tensor([[1.0, 0.0]])
    most = TopKStrategy().select(CosineScorer().score(tokens, query), 0.3)
    least = TopKStrategy().select(CosineScorer(largest=False).score(tokens, query), 0.3)
    assert most.tolist() == [[True, False, False]]
    assert least.tolist() == [[False, True, False]]
    torch.testing.assert_close(
        LeastCosineScorer().score(tokens, query), CosineScorer(largest=False).score(tokens, query)
    )


def test_shape_errors_name_the_argument():
    with pytest.raises(ValueError, match="`query`"):
        CosineScorer().score(torch.zeros(2, 5, 8), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="`image_tokens`"):
        CosineScorer().score(torch.zeros(5, 8), torch.zeros(1, 8))
    with pytest.raises(TypeError, match="`largest`"):
        CosineScorer(largest="yes")
