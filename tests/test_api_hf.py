"""The facade over a HF model: generate, prepare_inputs and a paired benchmark."""

import pytest
import torch

from vissparse import VisSparse
from vissparse.testing import random_image, tiny_model


@pytest.fixture(scope="module")
def vs():
    model, processor = tiny_model("llava")
    return VisSparse(base_model=model, processor=processor, keep_ratio=0.25)


def test_prepare_inputs_is_what_the_model_gets(vs):
    inputs = vs.prepare_inputs(image=random_image(), prompt="What is it?")
    assert {"input_ids", "attention_mask", "pixel_values"} <= inputs.keys()
    image_token = vs.model.config.image_token_id
    assert int((inputs["input_ids"] == image_token).sum()) == 16


def test_benchmark_with_samples(vs):
    samples = [{"image": random_image(seed=i), "prompt": f"Question {i}?", "answer": "x"}
               for i in range(4)]  # fmt: skip
    result = vs.benchmark(n_samples=3, samples=samples, warmup=1, progress=False,
                          max_new_tokens=2)  # fmt: skip
    assert result["n_samples"] == 3 and result["n_kept"] == 4 and result["n_image_tokens"] == 16
    assert isinstance(result["model"], str)
    assert len(result["records"]) == 3


def test_benchmark_needs_samples(vs):
    with pytest.raises(ValueError, match="`samples=`"):
        vs.benchmark(n_samples=2)


def test_mask_mode_runs_full_length(vs):
    model, processor = vs.model, vs.pipeline.processor
    masked = VisSparse(base_model=model, processor=processor, keep_ratio=0.25, mode="mask")
    out = masked.generate(image=random_image(), prompt="What?", return_details=True,
                          max_new_tokens=2)  # fmt: skip
    full_len = vs.prepare_inputs(image=random_image(), prompt="What?")["input_ids"].shape[1]
    assert out.metrics["kv_cache_tokens"] == [full_len]
    assert isinstance(out.sequences, torch.Tensor)


@pytest.mark.parametrize("flag", ["return_details", "measure_baseline"])
@pytest.mark.parametrize("value", ["no", 1, None])
def test_flags_take_bools_only(vs, flag, value):
    with pytest.raises(TypeError, match=f"`{flag}` must be a bool"):
        vs.generate(image=random_image(), prompt="What is it?", **{flag: value})


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"max_new_tokens": "2"}, "`max_new_tokens` must be an int"),
     ({"max_new_tokens": 0}, "`max_new_tokens` must be an int"),
     ({"min_new_tokens": -1}, "`min_new_tokens` must be an int"),
     ({"max_length": 3}, "`max_length`=3 leaves no room")],
)  # fmt: skip
def test_length_arguments_are_named(vs, kwargs, match):
    with pytest.raises(ValueError, match=match):
        vs.generate(image=random_image(), prompt="What is it?", **kwargs)


def test_benchmark_checks_every_image_before_the_first_call(vs, tmp_path):
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"not a jpeg")
    good = {"image": random_image(), "prompt": "What is it?", "answer": "x"}
    samples = [good, good, good, {**good, "image": str(corrupt)}]
    before = len(vs.records)
    with pytest.raises(ValueError, match=r"`samples\[3\]`: `image` .*corrupt.jpg' cannot be read"):
        vs.benchmark(n_samples=4, samples=samples, warmup=0, progress=False)
    with pytest.raises(TypeError, match=r"`samples\[1\]`: `image` must be a PIL image"):
        vs.benchmark(n_samples=2, samples=[good, {**good, "image": 3}], progress=False)
    assert len(vs.records) == before  # nothing ran


