"""Vision attention signals: recomputed from one layer's hook, equal to eager attention."""

import sys

import pytest
import torch

from vissparse.config import PruningConfig
from vissparse.hf.pipeline import HFPipeline
from vissparse.testing import random_image, tiny_model

PROMPTS = ["What color is it?", "Where is the red one?"]
SIZES = {"llava": [(112, 112), (84, 112)], "llava_next": [(56, 56), (40, 70)],
         "qwen2_vl": [(112, 112), (84, 140)], "qwen2_5_vl": [(112, 112), (84, 140)],
         "llava_onevision": [(56, 56), (40, 70)], "gemma3": [(112, 112), (84, 140)],
         "qwen3_vl": [(128, 128), (96, 160)], "internvl": [(112, 224), (224, 224)]}  # fmt: skip


def batch(family, attn="eager"):
    model, processor = tiny_model(family, attn_implementation=attn)
    pipe = HFPipeline(model, processor, PruningConfig(0.25))
    images = [random_image(h, w, seed=i) for i, (h, w) in enumerate(SIZES[family])]
    return model, pipe, pipe.prepare_inputs(images, PROMPTS)


@pytest.mark.parametrize("layer", [-1, -2])
def test_llava_cls_attention_equals_eager_attention(layer):
    model, pipe, inputs = batch("llava")
    _, signals = pipe.adapter.embed_with_signals(inputs, layer)
    with torch.no_grad():
        out = model.model.vision_tower(inputs["pixel_values"], output_attentions=True)
    expected = out.attentions[layer][:, :, 0, 1:].mean(dim=1)  # [CLS] row, patches only
    torch.testing.assert_close(torch.stack(signals.attention), expected, atol=1e-6, rtol=1e-5)
    assert signals.keys[0].shape == (16, 16) and signals.ms > 0


def test_llava_next_base_tile_equals_eager_and_newlines_are_zero():
    from transformers.models.llava_next.modeling_llava_next import image_size_to_num_patches

    model, pipe, inputs = batch("llava_next")
    emb, signals = pipe.adapter.embed_with_signals(inputs, -1)
    config = model.config
    tiles = [image_size_to_num_patches(s, config.image_grid_pinpoints,
                                       config.vision_config.image_size)
             for s in inputs["image_sizes"]]  # fmt: skip
    pixels = torch.cat([p[:n] for p, n in zip(inputs["pixel_values"], tiles, strict=True)])
    with torch.no_grad():
        out = model.model.vision_tower(pixels, output_attentions=True)
    cls = out.attentions[-1][:, :, 0, 1:].mean(dim=1)
    side = config.vision_config.image_size // config.vision_config.patch_size
    first_tile = 0
    for i, n_tiles in enumerate(tiles):
        torch.testing.assert_close(signals.attention[i][: side * side], cls[first_tile])
        first_tile += n_tiles
        newline = ~emb.scorable[i]
        assert newline.any() and bool((signals.attention[i][newline] == 0).all())
        assert signals.attention[i][~newline].gt(0).all()


def test_onevision_received_attention_equals_eager_on_the_base_tile():
    """SigLIP has no [CLS]: the attention each patch receives, mean over heads and queries."""
    model, pipe, inputs = batch("llava_onevision")
    emb, signals = pipe.adapter.embed_with_signals(inputs, -1)
    tiles = pipe.adapter._tiles(inputs)
    pixels = torch.cat([p[:n] for p, n in zip(inputs["pixel_values"], tiles, strict=True)])
    with torch.no_grad():
        out = model.model.vision_tower(pixels, output_attentions=True)
    received = out.attentions[-1].mean(dim=1).mean(dim=1)  # [tiles, patches]
    side = model.config.vision_config.image_size // model.config.vision_config.patch_size
    first_tile = 0
    for i, n_tiles in enumerate(tiles):
        torch.testing.assert_close(signals.attention[i][: side * side], received[first_tile])
        first_tile += n_tiles
        newline = ~emb.scorable[i]
        assert newline.any() and bool((signals.attention[i][newline] == 0).all())


