"""The user's prompt found in a vLLM prompt equals the HF path's prompt tokens."""

import pytest

from vissparse.config import PruningConfig
from vissparse.hf.inputs import Item, chat_text
from vissparse.hf.pipeline import HFPipeline
from vissparse.testbed.checkpoints import checkpoint_dir
from vissparse.testbed.evaluate import load_testbed_model
from vissparse.testbed.questions import make_questions
from vissparse.testing import random_image, tiny_model
from vissparse.vllm.query import TemplateParts, query_ids

PLACEHOLDER = {"llava": "<image>", "qwen2_vl": "<|image_pad|>", "qwen2_5_vl": "<|image_pad|>"}


def _check(model, processor, placeholder, images, prompts):
    pipe = HFPipeline(model, processor, PruningConfig(keep_ratio=0.5))
    tok = processor.tokenizer
    parts = TemplateParts.from_template(processor, tok, placeholder)
    image_id = tok.convert_tokens_to_ids(placeholder)
    for image, prompt in zip(images, prompts, strict=True):
        inputs, mask, _, _ = pipe._encode(image, prompt)
        expected = inputs["input_ids"][0][mask[0]].tolist()
        text, _ = chat_text(processor, Item([image], prompt))
        ids = tok.encode(text, add_special_tokens=False)  # what vLLM's renderer hands over
        assert query_ids(ids, image_id, parts, tok.all_special_ids) == expected


@pytest.mark.parametrize("family", ["llava", "qwen2_vl"])
def test_testbed_questions(family):
    model, processor = load_testbed_model(checkpoint_dir(family))
    questions = make_questions(30, seed=3)
    _check(model, processor, PLACEHOLDER[family], [q["image"] for q in questions],
           [q["question"] for q in questions])  # fmt: skip


@pytest.mark.parametrize("family", ["llava", "qwen2_vl", "qwen2_5_vl"])
def test_tiny_models_with_punctuation_and_typed_special_tokens(family):
    model, processor = tiny_model(family, 0)
    prompts = ["What color is the car?", "  two  spaces, then: punctuation!", "a </s> b"]
    _check(model, processor, PLACEHOLDER[family], [random_image()] * 3, prompts)


def test_no_image_or_no_text_gives_an_empty_query():
    parts = TemplateParts(between=(), suffix=(9,))
    assert query_ids([1, 2, 9], 5, parts, ()) == []
    assert query_ids([1, 5, 9], 5, parts, ()) == []


def test_without_a_template_every_text_token_after_the_last_image_counts():
    parts = TemplateParts.from_template(object(), None, "<image>")
    assert parts == TemplateParts()
    assert query_ids([5, 7, 5, 8, 2], 5, parts, (2,)) == [8]
