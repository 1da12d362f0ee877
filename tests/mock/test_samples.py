import random

import pytest
import torch

from vissparse.mock import COLOURS, MockSampleConfig, MockWorld, make_samples
from vissparse.mock.samples import make_sample


def test_samples_are_reproducible_and_planted():
    world = MockWorld(dim=32)
    a = make_samples(5, world, seed=3)
    b = make_samples(5, world, seed=3)
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x.image_tokens, y.image_tokens) and x.prompt == y.prompt
    sample = a[0]
    assert sample.image_tokens.shape == (1024, 32)
    assert int(sample.answer_tokens.sum()) == 9
    obj, colour = sample.objects[0]
    assert obj in sample.prompt and colour == sample.answer and colour in COLOURS
    assert all(c != colour for _, c in sample.objects[1:])


def test_answer_tokens_carry_object_and_colour():
    world = MockWorld(dim=64)
    sample = make_sample(world, MockSampleConfig(), random.Random(0))
    obj, colour = sample.objects[0]
    inside = sample.image_tokens[sample.answer_tokens]
    outside = sample.image_tokens[~sample.answer_tokens]
    assert float((inside @ world.vector(colour)).mean()) > 0.5
    assert float((inside @ world.vector(obj)).mean()) > 0.5
    assert float((outside @ world.vector(obj)).abs().mean()) < 0.2


@pytest.mark.parametrize("kwargs", [{"n_tokens": 1000}, {"answer_size": 0}, {"n_distractors": 99}])
def test_bad_sample_config(kwargs):
    with pytest.raises(ValueError):
        MockSampleConfig(**kwargs)


@pytest.mark.parametrize("bad", [0, -3, True, 2.5])
def test_bad_n_samples(bad):
    with pytest.raises(ValueError, match="n_samples"):
        make_samples(bad, MockWorld(dim=16))