def test_gemma3_received_attention_is_pooled_like_the_features():
    model, pipe, inputs = batch("gemma3")
    _, signals = pipe.adapter.embed_with_signals(inputs, -1, features=True)
    with torch.no_grad():
        out = model.model.vision_tower(inputs["pixel_values"], output_attentions=True)
    received = out.attentions[-1].mean(dim=1).mean(dim=1).view(-1, 1, 8, 8)  # [T, 1, 8, 8]
    pooled = torch.nn.functional.avg_pool2d(received, 2).flatten(1)  # 2 x 2 patches a token
    torch.testing.assert_close(torch.stack(signals.attention), pooled)
    features = (
        torch.nn.functional.avg_pool2d(
            out.last_hidden_state.transpose(1, 2).reshape(-1, 32, 8, 8), 2
        )
        .flatten(2)
        .transpose(1, 2)
    )
    torch.testing.assert_close(torch.stack(signals.features), features)


def test_internvl_cls_attention_is_shuffled_like_the_tokens():
    """InternViT's [CLS] row (q/k norms on), each token the mean of its 2 x 2 patch block
    in raster order: the order pixel shuffle gives the tokens, so tiles are raster grids."""
    model, pipe, inputs = batch("internvl")
    emb, signals = pipe.adapter.embed_with_signals(inputs, -1)
    assert pipe.adapter.tiles(inputs) == [3, 5]  # 2 and 4 tiles, each with a thumbnail
    with torch.no_grad():
        out = model.model.vision_tower(inputs["pixel_values"], output_attentions=True)
    cls = out.attentions[-1][:, :, 0, 1:].mean(dim=1).view(-1, 1, 8, 8)  # [tiles, 8 x 8]
    expected = torch.nn.functional.avg_pool2d(cls, 2).flatten()  # 4 x 4 tokens a tile
    torch.testing.assert_close(torch.cat(signals.attention), expected, atol=1e-6, rtol=1e-5)
    grid = pipe.adapter.token_grid(inputs, 1)
    assert (grid.start, grid.rows, grid.label) == (4 * 16, 4, "thumbnail")
    layout = pipe.adapter.layouts(inputs, emb)[1]
    assert [s.label for s in layout.segments][-2:] == ["tile 3", "thumbnail"]


def qwen_expected(model, inputs, layer):
    """Attention received from the eager weights the model itself computes, pooled per
    merge unit and put in output order by matching the merger's rows with the model's."""
    family_module = sys.modules[type(model).__module__]
    visual = model.model.visual
    target = visual.blocks[layer].attn
    weights, active, rows = [], [False], {}
    original = family_module.eager_attention_forward

    def recording(*args, **kwargs):
        out, w = original(*args, **kwargs)
        if active[0]:
            weights.append(w)
        return out, w

    pre = target.register_forward_pre_hook(lambda *a: active.__setitem__(0, True))
    post = target.register_forward_hook(lambda *a: active.__setitem__(0, False))
    merger = visual.merger.register_forward_hook(lambda m, a, o: rows.__setitem__("merger", o))
    family_module.eager_attention_forward = recording
    try:
        with torch.no_grad():
            pooled = model.model.get_image_features(
                inputs["pixel_values"], inputs["image_grid_thw"]
            )
    finally:
        family_module.eager_attention_forward = original
        pre.remove(), post.remove(), merger.remove()
    received = torch.cat([w[0].float().mean(dim=0).mean(dim=0) for w in weights])
    unit = model.config.vision_config.spatial_merge_size**2
    per_unit = received.view(-1, unit).mean(dim=1)
    output = torch.cat(list(pooled.pooler_output))
    order = [int((rows["merger"] == row).all(dim=1).nonzero()[0]) for row in output]
    return per_unit[order]


@pytest.mark.parametrize(("family", "layer"), [("qwen2_vl", -1), ("qwen2_vl", 0),
                                               ("qwen2_5_vl", 0), ("qwen2_5_vl", 1),
                                               ("qwen3_vl", 0), ("qwen3_vl", -1)])  # fmt: skip
