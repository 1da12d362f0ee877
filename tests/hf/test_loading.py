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


@pytest.fixture(scope="module")
def saved_llava(tmp_path_factory):
    model, processor = tiny_model("llava")
    path = tmp_path_factory.mktemp("llava")
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path


@pytest.fixture
def no_weights(monkeypatch):
    """Any weight loading fails the test: the options must be refused before it."""
    import transformers

    def refuse(*args, **kwargs):
        raise AssertionError("weights were loaded before the options were checked")

    monkeypatch.setattr(transformers.AutoModelForImageTextToText, "from_pretrained", refuse)


def test_device_moves_the_loaded_model(saved_llava):
    loaded = VisSparse(base_model=saved_llava, device="cpu", dtype="bfloat16")
    assert loaded.model.device == torch.device("cpu") and loaded.model.dtype == torch.bfloat16
    assert isinstance(loaded.generate(image=random_image(), prompt="Hi?", max_new_tokens=2), str)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"dtype": "bogus"}, r"^`dtype` must be a torch dtype .* got 'bogus'$"),
        ({"torch_dtype": "float33"}, r"^`torch_dtype` must be a torch dtype .* got 'float33'$"),
        ({"dtype": {"text_config": "nope"}}, r"^`dtype` must be a torch dtype .* got 'nope'$"),
        (
            {"torch_dtype": torch.bfloat16, "dtype": torch.float32},
            r"^`dtype`=torch\.float32 and `torch_dtype`=torch\.bfloat16 disagree; pass only",
        ),
        ({"device": "cpu", "device_map": "auto"}, r"^pass one of `device`='cpu' .* `device_map`"),
        ({"device": "nowhere"}, r"^`device`='nowhere' is not a torch device usable here"),
    ],
    ids=[
        "bogus-dtype",
        "bogus-torch_dtype",
        "bogus-dtype-dict",
        "disagreeing-dtypes",
        "device-and-device_map",
        "bogus-device",
    ],
)
def test_loading_options_are_refused_before_the_weights_load(saved_llava, no_weights, options,
                                                             message):  # fmt: skip
    with pytest.raises(ValueError, match=message) as err:
        VisSparse(base_model=saved_llava, **options)
    assert "\n" not in str(err.value)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal without CUDA")
def test_a_cuda_device_without_cuda_is_refused_before_loading(saved_llava, no_weights):
    with pytest.raises(ValueError, match=r"^`device`='cuda' is not a torch device usable here"):
        VisSparse(base_model=saved_llava, device="cuda")


def test_equal_dtype_and_torch_dtype_are_accepted(saved_llava):
    loaded = VisSparse(base_model=saved_llava, dtype="bfloat16", torch_dtype=torch.bfloat16)
    assert loaded.model.dtype == torch.bfloat16
