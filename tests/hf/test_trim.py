"""TRIM through the HF pipeline: a tiny LLaVA whose CLIP tower has a tiny CLIP text tower."""

from __future__ import annotations

import pytest
import torch

from vissparse import PruningConfig, VisSparse
from vissparse.hf.clip_space import ClipSpace
from vissparse.hf.loading import ModelNotFoundError
from vissparse.hf.pipeline import HFPipeline
from vissparse.host_sync import no_host_sync
from vissparse.strategies import TrimScorer, kept_count
from vissparse.testing import random_image, tiny_model
from vissparse.testing_clip import tiny_clip

PROMPTS = ["What color is the car?", "Is there a dog next to the tall tree here?"]


@pytest.fixture(scope="module")
def llava_and_clip(tmp_path_factory):
    """A tiny LLaVA, and a tiny CLIP sharing its vision tower, saved to a folder."""
    model, processor = tiny_model("llava")
    clip, tok = tiny_clip(model.model.vision_tower, seed=5)
    folder = tmp_path_factory.mktemp("clip")
    clip.save_pretrained(folder)
    tok.save_pretrained(folder)
    return model, processor, clip, tok, folder


def literal_keep(model, clip, tok, pixel_values, prompt, ratio):
    """The released code's kept set: layer -2 patches in CLIP's space, least aligned first."""
    with torch.no_grad():
        hidden = model.model.vision_tower(pixel_values, output_hidden_states=True)
        patches = hidden.hidden_states[-2][:, 1:]
        proj = clip.visual_projection(clip.vision_model.post_layernorm(patches))[0]
        ids = tok([prompt], return_tensors="pt")
        text = clip.get_text_features(
            input_ids=ids["input_ids"], attention_mask=ids["attention_mask"]
        ).pooler_output[0]
    similarity = -(proj @ text)
    k = kept_count(ratio, similarity.numel())
    return set(torch.topk(similarity, k).indices.tolist())


def test_kept_tokens_are_the_released_codes(llava_and_clip):
    model, processor, clip, tok, folder = llava_and_clip
    config = PruningConfig(keep_ratio=0.25, scorer=TrimScorer(clip=str(folder)))
    pipe = HFPipeline(model, processor, config)
    images = [random_image(seed=3), random_image(seed=4)]
    inputs, prompt_mask, _, _ = pipe._encode(images, PROMPTS)
    batch = pipe.prune(inputs, prompt_mask)
    for row, prompt in enumerate(PROMPTS):
        pixels = inputs["pixel_values"][row : row + 1]
        expected = literal_keep(model, clip, tok, pixels, prompt, 0.25)
        assert set(batch.image_keep[row].nonzero().flatten().tolist()) == expected
    # the prompt decides: another question keeps another set for the same image
    swapped, swapped_mask, _, _ = pipe._encode(images, PROMPTS[::-1])
    other = pipe.prune(swapped, swapped_mask)
    assert any(not torch.equal(a, b) for a, b in zip(other.image_keep, batch.image_keep,
                                                     strict=True))  # fmt: skip


def test_generate_through_the_facade_and_sync_free(llava_and_clip):
    model, processor, _clip, _tok, folder = llava_and_clip
    space = ClipSpace.from_pretrained(str(folder))
    vs = VisSparse(base_model=model, processor=processor, keep_ratio=0.25,
                   scorer=TrimScorer(clip=space))  # fmt: skip
    out = vs.generate(image=random_image(seed=3), prompt=PROMPTS[0], max_new_tokens=2,
                      return_details=True)  # fmt: skip
    assert out.metrics["n_kept"] == 4 and out.metrics["n_image_tokens"] == 16
    pipe = HFPipeline(model, processor, PruningConfig(keep_ratio=0.25,
                                                      scorer=TrimScorer(clip=space)))  # fmt: skip
    inputs, prompt_mask, _items, _ = pipe._encode([random_image(seed=1)] * 2, PROMPTS)
    emb, vision = pipe.embed(inputs)
    reference = pipe.select_and_apply(emb, prompt_mask, None, None, vision)
    with no_host_sync():  # tokenising happens on the host; nothing is read back
        guarded = pipe.select_and_apply(emb, prompt_mask, None, None, vision)
    assert all(torch.equal(a, b) for a, b in zip(guarded.image_keep, reference.image_keep,
                                                 strict=True))  # fmt: skip


