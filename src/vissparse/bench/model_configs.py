"""Shape-faithful model configs for benchmarks: real widths, reduced depth, random weights.

Each named config has the real model's widths, head counts, MLP sizes, vocabulary,
vision encoder, image resolution and image-token count. Depth is divided by
``depth_scale`` for BOTH the vision encoder and the language model (rounded, at least
one layer), so the share of the vision encoder in a prefill stays close to the real
model's; ``depth_scale=1`` builds the real depth (a GPU job). Weights are random and the
tokenizer is the offline character-level one of ``vissparse.testing`` (a question is
therefore more text tokens than with the real tokenizer, which makes measured speedups
slightly conservative).

Example:
    >>> sorted(MODEL_CONFIGS)[:3]
    ['gemma-3-12b', 'internvl3-8b', 'llava-1.5-7b']
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch

from vissparse.testing import (
    llava_processor,
    llava_tokenizer,
    qwen_processor,
    qwen_token_ids,
    qwen_tokenizer,
)


@dataclass(frozen=True)
class ModelShape:
    """The real shape of a model; see the module docstring.

    Attributes:
        name: config name, e.g. ``"llava-1.5-7b"``.
        family: ``"llava"``, ``"llava_onevision"``, ``"gemma3"``, ``"internvl"``,
            ``"qwen2_vl"``, ``"qwen3_vl"`` or ``"qwen3_5"``.
        reference: the HF model this shape is taken from.
        vision_layers: real vision-encoder depth.
        text_layers: real language-model depth.
        image_size: ``(height, width)`` of the benchmark image in pixels.
        vision: vision-config keyword arguments (without depth).
        text: text-config keyword arguments (without depth).
    """

    name: str
    family: str
    reference: str
    vision_layers: int
    text_layers: int
    image_size: tuple[int, int]
    vision: dict[str, Any]
    text: dict[str, Any]

    def depths(self, depth_scale: float) -> tuple[int, int]:
        """``(vision_layers, text_layers)`` after dividing by ``depth_scale``."""
        if not depth_scale >= 1:
            raise ValueError(f"`depth_scale` must be a number >= 1, got {depth_scale!r}")
        return (max(1, round(self.vision_layers / depth_scale)),
                max(1, round(self.text_layers / depth_scale)))  # fmt: skip


_QWEN_VISION = dict(embed_dim=1280, num_heads=16, mlp_ratio=4, patch_size=14,
                    spatial_merge_size=2, temporal_patch_size=2, in_channels=3)  # fmt: skip

MODEL_CONFIGS: dict[str, ModelShape] = {
    "llava-1.5-7b": ModelShape(
        name="llava-1.5-7b", family="llava", reference="llava-hf/llava-1.5-7b-hf",
        vision_layers=24, text_layers=32, image_size=(336, 336),
        vision=dict(hidden_size=1024, intermediate_size=4096, num_attention_heads=16,
                    image_size=336, patch_size=14, projection_dim=768),
        text=dict(hidden_size=4096, intermediate_size=11008, num_attention_heads=32,
                  num_key_value_heads=32, vocab_size=32064, max_position_embeddings=4096,
                  rms_norm_eps=1e-5),
    ),
    "qwen2-vl-7b": ModelShape(
        name="qwen2-vl-7b", family="qwen2_vl", reference="Qwen/Qwen2-VL-7B-Instruct",
        vision_layers=32, text_layers=28, image_size=(448, 448),
        vision=dict(_QWEN_VISION, hidden_size=3584),
        text=dict(hidden_size=3584, intermediate_size=18944, num_attention_heads=28,
                  num_key_value_heads=4, vocab_size=152064, max_position_embeddings=32768,
                  rms_norm_eps=1e-6, tie_word_embeddings=False),
    ),
    "qwen2-vl-2b": ModelShape(
        name="qwen2-vl-2b", family="qwen2_vl", reference="Qwen/Qwen2-VL-2B-Instruct",
        vision_layers=32, text_layers=28, image_size=(448, 448),
        vision=dict(_QWEN_VISION, hidden_size=1536),
        text=dict(hidden_size=1536, intermediate_size=8960, num_attention_heads=12,
                  num_key_value_heads=2, vocab_size=151936, max_position_embeddings=32768,
                  rms_norm_eps=1e-6, tie_word_embeddings=True),
    ),
    # SigLIP so400m/14 at 384 px (26 layers used), Qwen2-7B; anyres-max-9 over a 6 x 6 grid
    # of 384 px tiles. A 384 x 384 image: base tile + one crop tile, 729 + 27 x 28 tokens.
    "llava-onevision-7b": ModelShape(
        name="llava-onevision-7b", family="llava_onevision",
        reference="llava-hf/llava-onevision-qwen2-7b-ov-hf",
        vision_layers=26, text_layers=28, image_size=(384, 384),
        vision=dict(hidden_size=1152, intermediate_size=4304, num_attention_heads=16,
                    image_size=384, patch_size=14, vision_use_head=False),
        text=dict(hidden_size=3584, intermediate_size=18944, num_attention_heads=28,
                  num_key_value_heads=4, vocab_size=152128, max_position_embeddings=32768,
                  rms_norm_eps=1e-6, tie_word_embeddings=False, rope_theta=1e6),
    ),
    # SigLIP so400m/14 at 896 px (64 x 64 patches average-pooled to 256 tokens), Gemma 3
    # 12B: 5 sliding-window layers (1024) to each global one.
    "gemma-3-12b": ModelShape(
        name="gemma-3-12b", family="gemma3", reference="google/gemma-3-12b-it",
        vision_layers=27, text_layers=48, image_size=(896, 896),
        vision=dict(hidden_size=1152, intermediate_size=4304, num_attention_heads=16,
                    image_size=896, patch_size=14, vision_use_head=False),
        text=dict(hidden_size=3840, intermediate_size=15360, num_attention_heads=16,
                  num_key_value_heads=8, head_dim=256, vocab_size=262208,
                  max_position_embeddings=131072, rms_norm_eps=1e-6, sliding_window=1024,
                  query_pre_attn_scalar=256),
    ),
    # Qwen3-VL-8B: a 27-layer ViT of 16 px patches whose layers 8, 16 and 24 feed DeepStack
    # features to LM layers 0-2; Qwen3-8B with interleaved M-RoPE. 512 x 512 px: 256 tokens.
    "qwen3-vl-8b": ModelShape(
        name="qwen3-vl-8b", family="qwen3_vl", reference="Qwen/Qwen3-VL-8B-Instruct",
        vision_layers=27, text_layers=36, image_size=(512, 512),
        vision=dict(hidden_size=1152, intermediate_size=4304, num_heads=16, patch_size=16,
                    spatial_merge_size=2, temporal_patch_size=2, in_channels=3,
                    out_hidden_size=4096, num_position_embeddings=2304,
                    deepstack_visual_indexes=[8, 16, 24]),
        text=dict(hidden_size=4096, intermediate_size=12288, num_attention_heads=32,
                  num_key_value_heads=8, head_dim=128, vocab_size=151936,
                  max_position_embeddings=262144, rms_norm_eps=1e-6, tie_word_embeddings=False,
                  rope_parameters={"rope_type": "default", "rope_theta": 5e6,
                                   "mrope_section": [24, 20, 20], "mrope_interleaved": True}),
    ),
    # Qwen3.5-9B: 32 LM layers, 3 Gated DeltaNet (32 value / 16 key heads of 128) to each
    # gated full-attention layer (16 / 4 heads of 256, a quarter rotated); the vision
    # encoder as transformers' Qwen3.5 defaults (Qwen3-VL's ViT without DeepStack).
    "qwen3.5-9b": ModelShape(
        name="qwen3.5-9b", family="qwen3_5", reference="Qwen/Qwen3.5-9B",
        vision_layers=27, text_layers=32, image_size=(512, 512),
        vision=dict(hidden_size=1152, intermediate_size=4304, num_heads=16, patch_size=16,
                    spatial_merge_size=2, temporal_patch_size=2, in_channels=3,
                    out_hidden_size=4096, num_position_embeddings=2304),
        text=dict(hidden_size=4096, intermediate_size=12288, num_attention_heads=16,
                  num_key_value_heads=4, head_dim=256, vocab_size=248320,
                  max_position_embeddings=262144, rms_norm_eps=1e-6, tie_word_embeddings=False,
                  linear_conv_kernel_dim=4, linear_key_head_dim=128, linear_value_head_dim=128,
                  linear_num_key_heads=16, linear_num_value_heads=32,
                  rope_parameters={"rope_type": "default", "rope_theta": 1e7,
                                   "mrope_section": [11, 11, 10], "mrope_interleaved": True,
                                   "partial_rotary_factor": 0.25}),
    ),
    # InternVL3-8B: InternViT-300M (448 px tiles, [CLS]), pixel shuffle, Qwen2.5-7B. A
    # 448 x 896 image: two tiles and a thumbnail, 3 x 256 image tokens.
    "internvl3-8b": ModelShape(
        name="internvl3-8b", family="internvl", reference="OpenGVLab/InternVL3-8B-hf",
        vision_layers=24, text_layers=28, image_size=(448, 896),
        vision=dict(hidden_size=1024, intermediate_size=4096, num_attention_heads=16,
                    image_size=448, patch_size=14, use_qk_norm=False, norm_type="layer_norm"),
        text=dict(hidden_size=3584, intermediate_size=18944, num_attention_heads=28,
                  num_key_value_heads=4, vocab_size=151674, max_position_embeddings=32768,
                  rms_norm_eps=1e-6, tie_word_embeddings=False, rope_theta=1e6),
    ),
}  # fmt: skip


def deepstack_levels(indexes: list[int], real_depth: int, depth: int) -> list[int]:
    """DeepStack's vision layers on an encoder cut from ``real_depth`` to ``depth`` layers.

    Each level keeps its relative depth, distinct and within the encoder; an encoder with
    fewer layers than levels feeds one level per layer.

    Example:
        >>> deepstack_levels([8, 16, 24], 27, 3), deepstack_levels([8, 16, 24], 27, 27)
        ([0, 1, 2], [8, 16, 24])
    """
    k = len(indexes)
    if depth < k:
        return list(range(depth))
    return [min(round(i * depth / real_depth), depth - k + j) for j, i in enumerate(indexes)]


def _gemma3(shape: ModelShape, vision_layers: int, text_layers: int) -> tuple[Any, Any, Any]:
    import transformers as tf

    from vissparse.testing import GEMMA_CHAT_TEMPLATE, gemma_tokenizer

    tok = gemma_tokenizer()
    text = tf.Gemma3TextConfig(num_hidden_layers=text_layers, bos_token_id=tok.bos_token_id,
                               eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                               **shape.text)  # fmt: skip
    config = tf.Gemma3Config(
        text_config=text,
        vision_config=tf.SiglipVisionConfig(num_hidden_layers=vision_layers, **shape.vision),
        mm_tokens_per_image=256, boi_token_index=tok.boi_token_id,
        eoi_token_index=tok.eoi_token_id, image_token_index=tok.image_token_id,
    )  # fmt: skip
    size = shape.vision["image_size"]
    processor = tf.Gemma3Processor(
        image_processor=tf.Gemma3ImageProcessorPil(size={"height": size, "width": size}),
        tokenizer=tok, chat_template=GEMMA_CHAT_TEMPLATE, image_seq_length=256,
    )  # fmt: skip
    return config, tf.Gemma3ForConditionalGeneration, processor


def _onevision(shape: ModelShape, vision_layers: int, text_layers: int) -> tuple[Any, Any, Any]:
    import transformers as tf

    from vissparse.testing import onevision_parts

    tok = llava_tokenizer(extra=("<video>",))
    size = shape.vision["image_size"]
    pinpoints = [[size * i, size * j] for i in range(1, 7) for j in range(1, 7)]
    vision = tf.SiglipVisionConfig(num_hidden_layers=vision_layers, **shape.vision)
    text = tf.Qwen2Config(num_hidden_layers=text_layers, bos_token_id=tok.bos_token_id,
                          eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                          **shape.text)  # fmt: skip
    config, processor = onevision_parts(tok, vision, text, pinpoints)
    return config, tf.LlavaOnevisionForConditionalGeneration, processor


def _internvl(shape: ModelShape, vision_layers: int, text_layers: int) -> tuple[Any, Any, Any]:
    import transformers as tf

    from vissparse.testing import internvl_parts, internvl_tokenizer

    tok = internvl_tokenizer()
    vision = tf.InternVLVisionConfig(num_hidden_layers=vision_layers, **shape.vision)
    text = tf.Qwen2Config(num_hidden_layers=text_layers, eos_token_id=tok.eos_token_id,
                          pad_token_id=tok.pad_token_id, **shape.text)  # fmt: skip
    config, processor = internvl_parts(tok, vision, text, max_tiles=12)
    return config, tf.InternVLForConditionalGeneration, processor


def _qwen3_5(shape: ModelShape, vision_layers: int, text_layers: int) -> tuple[Any, Any, Any]:
    """Qwen3.5 at reduced depth keeps its pattern: every fourth LM layer full attention."""
    import transformers as tf

    from vissparse.testing import qwen3_5_tokenizer

    tok = qwen3_5_tokenizer()
    types = ["full_attention" if (i + 1) % 4 == 0 else "linear_attention"
             for i in range(text_layers)]  # fmt: skip
    if "full_attention" not in types:  # fewer than 4 layers: the last one attends
        types[-1] = "full_attention"
    text = dict(shape.text, num_hidden_layers=text_layers, layer_types=types,
                eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)  # fmt: skip
    vision = dict(shape.vision, depth=vision_layers)
    config = tf.Qwen3_5Config(text_config=text, vision_config=vision, **qwen_token_ids(tok))
    pixels = shape.image_size[0] * shape.image_size[1]
    processor = qwen_processor(tf.Qwen3VLProcessor, tok, pixels, pixels,
                               patch_size=vision["patch_size"])  # fmt: skip
    return config, tf.Qwen3_5ForConditionalGeneration, processor


def _llava(shape: ModelShape, vision_layers: int, text_layers: int) -> tuple[Any, Any, Any]:
    import transformers as tf

    tok = llava_tokenizer()
    size = shape.vision["image_size"]
    config = tf.LlavaConfig(
        vision_config=tf.CLIPVisionConfig(num_hidden_layers=vision_layers, **shape.vision),
        text_config=tf.LlamaConfig(num_hidden_layers=text_layers, bos_token_id=tok.bos_token_id,
                                   eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                                   **shape.text),
        image_token_index=tok.convert_tokens_to_ids("<image>"),
        vision_feature_layer=-2, vision_feature_select_strategy="default",
        image_seq_length=(size // shape.vision["patch_size"]) ** 2,
    )  # fmt: skip
    return config, tf.LlavaForConditionalGeneration, llava_processor(tok, size)


def _qwen(shape: ModelShape, vision_layers: int, text_layers: int) -> tuple[Any, Any, Any]:
    import transformers as tf

    tok = qwen_tokenizer()
    rope = {"rope_type": "default", "rope_theta": 1e6, "mrope_section": [16, 24, 24]}
    text = dict(shape.text, num_hidden_layers=text_layers, eos_token_id=tok.eos_token_id,
                pad_token_id=tok.pad_token_id)  # fmt: skip
    text.setdefault("rope_parameters", rope)
    ids: dict[str, Any] = qwen_token_ids(tok)
    vision = dict(shape.vision, depth=vision_layers)
    pixels = shape.image_size[0] * shape.image_size[1]
    if shape.family == "qwen3_vl":
        vision["deepstack_visual_indexes"] = deepstack_levels(
            shape.vision["deepstack_visual_indexes"], shape.vision_layers, vision_layers
        )
        config: Any = tf.Qwen3VLConfig(text_config=text, vision_config=vision, **ids)
        processor = qwen_processor(tf.Qwen3VLProcessor, tok, pixels, pixels,
                                   patch_size=vision["patch_size"])  # fmt: skip
        return config, tf.Qwen3VLForConditionalGeneration, processor
    config = tf.Qwen2VLConfig(text_config=text, vision_config=vision, **ids)
    processor = qwen_processor(tf.Qwen2VLProcessor, tok, pixels, pixels)
    return config, tf.Qwen2VLForConditionalGeneration, processor


def build_config(name: str, depth_scale: float = 8) -> tuple[Any, Any, Any, ModelShape]:
    """``(config, model class, processor, shape)`` of a named config, no weights built.

    Example:
        >>> config, _, _, shape = build_config("llava-1.5-7b", depth_scale=8)
        >>> config.text_config.num_hidden_layers, shape.text_layers
        (4, 32)
    """
    if name not in MODEL_CONFIGS:
        raise ValueError(f"`name` must be one of {sorted(MODEL_CONFIGS)}, got {name!r}")
    shape = MODEL_CONFIGS[name]
    vision_layers, text_layers = shape.depths(depth_scale)
    builder = {"llava": _llava, "llava_onevision": _onevision, "gemma3": _gemma3,
               "internvl": _internvl, "qwen3_5": _qwen3_5}.get(shape.family, _qwen)  # fmt: skip
    config, model_cls, processor = builder(shape, vision_layers, text_layers)
    return config, model_cls, processor, shape


def build_model(
    name: str,
    depth_scale: float = 8,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
    attn_implementation: str = "sdpa",
    seed: int = 0,
) -> tuple[Any, Any, ModelShape]:
    """``(model, processor, shape)`` for a named config, random weights, built offline.

    Example:
        >>> model, processor, shape = build_model("qwen2-vl-2b", depth_scale=100)  # doctest: +SKIP
        >>> MODEL_CONFIGS["qwen2-vl-2b"].depths(100)
        (1, 1)
    """
    config, model_cls, processor, shape = build_config(name, depth_scale)
    with torch.random.fork_rng(devices=[]), torch.device(device):
        torch.manual_seed(seed)
        model = model_cls._from_config(
            copy.deepcopy(config), dtype=dtype, attn_implementation=attn_implementation
        )
    model.eval()
    gen = model.generation_config
    gen.pad_token_id, gen.eos_token_id = processor.tokenizer.pad_token_id, None
    return model, processor, shape