def test_qwen_received_attention_equals_eager_attention(family, layer):
    model, pipe, inputs = batch(family)
    _, signals = pipe.adapter.embed_with_signals(inputs, layer)
    expected = qwen_expected(model, inputs, layer)
    torch.testing.assert_close(torch.cat(signals.attention), expected, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("family", list(SIZES))
def test_sdpa_gives_the_same_signals_and_the_hook_changes_nothing(family):
    _, eager_pipe, inputs = batch(family, "eager")
    _, sdpa_pipe, _ = batch(family, "sdpa")
    _, sig_e = eager_pipe.adapter.embed_with_signals(inputs, -1)
    emb_s, sig_s = sdpa_pipe.adapter.embed_with_signals(inputs, -1)
    for a, b in zip(sig_e.attention, sig_s.attention, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
    plain = sdpa_pipe.adapter.embed(inputs)
    assert torch.equal(plain.inputs_embeds, emb_s.inputs_embeds)
    assert sdpa_pipe.model.config._attn_implementation == "sdpa"


def test_a_layer_out_of_range_is_named():
    _, pipe, inputs = batch("llava")
    with pytest.raises(ValueError, match="vision_layer"):
        pipe.adapter.embed_with_signals(inputs, 7)


@pytest.mark.parametrize(("family", "expected"), [("llava", "config"), ("qwen2_vl", -1)])
def test_default_signal_layer_is_the_one_feeding_the_projector(family, expected):
    model, processor = tiny_model(family)
    pipe = HFPipeline(model, processor, PruningConfig(0.25, scorer="visionzip"))
    inputs = pipe.prepare_inputs(random_image(), "What?")
    _, signals = pipe.embed(inputs)
    if expected == "config":
        expected = model.config.vision_feature_layer
    assert signals.layer == expected


def test_llava_features_are_the_projector_input():
    model, pipe, inputs = batch("llava")
    _, signals = pipe.adapter.embed_with_signals(inputs, -1, attention=False, features=True)
    assert signals.attention is None and signals.keys is None
    with torch.no_grad():
        out = model.model.vision_tower(inputs["pixel_values"], output_hidden_states=True)
    expected = out.hidden_states[model.config.vision_feature_layer][:, 1:]  # "default": no CLS
    torch.testing.assert_close(torch.stack(signals.features), expected)


@pytest.mark.parametrize("family", ["qwen2_vl", "qwen2_5_vl", "qwen3_vl"])
def test_qwen_features_are_the_merger_input_pooled_per_unit_in_output_order(family):
    model, pipe, inputs = batch(family)
    _, signals = pipe.adapter.embed_with_signals(inputs, -1, attention=False, features=True)
    seen = {}
    visual = model.model.visual
    handle = visual.merger.register_forward_hook(
        lambda m, args, out: seen.update(x=args[0], rows=out)
    )
    try:
        with torch.no_grad():
            pooled = model.model.get_image_features(
                inputs["pixel_values"], inputs["image_grid_thw"]
            )
    finally:
        handle.remove()
    unit = model.config.vision_config.spatial_merge_size**2
    per_unit = seen["x"].reshape(-1, unit, seen["x"].shape[-1]).mean(dim=1)
    output = torch.cat(list(pooled.pooler_output))
    order = [int((seen["rows"] == row).all(dim=1).nonzero()[0]) for row in output]
    torch.testing.assert_close(torch.cat(signals.features), per_unit[order])


def test_a_features_only_method_gets_no_attention_computed():
    from vissparse.strategies import TokenScorer

    class FeatureNorm(TokenScorer):
        name = "feature-norm"
        requires = frozenset({"vision_features"})

        def score(self, image_tokens, query, valid=None):
            raise AssertionError("score_context is used")

        def score_context(self, ctx):
            return ctx.vision_features.norm(dim=-1)

    model, processor = tiny_model("llava")
    pipe = HFPipeline(model, processor, PruningConfig(0.25, scorer=FeatureNorm()))
    details = pipe.generate(random_image(), "What?", max_new_tokens=1, return_details=True)
    assert details.metrics["n_kept"] == 4
    inputs = pipe.prepare_inputs(random_image(), "What?")
    _, signals = pipe.embed(inputs)
    assert signals.attention is None and signals.features is not None