@pytest.mark.parametrize(
    ("index", "prompt", "match"),
    [(3, "", r"`samples\[3\]`: `prompt` is empty"),
     (2, "   ", r"`samples\[2\]`: `prompt` is empty"),
     (4, "</s>", r"`samples\[4\]`: `prompt` '</s>' has no token of its own once the tokenizer's "
                 "special tokens are set aside"),
     (5, "<s></s>", r"`samples\[5\]`: `prompt` '<s></s>' has no token of its own"),
     (1, "<image> What?", r"`samples\[1\]`: `prompt` contains the image placeholder")],
)  # fmt: skip
def test_benchmark_checks_every_prompt_before_the_first_call(vs, monkeypatch, index, prompt,
                                                             match):  # fmt: skip
    def refuse(*args, **kwargs):
        raise AssertionError("a sample ran before every sample was checked")

    samples = [{"image": random_image(seed=i), "prompt": "What is it?", "answer": "x"}
               for i in range(6)]  # fmt: skip
    samples[index]["prompt"] = prompt
    before = len(vs.records)
    monkeypatch.setattr(vs.pipeline, "run", refuse)
    with pytest.raises(ValueError, match=match):
        vs.benchmark(n_samples=6, samples=samples, warmup=0, progress=False, max_new_tokens=1)
    monkeypatch.setattr(type(vs), "_pipeline_for", refuse)
    with pytest.raises(ValueError, match=match):  # sweep and tune check before their first row
        vs.sweep([0.5, 1.0], n_samples=6, samples=samples, progress=False)
    with pytest.raises(ValueError, match=match):
        vs.tune(max_accuracy_drop=0.1, n_samples=6, samples=samples, progress=False)
    assert len(vs.records) == before


def test_benchmark_refuses_what_is_no_generate_option(vs):
    good = [{"image": random_image(), "prompt": "What is it?", "answer": "x"}]
    with pytest.raises(TypeError, match="`prune` is not an option of benchmark"):
        vs.benchmark(samples=good, prune=False)
    with pytest.raises(TypeError, match="`generate_kwargs` is not an argument of benchmark"):
        vs.benchmark(samples=good, generate_kwargs=[1])
    with pytest.raises(TypeError, match="`keep_ratio` is a setting of VisSparse"):
        vs.benchmark(samples=good, keep_ratio=0.5)
    with pytest.raises(TypeError, match="`compile` is a setting of VisSparse"):
        vs.benchmark(samples=good, compile=True)
    with pytest.raises(TypeError, match="`attention_mask` is built by VisSparse"):
        vs.benchmark(samples=good, attention_mask=None)
    with pytest.raises(TypeError, match=r"`samples` must be a list of dicts .* got a dict"):
        vs.benchmark(samples=good[0])


def test_image_refused_by_the_processor_is_named():
    from PIL import Image

    model, processor = tiny_model("qwen2_vl")
    vs = VisSparse(base_model=model, processor=processor)
    with pytest.raises(ValueError, match=r"`image` \(sizes \[\(2000, 8\)\]\) was refused"):
        vs.generate(image=Image.new("RGB", (2000, 8)), prompt="What is it?")


def test_random_masks_depend_on_the_sample_only():
    model, processor = tiny_model("llava")

    def random_vs():
        return VisSparse(base_model=model, processor=processor, keep_ratio=0.25, scorer="random")

    images = [random_image(seed=i) for i in range(3)]
    prompts = ["What is it?", "What colour?", "What is it?"]
    vs = random_vs()
    batch = vs.generate(image=images, prompt=prompts, return_details=True, max_new_tokens=1)
    again = vs.generate(
        image=images[::-1],
        prompt=prompts[::-1],
        return_details=True,
        measure_baseline=True,
        max_new_tokens=1,
    )  # warm-up calls first
    for i, (image, prompt) in enumerate(zip(images, prompts, strict=True)):
        alone = random_vs().generate(image=image, prompt=prompt, return_details=True,
                                     max_new_tokens=1).keep_mask  # fmt: skip
        assert torch.equal(batch.keep_mask[i][0], alone[0])
        assert torch.equal(again.keep_mask[2 - i][0], alone[0])
    masks = [m[0] for m in batch.keep_mask]
    assert not torch.equal(masks[0], masks[1]) or not torch.equal(masks[0], masks[2])


def test_llm_stage_benchmark_counts_tokens_per_layer(vs):
    llm = VisSparse(base_model=vs.model, processor=vs.pipeline.processor, keep_ratio=0.25,
                    stage="llm", layer=1, scorer="fastv")  # fmt: skip
    samples = [{"image": random_image(seed=i), "prompt": f"Question {i}?", "answer": "x"}
               for i in range(2)]  # fmt: skip
    result = llm.benchmark(n_samples=2, samples=samples, warmup=0, progress=False,
                           max_new_tokens=2)  # fmt: skip
    # layer 0 sees all 16 image tokens, layer 1 the 4 kept: 10 per layer on average
    assert result["n_kept"] == 4 and result["avg_image_tokens"] == 10
    assert result["effective_keep_ratio"] == pytest.approx(10 / 16)
    assert "stage='llm', layers=((1, 0.25),)" in repr(llm)
    with pytest.raises(ValueError, match="mock has no language-model layers"):
        VisSparse(base_model="mock", mock=True, stage="llm")
