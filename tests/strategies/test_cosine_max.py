"""cosine-max: the best cosine to any single prompt word."""

import pytest
import torch
from hypothesis import given

from tests.strategies.strategies_hyp import token_batches
from vissparse.strategies import CosineScorer, MaxCosineScorer, PruningContext, cosine_scores


def test_hand_example_two_words_beat_their_mean():
    # the prompt names two directions; their mean (1, 1) prefers the diagonal token,
    # cosine-max scores each axis token 1.0 and the diagonal 0.707
    tokens = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-1.0, 0.0]]])
    words = torch.tensor([[[3.0, 0.0], [0.0, 2.0], [5.0, 5.0]]])
    mask = torch.tensor([[True, True, False]])  # the third is a template token
    ctx = PruningContext(tokens, words[:, :2].mean(1), prompt_embeddings=words, prompt_mask=mask)
    scores = MaxCosineScorer().score_context(ctx)[0]
    assert scores.tolist() == pytest.approx([1.0, 1.0, 2**-0.5, 0.0], abs=1e-6)
    mean = cosine_scores(tokens, words[:, :2].mean(1))[0]
    assert int(mean.argmax()) == 2 and int(scores.argmax()) == 0


@given(token_batches(max_b=3, padding=False, dtypes=(torch.float32,)))
def test_one_word_equals_cosine_and_rows_are_independent(batch):
    tokens, query, _ = batch
    ctx = PruningContext(tokens, query, prompt_embeddings=query.unsqueeze(1),
                         prompt_mask=torch.ones(query.shape[0], 1, dtype=torch.bool))  # fmt: skip
    scores = MaxCosineScorer().score_context(ctx)
    torch.testing.assert_close(scores, cosine_scores(tokens, query), atol=1e-5, rtol=1e-5)
    alone = PruningContext(tokens[-1:], query[-1:], prompt_embeddings=query[-1:, None],
                           prompt_mask=torch.ones(1, 1, dtype=torch.bool))  # fmt: skip
    assert torch.equal(MaxCosineScorer().score_context(alone)[0], scores[-1])


def test_without_prompt_embeddings_the_query_is_the_only_word():
    tokens, query = torch.randn(2, 5, 3), torch.randn(2, 3)
    ctx = PruningContext(tokens, query)
    torch.testing.assert_close(MaxCosineScorer().score_context(ctx), cosine_scores(tokens, query))
    # without the words, score() takes the query as the only word: the plain cosine
    tokens, query = torch.randn(2, 5, 3), torch.randn(2, 3)
    torch.testing.assert_close(MaxCosineScorer().score(tokens, query), cosine_scores(tokens, query))
    with pytest.raises(ValueError, match="prompt_embeddings"):  # content words need the mask
        CosineScorer(words="content").score_context(ctx)
