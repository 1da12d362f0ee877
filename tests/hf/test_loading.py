"""Loading from hub ids and local directories, with tiny models saved in-process."""

import pytest
import torch

from vissparse import VisSparse
from vissparse.hf.loading import ModelNotFoundError
from vissparse.testing import random_image, tiny_model

GEN = {"max_new_tokens": 4, "min_new_tokens": 4, "do_sample": False}


def test_missing_weights_offline_gives_one_clear_error():
    with pytest.raises(ModelNotFoundError) as err:
        VisSparse(base_model="Qwen/Qwen2-VL-7B", keep_ratio=0.10)
    message = str(err.value)
    assert "'Qwen/Qwen2-VL-7B'" in message and "hub cache" in message
    assert "hf download Qwen/Qwen2-VL-7B" in message and "VisSparse(base_model='./" in message


def test_a_path_that_is_not_a_directory(tmp_path):
    with pytest.raises(ModelNotFoundError, match="is not a directory"):
        VisSparse(base_model=str(tmp_path / "nope"))


def test_empty_base_model_and_a_directory_without_a_model(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for empty in ("", "  "):
        with pytest.raises(ValueError, match=r"`base_model` must name .* empty string"):
            VisSparse(base_model=empty)
    with pytest.raises(ModelNotFoundError, match=r"`base_model` .* without a config\.json"):
        VisSparse(base_model=str(tmp_path))


def test_inner_backbone_is_rejected_at_construction():
    model, processor = tiny_model("qwen2_vl")
    with pytest.raises(TypeError, match="`base_model` must be a model that generates"):
        VisSparse(base_model=model.model, processor=processor)


def test_loaded_model_needs_processor():
    model, _ = tiny_model("llava")
    with pytest.raises(ValueError, match="`processor` is required"):
        VisSparse(base_model=model)


@pytest.mark.parametrize("family", ["qwen2_vl", "llava_next"])
def test_load_from_local_directory(family, tmp_path):
    model, processor = tiny_model(family)
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    image = random_image(84, 112)
    direct = VisSparse(base_model=model, processor=processor, keep_ratio=0.5)
    loaded = VisSparse(base_model=str(tmp_path), keep_ratio=0.5, torch_dtype=torch.float32,
                       attn_implementation="eager")  # fmt: skip
    assert loaded.model.dtype == torch.float32
    assert loaded.model.config._attn_implementation == "eager"
    a = direct.generate(image=image, prompt="What is it?", return_details=True, **GEN)
    b = loaded.generate(image=image, prompt="What is it?", return_details=True, **GEN)
    assert torch.equal(a.sequences, b.sequences)
    assert all(torch.equal(x, y) for x, y in zip(a.keep_mask, b.keep_mask, strict=True))


def test_dtype_passes_through(tmp_path):
    model, processor = tiny_model("llava")
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    loaded = VisSparse(base_model=tmp_path, dtype=torch.bfloat16)
    assert loaded.model.dtype == torch.bfloat16
    assert isinstance(loaded.generate(image=random_image(), prompt="Hi?", max_new_tokens=2), str)


def test_user_api_lines_with_a_tiny_model():
    model, processor = tiny_model("qwen2_vl")
    vs = VisSparse(base_model=model, processor=processor, keep_ratio=0.10)
    output = vs.generate(image=random_image(), prompt="What color is the car?", max_new_tokens=3)
    assert isinstance(output, str)
    details = vs.generate(image=random_image(), prompt="What color is the car?", max_new_tokens=3,
                          return_details=True, measure_baseline=True)  # fmt: skip
    assert {"latency_ms", "n_image_tokens", "n_kept", "speedup"} <= details.metrics.keys()
    assert details.metrics["speedup"] > 0


@pytest.mark.parametrize("family", ["llava_onevision", "gemma3", "qwen3_vl", "qwen3_5", "internvl"])
def test_newer_families_load_from_a_saved_directory(tmp_path, family):
    """The processor is rebuilt without torchvision, with its saved options."""
    model, processor = tiny_model(family)
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    image = random_image(56, 56)
    gen = {"max_new_tokens": 4, "min_new_tokens": 4, "do_sample": False}
    expected = VisSparse(base_model=model, processor=processor, keep_ratio=0.25).generate(
        image=image, prompt="What is it?", **gen
    )
    loaded = VisSparse(base_model=str(tmp_path), keep_ratio=0.25)
    assert loaded.generate(image=image, prompt="What is it?", **gen) == expected
