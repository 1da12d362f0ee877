import pytest
import torch

from vissparse import PruningConfig
from vissparse.mock import COLOURS, MockPipeline, pooled_answer


@pytest.fixture(scope="module")
def pipe():
    # the mock world plants the answer where tokens share the prompt's words: the seed's
    # plain cosine finds it (the default "cosine" keeps the least similar tokens instead)
    return MockPipeline(PruningConfig(keep_ratio=0.1, scorer="cosine-mean"))


def test_answer_depends_on_the_kept_tokens(pipe):
    """The rule answers from what it sees: without the answer region it goes wrong."""
    samples = pipe.samples(40)
    with_answer = without_answer = 0
    for s in samples:
        text, prompt_mask = pipe.model.embed_text(s.prompt)
        query = pipe.model.query(text, prompt_mask)
        protos = pipe.model.prototypes
        only_answer = s.image_tokens[s.answer_tokens]
        rest = s.image_tokens[~s.answer_tokens]
        with_answer += pooled_answer(only_answer, query, protos, 20.0) == COLOURS.index(s.answer)
        without_answer += pooled_answer(rest, query, protos, 20.0) == COLOURS.index(s.answer)
    assert with_answer == len(samples)
    assert without_answer <= len(samples) // 3


def test_pruned_run_keeps_the_requested_count(pipe):
    s = pipe.samples(1)[0]
    out = pipe.run(s.image_tokens, s.prompt)
    assert out.n_kept == 103 and out.keep_mask.shape == (1024,)
    assert bool(out.keep_mask[s.answer_tokens].all())  # cosine finds the planted region
    full = pipe.run(s.image_tokens, s.prompt, prune=False)
    assert full.n_kept == 1024


def test_query_uses_only_the_user_prompt(pipe):
    text, prompt_mask = pipe.model.embed_text("What color is the car?")
    assert int(prompt_mask.sum()) == 5
    expected = pipe.world.embed(["what", "color", "is", "the", "car"]).mean(0)
    torch.testing.assert_close(pipe.model.query(text, prompt_mask), expected)


def test_bad_inputs(pipe):
    with pytest.raises(ValueError, match="`image`"):
        pipe.run(torch.zeros(10, 7), "What color is the car?")
    with pytest.raises(ValueError, match="`prompt`"):
        pipe.run(torch.zeros(10, 128), "?!")
