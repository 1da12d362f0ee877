"""Mock samples one at a time: the same stream as make_samples, without the others."""

from vissparse import VisSparse


def test_sample_i_alone_equals_the_list():
    vs = VisSparse("mock", mock=True, dim=32, n_tokens=64)
    listed = vs.pipeline.samples(6, seed=3)
    for i in (0, 5):
        alone = vs.pipeline.sample(i, seed=3)
        assert alone.prompt == listed[i].prompt and alone.answer == listed[i].answer
        assert (alone.image_tokens == listed[i].image_tokens).all()
