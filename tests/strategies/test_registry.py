import pytest
import torch

from vissparse import MaskStrategy, TokenScorer, register_scorer, register_strategy
from vissparse.strategies import (
    SCORERS,
    CosineScorer,
    TopKStrategy,
    build_scorer,
    build_strategy,
    get_scorer,
    get_strategy,
)


def test_builtin_names():
    expected = {"cosine", "cosine-least", "cosine-max", "divprune", "dart", "cdpruner", "pool",
                "visionzip", "prumerge+", "random", "uniform", "mmtok",
                "downsample", "scope", "vispruner", "cosine-mean"}  # fmt: skip
    assert expected <= set(SCORERS.names())
    assert get_scorer("cosine") is CosineScorer
    assert get_strategy("topk") is TopKStrategy


def test_decorator_registration_and_lookup():
    @register_scorer("test-norm")
    class NormScorer(TokenScorer):
        def score(self, image_tokens, query, valid=None):
            return image_tokens.float().norm(dim=-1)

    @register_strategy
    class FirstHalf(MaskStrategy):
        name = "test-first-half"

        def select(self, scores, keep_ratio, valid=None):
            mask = torch.zeros_like(scores, dtype=torch.bool)
            mask[:, : scores.shape[1] // 2] = True
            return mask

    assert get_scorer("test-norm") is NormScorer
    assert isinstance(build_scorer("test-norm"), NormScorer)
    assert isinstance(build_strategy("test-first-half"), FirstHalf)


def test_unknown_name_lists_available():
    with pytest.raises(KeyError, match="cosine") as err:
        get_scorer("nope")
    assert "unknown scorer 'nope'" in str(err.value)
    with pytest.raises(KeyError, match="topk"):
        get_strategy("nope")


def test_instances_pass_through_and_bad_types_fail():
    scorer = CosineScorer(largest=False)
    assert build_scorer(scorer) is scorer
    with pytest.raises(TypeError, match="`scorer`"):
        build_scorer(42)
    with pytest.raises(TypeError, match="subclasses of TokenScorer"):
        register_scorer(int)


def test_duplicate_name_needs_override():
    with pytest.raises(ValueError, match="already registered"):

        @register_scorer("cosine")
        class Other(TokenScorer):
            def score(self, image_tokens, query, valid=None):
                return image_tokens[..., 0].float()