def test_multi_image_prompts_score_each_image_with_its_own_prompt(llava_and_clip):
    model, processor, clip, tok, folder = llava_and_clip
    config = PruningConfig(keep_ratio=0.25, scorer=TrimScorer(clip=str(folder)))
    pipe = HFPipeline(model, processor, config)
    images = [[random_image(seed=5), random_image(seed=6)], random_image(seed=7)]
    inputs, prompt_mask, _, _ = pipe._encode(images, PROMPTS)
    batch = pipe.prune(inputs, prompt_mask)
    for i, prompt in enumerate([PROMPTS[0], PROMPTS[0], PROMPTS[1]]):  # images in order
        pixels = inputs["pixel_values"][i : i + 1]
        expected = literal_keep(model, clip, tok, pixels, prompt, 0.25)
        assert set(batch.image_keep[i].nonzero().flatten().tolist()) == expected


def test_in_llm_stage_keeps_the_released_codes_tokens(llava_and_clip):
    model, processor, clip, tok, folder = llava_and_clip
    config = PruningConfig(keep_ratio=0.5, scorer=TrimScorer(clip=str(folder)), stage="llm",
                           layer=1)  # fmt: skip
    pipe = HFPipeline(model, processor, config)
    inputs, prompt_mask, _, _ = pipe._encode(random_image(seed=3), PROMPTS[0])
    batch = pipe.prune(inputs, prompt_mask)
    kept = set(batch.image_keep[0].nonzero().flatten().tolist())
    # the scores read the vision features and the prompt only: the layer changes nothing
    ratio = len(kept) / 16
    assert 0 < len(kept) < 16
    assert kept == literal_keep(model, clip, tok, inputs["pixel_values"], PROMPTS[0], ratio)


def test_llava_next_clip_tiles_follow_the_prompt():
    model, processor = tiny_model("llava_next")
    clip, tok = tiny_clip(model.model.vision_tower, seed=5)
    space = ClipSpace.from_model(clip, tok)
    pipe = HFPipeline(model, processor, PruningConfig(keep_ratio=0.25,
                                                      scorer=TrimScorer(clip=space)))  # fmt: skip
    image = random_image(56, 84, seed=2)
    kept = []
    for prompt in PROMPTS:
        inputs, prompt_mask, _, _ = pipe._encode(image, prompt)
        batch = pipe.prune(inputs, prompt_mask)
        n = batch.n_image_tokens[0]
        assert batch.n_kept[0] == kept_count(0.25, n)
        kept.append(batch.image_keep[0])
    assert not torch.equal(kept[0], kept[1])


def test_a_clip_of_another_geometry_is_refused():
    model, processor = tiny_model("llava_next")  # a 28-pixel tower; tiny_clip's is 56
    space = ClipSpace.from_model(*tiny_clip())
    with pytest.raises(ValueError, match=r"\(image size, patch size, width\) \(56, 14, 32\)"):
        HFPipeline(model, processor, PruningConfig(keep_ratio=0.25, scorer=TrimScorer(clip=space)))


@pytest.mark.parametrize("family", ["qwen2_vl", "llava_onevision", "gemma3"])
def test_towers_without_a_text_aligned_space_are_refused(family):
    model, processor = tiny_model(family)
    with pytest.raises(ValueError, match="needs a vision tower of type 'clip_vision_model'"):
        HFPipeline(model, processor, PruningConfig(keep_ratio=0.25, scorer="trim"))


def test_missing_clip_weights_name_clip_at_set_up(llava_and_clip, monkeypatch):
    model, processor, *_ = llava_and_clip
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    scorer = TrimScorer(clip="no-such-org/no-such-clip", load_options={"local_files_only": True})
    with pytest.raises(ModelNotFoundError, match="could not load `clip`='no-such-org/no-such"):
        HFPipeline(model, processor, PruningConfig(keep_ratio=0.25, scorer=scorer))


def test_features_of_another_width_are_refused():
    clip, tok = tiny_clip()
    space = ClipSpace.from_model(clip, tok)
    with pytest.raises(ValueError, match="takes vision features of width 32, got 1280"):
        space.embed_patches(torch.zeros(1, 4, 1280))
    with pytest.raises(ValueError, match="`model` must be a CLIP model"):
        ClipSpace.from_model(torch.nn.Linear(2, 2), tok)


def test_mock_and_vllm_refuse_trim():
    from vissparse.vllm.settings import ServeSettings

    with pytest.raises(ValueError, match="vision features"):
        ServeSettings.parse({"keep_ratio": 0.1, "scorer": "trim"}).core()
    with pytest.raises(ValueError, match="trim"):
        VisSparse(base_model="mock", keep_ratio=0.1, mock=True, scorer="trim")


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
def test_the_zoo_guard_passes_trim(device):
    """The sync-free test of the zoo, on trim (on CUDA with the sync debug mode too)."""
    from tests.hf.test_sync_free import _run_guarded

    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    model, _ = tiny_model("llava", 0)  # the weights _run_guarded's model has
    space = ClipSpace.from_model(*tiny_clip(model.model.vision_tower))
    _run_guarded("llava", TrimScorer(clip=space), "drop", device=device)
