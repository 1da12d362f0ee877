"""Bad input gets a clear error, and nothing runs before every item is checked."""

import pytest
from PIL import Image

from vissparse import PruningConfig, VisSparse
from vissparse.hf.pipeline import HFPipeline
from vissparse.testing import random_image, tiny_model


@pytest.fixture(scope="module", params=["qwen2_vl", "llava"])
def pipe(request):
    model, processor = tiny_model(request.param)
    pipe = HFPipeline(model, processor, PruningConfig(keep_ratio=0.25))
    calls = []
    original = model.generate

    def counting_generate(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    model.generate = counting_generate
    pipe.calls = calls
    return pipe


def check_error(pipe, exc, match, image, prompt):
    before = len(pipe.calls)
    with pytest.raises(exc, match=match):
        pipe.generate(image, prompt, max_new_tokens=2)
    assert len(pipe.calls) == before  # nothing half-done


def test_images_and_prompts_must_pair_up(pipe):
    img = random_image()
    check_error(pipe, ValueError, "list of 3 prompts needs a list of 3 images", [img, img],
                ["a?", "b?", "c?"])  # fmt: skip
    check_error(pipe, ValueError, "list of 2 prompts", img, ["a?", "b?"])


def test_placeholder_in_prompt(pipe):
    placeholder = pipe.adapter.spec.placeholders[0]
    check_error(pipe, ValueError, "`image` is required", None, f"{placeholder} What is it?")
    check_error(pipe, ValueError, "image placeholder", random_image(), f"{placeholder} What?")
    check_error(pipe, ValueError, "item 1: `prompt` contains the image placeholder",
                [random_image(), random_image()], ["ok?", f"{placeholder}?"])  # fmt: skip


def test_empty_prompt(pipe):
    check_error(pipe, ValueError, "`prompt` is empty", random_image(), "  ")
    check_error(pipe, ValueError, "item 2: `prompt` is empty", [random_image()] * 3, ["a", "b", ""])
    check_error(pipe, TypeError, "`prompt` must be a string", random_image(), 42)


def test_unreadable_and_zero_size_images(pipe, tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image")
    check_error(pipe, ValueError, "item 1: `image` .*broken.png.* cannot be read",
                [random_image(), str(bad)], ["a?", "b?"])  # fmt: skip
    check_error(pipe, ValueError, "cannot be read", str(tmp_path / "missing.png"), "a?")
    check_error(pipe, ValueError, "zero size", Image.new("RGB", (0, 5)), "a?")
    check_error(pipe, TypeError, "PIL image or a path", 3.5, "a?")
    check_error(pipe, ValueError, "empty list", [], "a?")


def test_image_paths_work(pipe, tmp_path):
    path = tmp_path / "img.png"
    random_image().save(path)
    assert isinstance(pipe.generate(str(path), "What?", max_new_tokens=2), str)


def test_text_only_model_is_rejected():
    from transformers import LlamaConfig, LlamaForCausalLM

    _, processor = tiny_model("llava")
    config = LlamaConfig(vocab_size=128, hidden_size=16, intermediate_size=32,
                         num_hidden_layers=1, num_attention_heads=2)  # fmt: skip
    text_only = LlamaForCausalLM(config)
    expected = "supported model types: gemma3, internvl, llava, llava_next, llava_onevision"
    with pytest.raises(ValueError, match=expected):
        VisSparse(base_model=text_only, processor=processor)


def test_keep_ratio_checked_before_loading():
    model, processor = tiny_model("llava")
    for bad in (0.0, 1.5, float("nan")):
        with pytest.raises(ValueError, match="`keep_ratio`"):
            VisSparse(base_model=model, processor=processor, keep_ratio=bad)
