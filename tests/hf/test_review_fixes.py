"""Contracts at the edges: lengths, prompt location, options, plugins, generate kwargs."""

import pytest
import torch

from vissparse import MaskStrategy, PruningConfig, TokenScorer, VisSparse
from vissparse.hf.inputs import Item, chat_text
from vissparse.hf.pipeline import HFPipeline
from vissparse.testing import random_image, tiny_model


@pytest.fixture(scope="module", params=["llava", "qwen2_vl"])
def tiny(request):
    return tiny_model(request.param)


def test_max_and_min_length_count_from_the_unpruned_prompt(tiny):
    model, processor = tiny
    pipe = HFPipeline(model, processor, PruningConfig(keep_ratio=0.25))
    image = random_image(112, 112)
    length = pipe.prepare_inputs(image, "What is it?")["input_ids"].shape[1]
    out = pipe.generate(image, "What is it?", max_length=length + 4, min_length=length + 4,
                        return_details=True)  # fmt: skip
    assert out.sequences.shape[1] == 4


def test_prompt_found_even_when_the_template_contains_it(tiny):
    _, processor = tiny
    for prompt in ("a", "T", "s", "USER"):
        text, (start, end) = chat_text(processor, Item([random_image()], prompt))
        assert text[start:end] == prompt
        assert start == _user_start(text, processor)  # the user's text, not the template's


def _user_start(text, processor):
    marker = "<|vision_end|>" if "<|vision_end|>" in text else "<image>\n"
    return text.index(marker) + len(marker)


def test_options_with_a_loaded_model_are_rejected(tiny):
    model, processor = tiny
    with pytest.raises(TypeError, match=r"\['dtype'\].*already-loaded"):
        VisSparse(model, processor=processor, dtype=torch.bfloat16)


def test_unknown_scorer_fails_before_loading():
    with pytest.raises(ValueError, match=r"unknown scorer 'cos'; available: .*cosine"):
        VisSparse(base_model="Qwen/Qwen2-VL-7B", scorer="cos")
    with pytest.raises(ValueError, match="unknown strategy"):
        PruningConfig(strategy="top")


class Transposed(TokenScorer):
    def score(self, image_tokens, query, valid=None):
        return image_tokens.float().norm(dim=-1).T


class NaNScorer(TokenScorer):
    def score(self, image_tokens, query, valid=None):
        return torch.full(image_tokens.shape[:2], float("nan"))


class FloatMask(MaskStrategy):
    def select(self, scores, keep_ratio, valid=None):
        return torch.ones_like(scores)


@pytest.mark.parametrize(("scorer", "strategy", "match"), [
    (Transposed(), "topk", r"`scorer` Transposed returned shape \(16, 1\), expected \(1, 16\)"),
    (NaNScorer(), "topk", "`scorer` NaNScorer returned NaN"),
    ("cosine", FloatMask(), "`strategy` FloatMask must return a bool tensor"),
])  # fmt: skip
def test_plugins_that_break_the_contract_are_named(scorer, strategy, match):
    model, processor = tiny_model("llava")
    pipe = HFPipeline(model, processor, PruningConfig(0.25, scorer=scorer, strategy=strategy))
    with pytest.raises(ValueError, match=match):
        pipe.generate(random_image(), "What?", max_new_tokens=1)


def test_generate_kwargs_vissparse_builds_are_rejected(tiny):
    model, processor = tiny
    vs = VisSparse(model, processor=processor)
    for key in ("input_ids", "attention_mask", "inputs_embeds", "position_ids"):
        with pytest.raises(TypeError, match=f"`{key}` is built by VisSparse"):
            vs.generate(image=random_image(), prompt="Hi?", **{key: None})
    with pytest.raises(ValueError, match="num_return_sequences"):
        vs.generate(image=random_image(), prompt="Hi?", num_beams=2, num_return_sequences=2)


def test_benchmark_samples_are_checked(tiny):
    model, processor = tiny
    vs = VisSparse(model, processor=processor)
    with pytest.raises(ValueError, match=r"`samples\[1\]` must be a dict"):
        vs.benchmark(samples=[{"image": random_image(), "prompt": "a", "answer": "b"},
                              {"image": random_image(), "prompt": "a"}])  # fmt: skip
    with pytest.raises(ValueError, match="no samples"):
        vs.benchmark(samples=[])


def test_special_tokens_typed_in_the_prompt_are_not_query_tokens():
    from vissparse.hf.inputs import prompt_token_mask

    _, processor = tiny_model("llava")
    text, span = chat_text(processor, Item([random_image()], "a</s>b"))
    ids = processor.tokenizer(text)["input_ids"]
    flags = prompt_token_mask(processor.tokenizer, text, span, ids, image_token_id=-1)
    chosen = [processor.tokenizer.decode([i]) for i, f in zip(ids, flags, strict=True) if f]
    assert chosen == ["a", "b"]
