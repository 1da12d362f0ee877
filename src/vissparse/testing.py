"""Offline tiny models for tests and users: random weights, built in-process.

``tiny_model(family, seed=0)`` returns ``(model, processor)`` for each family of
:data:`FAMILY_NAMES`: a 2-layer, 64-wide language model, a
small vision encoder, the family's image processor (PIL backend, no torchvision) and a
character-level tokenizer built in-process with the family's special tokens and a
minimal chat template. Weights are drawn with std 0.2 (not HF's 0.02), so outputs depend
visibly on positions and tokens and equivalence tests can fail.

Example:
    >>> model, processor = tiny_model("llava", seed=1)
    >>> model.config.model_type
    'llava'
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
from PIL import Image

FAMILY_NAMES = (
    "qwen2_vl",
    "qwen2_5_vl",
    "qwen3_vl",
    "qwen3_vl_moe",
    "qwen3_5",
    "llava",
    "llava_next",
    "llava_onevision",
    "gemma3",
    "internvl",
)
INIT_STD = 0.2
CHARS = ["\n"] + [chr(i) for i in range(32, 127)]
QWEN_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>",
                 "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]  # fmt: skip
LLAVA_SPECIALS = ["<unk>", "<s>", "</s>", "<pad>", "<image>"]
GEMMA_SPECIALS = ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>",
                  "<start_of_image>", "<end_of_image>", "<image_soft_token>"]  # fmt: skip

QWEN_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for c in message['content'] %}"
    "{% if c['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
GEMMA_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}<start_of_turn>"
    "{{ 'model' if message['role'] == 'assistant' else message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for c in message['content'] %}"
    "{% if c['type'] == 'image' %}<start_of_image>{% elif c['type'] == 'text' %}{{ c['text'] }}"
    "{% endif %}{% endfor %}{% endif %}<end_of_turn>\n{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)
INTERNVL_SPECIALS = [*QWEN_SPECIALS, "<img>", "</img>", "<IMG_CONTEXT>", "<video>"]
INTERNVL_CHAT_TEMPLATE = QWEN_CHAT_TEMPLATE.replace(
    "<|vision_start|><|image_pad|><|vision_end|>", "<IMG_CONTEXT>\n"
)
LLAVA_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}USER: {% else %}ASSISTANT: {% endif %}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for c in message['content'] %}"
    "{% if c['type'] == 'image' %}<image>\n{% elif c['type'] == 'text' %}{{ c['text'] }}"
    "{% endif %}{% endfor %}{% endif %}"
    "{% if message['role'] == 'user' %} {% else %}</s>{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)


def char_tokenizer(
    specials: list[str], chat_template: str, *, extra: dict[str, str] | None = None,
    **special_tokens: str,
) -> Any:  # fmt: skip
    """A character-level fast tokenizer (with offsets) plus the given special tokens.

    Printable ASCII and newline only: other characters are dropped, so use ASCII prompts
    with tiny models.

    Example:
        >>> tok = char_tokenizer(["<image>"], LLAVA_CHAT_TEMPLATE, pad_token="<image>")
        >>> tok.decode(tok("hi")["input_ids"])
        'hi'
    """
    from tokenizers import Tokenizer, decoders, models

    vocab = {c: i for i, c in enumerate(CHARS)}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=None, fuse_unk=False))
    backend.decoder = decoders.Fuse()
    return wrap_tokenizer(backend, specials, chat_template, extra=extra, **special_tokens)


def wrap_tokenizer(
    backend: Any, specials: list[str], chat_template: str, *, extra: Any = None,
    **special_tokens: str,
) -> Any:  # fmt: skip
    """A left-padding fast tokenizer around a ``tokenizers`` backend.

    It gets the special tokens ``specials`` (named ones set from ``special_tokens``, e.g.
    ``eos_token="</s>"``) and the chat template; ``extra`` names model-specific special
    tokens that are saved with it (Gemma 3's ``boi_token``, ...).
    """
    from transformers import PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast(tokenizer_object=backend, extra_special_tokens=extra or {})
    tok.add_special_tokens({"additional_special_tokens": specials})
    for name, value in special_tokens.items():
        setattr(tok, name, value)
    tok.padding_side = "left"
    tok.chat_template = chat_template
    return tok


def _text_config(tok: Any, mrope: bool) -> dict[str, Any]:
    cfg: dict[str, Any] = dict(
        vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
        initializer_range=INIT_STD, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
    )  # fmt: skip
    if mrope:  # mrope_section must sum to head_dim / 2 = 8
        cfg["rope_parameters"] = {"rope_type": "default", "rope_theta": 10000.0,
                                  "mrope_section": [2, 3, 3]}  # fmt: skip
    return cfg


def qwen_tokenizer() -> Any:
    """The offline Qwen-style tokenizer (special tokens, chat template, left padding)."""
    return char_tokenizer(QWEN_SPECIALS, QWEN_CHAT_TEMPLATE, pad_token="<|endoftext|>",
                          eos_token="<|im_end|>")  # fmt: skip


def qwen3_5_tokenizer() -> Any:
    """The offline Qwen3.5 tokenizer: ``Qwen3_5Tokenizer`` over byte-level characters.

    transformers loads every ``qwen3_5`` checkpoint's tokenizer as ``Qwen3_5Tokenizer``
    (its byte-level pre-tokenizer), whatever class was saved; built as that class, the
    character-level vocabulary survives ``save_pretrained`` / ``from_pretrained``.
    """
    import transformers as tf

    def byte_char(c: str) -> str:  # GPT-2's byte-to-unicode map, for ASCII
        return c if 33 <= ord(c) <= 126 else chr(256 + ord(c))

    vocab = {byte_char(c): i for i, c in enumerate(CHARS)}
    unk: Any = None  # every character is in the vocabulary
    tok = tf.Qwen3_5Tokenizer(vocab=vocab, merges=[], unk_token=unk, eos_token="<|im_end|>",
                              pad_token="<|endoftext|>")  # fmt: skip
    tok.add_special_tokens({"additional_special_tokens": QWEN_SPECIALS})
    tok.padding_side = "left"
    tok.chat_template = QWEN_CHAT_TEMPLATE
    return tok


def qwen_token_ids(tok: Any) -> dict[str, Any]:
    """The Qwen config's special-token ids, read off ``tok``.

    Example:
        >>> sorted(qwen_token_ids(qwen_tokenizer()))[0]
        'image_token_id'
    """
    pairs = [("image", "image_pad"), ("video", "video_pad"),
             ("vision_start", "vision_start"), ("vision_end", "vision_end")]  # fmt: skip
    return {f"{name}_token_id": tok.convert_tokens_to_ids(f"<|{t}|>") for name, t in pairs}


def qwen_processor(
    processor_cls: Any, tok: Any, min_pixels: int, max_pixels: int, patch_size: int = 14
) -> Any:
    """An image-only Qwen processor (PIL image processor, no torchvision)."""
    import transformers as tf

    from vissparse.adapters.qwen2_vl import image_only_processor_class

    image_processor = tf.Qwen2VLImageProcessorPil(
        size={"shortest_edge": min_pixels, "longest_edge": max_pixels}, patch_size=patch_size,
        temporal_patch_size=2, merge_size=2,
    )  # fmt: skip
    return image_only_processor_class(processor_cls)(
        image_processor=image_processor, tokenizer=tok, chat_template=QWEN_CHAT_TEMPLATE
    )


def llava_tokenizer(extra: tuple[str, ...] = ()) -> Any:
    """The offline LLaVA-style tokenizer (special tokens, chat template, left padding).

    ``extra`` special tokens come after the usual ones (LLaVA-OneVision's ``<video>``).
    """
    return char_tokenizer([*LLAVA_SPECIALS, *extra], LLAVA_CHAT_TEMPLATE, unk_token="<unk>",
                          bos_token="<s>", eos_token="</s>", pad_token="<pad>")  # fmt: skip


def llava_processor(
    tok: Any, size: int, pinpoints: list[list[int]] | None = None, patch_size: int = 14
) -> Any:
    """A LLaVA-1.5 processor, or with ``pinpoints`` a LLaVA-NeXT one (PIL backends)."""
    import transformers as tf

    crop = {"height": size, "width": size}
    kwargs = dict(tokenizer=tok, patch_size=patch_size, vision_feature_select_strategy="default",
                  num_additional_image_tokens=1, chat_template=LLAVA_CHAT_TEMPLATE)  # fmt: skip
    if pinpoints is None:
        image_processor = tf.CLIPImageProcessorPil(size={"shortest_edge": size}, crop_size=crop)
        return tf.LlavaProcessor(image_processor=image_processor, **kwargs)
    next_processor = tf.LlavaNextImageProcessorPil(
        size={"shortest_edge": size}, crop_size=crop, image_grid_pinpoints=pinpoints
    )
    return tf.LlavaNextProcessor(image_processor=next_processor, **kwargs)


def _qwen(family: str) -> tuple[Any, Any]:
    import transformers as tf

    tok = qwen3_5_tokenizer() if family == "qwen3_5" else qwen_tokenizer()
    text = _text_config(tok, mrope=True)
    if family.startswith("qwen3_vl"):
        return _qwen3_vl(tok, text, moe=family == "qwen3_vl_moe")
    if family == "qwen3_5":
        return _qwen3_5(tok, text)
    vision: dict[str, Any] = dict(num_heads=2, patch_size=14, spatial_merge_size=2,
                                  temporal_patch_size=2, in_channels=3,
                                  initializer_range=INIT_STD)  # fmt: skip
    config_cls: Any
    model_cls: Any
    processor_cls: Any
    if family == "qwen2_vl":
        vision.update(depth=2, embed_dim=32, hidden_size=64, mlp_ratio=2)
        config_cls, model_cls = tf.Qwen2VLConfig, tf.Qwen2VLForConditionalGeneration
        processor_cls = tf.Qwen2VLProcessor
    else:
        vision.update(depth=2, hidden_size=32, intermediate_size=64, out_hidden_size=64,
                      window_size=56, fullatt_block_indexes=[1])  # fmt: skip
        config_cls, model_cls = tf.Qwen2_5_VLConfig, tf.Qwen2_5_VLForConditionalGeneration
        processor_cls = tf.Qwen2_5_VLProcessor
    config = config_cls(text_config=text, vision_config=vision, **qwen_token_ids(tok))
    return (config, model_cls), qwen_processor(processor_cls, tok, 56 * 56, 112 * 112)


def _qwen3_vl(tok: Any, text: dict[str, Any], moe: bool) -> tuple[Any, Any]:
    """Qwen3-VL: 16 px patches, interleaved M-RoPE, DeepStack from both vision layers.

    ``moe``: Qwen3-VL-MoE, whose language model routes each token to 2 of 4 experts.
    """
    import transformers as tf

    vision = dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, patch_size=16,
                  spatial_merge_size=2, temporal_patch_size=2, out_hidden_size=64,
                  num_position_embeddings=64, deepstack_visual_indexes=[0, 1],
                  initializer_range=INIT_STD)  # fmt: skip
    text = dict(text, head_dim=16)
    text["rope_parameters"] = dict(text["rope_parameters"], mrope_interleaved=True)
    config_cls: Any = tf.Qwen3VLConfig
    model_cls: Any = tf.Qwen3VLForConditionalGeneration
    if moe:
        text.update(num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32)
        config_cls, model_cls = tf.Qwen3VLMoeConfig, tf.Qwen3VLMoeForConditionalGeneration
    config = config_cls(text_config=text, vision_config=vision, **qwen_token_ids(tok))
    processor = qwen_processor(tf.Qwen3VLProcessor, tok, 64 * 64, 128 * 128, patch_size=16)
    return (config, model_cls), processor


def _qwen3_5(tok: Any, text: dict[str, Any]) -> tuple[Any, Any]:
    """Qwen3.5: Qwen3-VL's ViT (no DeepStack); a Gated DeltaNet layer, then full attention.

    Half of each head is rotated (the real model rotates a quarter of 256), with
    interleaved M-RoPE over those dimensions.
    """
    import transformers as tf

    vision = dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, patch_size=16,
                  spatial_merge_size=2, temporal_patch_size=2, out_hidden_size=64,
                  num_position_embeddings=64, initializer_range=INIT_STD)  # fmt: skip
    text = dict(text, head_dim=16, partial_rotary_factor=0.5,
                layer_types=["linear_attention", "full_attention"], linear_conv_kernel_dim=4,
                linear_key_head_dim=16, linear_value_head_dim=16, linear_num_key_heads=2,
                linear_num_value_heads=4)  # fmt: skip
    text["rope_parameters"] = {"rope_type": "default", "rope_theta": 10000.0,
                               "mrope_section": [2, 1, 1], "mrope_interleaved": True}  # fmt: skip
    config = tf.Qwen3_5Config(text_config=text, vision_config=vision, **qwen_token_ids(tok))
    processor = qwen_processor(tf.Qwen3VLProcessor, tok, 64 * 64, 128 * 128, patch_size=16)
    return (config, tf.Qwen3_5ForConditionalGeneration), processor


def _onevision() -> tuple[Any, Any]:
    """LLaVA-OneVision: a SigLIP tower, a Qwen2 LM, anyres-max-9 tiles of 28 px."""
    import transformers as tf

    tok = llava_tokenizer(extra=("<video>",))
    size = 28
    vision = tf.SiglipVisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        image_size=size, patch_size=14, vision_use_head=False,
    )  # fmt: skip
    # 4 x 4 tiles exceed anyres-max-9: such an image's rows are downsampled
    pinpoints = [[size, 2 * size], [2 * size, size], [2 * size, 2 * size], [4 * size, 4 * size]]
    text = tf.Qwen2Config(**_text_config(tok, False))
    config, processor = onevision_parts(tok, vision, text, pinpoints)
    return (config, tf.LlavaOnevisionForConditionalGeneration), processor


def onevision_parts(
    tok: Any, vision: Any, text: Any, pinpoints: list[list[int]]
) -> tuple[Any, Any]:
    """A LLaVA-OneVision config and its image-only processor, for tiny and benchmark models.

    ``vision`` is a SigLIP config, ``text`` a Qwen2 config; tiles follow anyres-max-9 over
    ``pinpoints``.
    """
    import transformers as tf

    from vissparse.adapters.qwen2_vl import image_only_processor_class

    size, patch = int(vision.image_size), int(vision.patch_size)
    config = tf.LlavaOnevisionConfig(
        vision_config=vision, text_config=text,
        image_token_index=tok.convert_tokens_to_ids("<image>"),
        video_token_index=tok.convert_tokens_to_ids("<video>"), vision_feature_layer=-1,
        vision_feature_select_strategy="full", image_grid_pinpoints=pinpoints,
        vision_aspect_ratio="anyres_max_9",
    )  # fmt: skip
    image_processor = tf.LlavaOnevisionImageProcessorPil(
        size={"height": size, "width": size}, image_grid_pinpoints=pinpoints
    )
    processor = image_only_processor_class(tf.LlavaOnevisionProcessor)(
        image_processor=image_processor, tokenizer=tok, chat_template=LLAVA_CHAT_TEMPLATE,
        num_image_tokens=(size // patch) ** 2, vision_feature_select_strategy="full",
    )  # fmt: skip
    return config, processor


def gemma_tokenizer() -> Any:
    """The offline Gemma-3-style tokenizer, with its image special tokens named."""
    names = {"boi_token": "<start_of_image>", "eoi_token": "<end_of_image>",
             "image_token": "<image_soft_token>"}  # fmt: skip
    return char_tokenizer(GEMMA_SPECIALS, GEMMA_CHAT_TEMPLATE, extra=names, pad_token="<pad>",
                          eos_token="<eos>", bos_token="<bos>", unk_token="<unk>")  # fmt: skip


def _gemma3() -> tuple[Any, Any]:
    """Gemma 3: a SigLIP tower of 8 x 8 patches average-pooled to 4 x 4 image tokens."""
    import transformers as tf

    tok = gemma_tokenizer()
    text = dict(_text_config(tok, False), head_dim=16, query_pre_attn_scalar=16,
                sliding_window=512)  # fmt: skip
    vision = tf.SiglipVisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        image_size=112, patch_size=14, vision_use_head=False,
    )  # fmt: skip
    config = tf.Gemma3Config(
        text_config=tf.Gemma3TextConfig(**text), vision_config=vision, mm_tokens_per_image=16,
        boi_token_index=tok.boi_token_id, eoi_token_index=tok.eoi_token_id,
        image_token_index=tok.image_token_id,
    )  # fmt: skip
    processor = tf.Gemma3Processor(
        image_processor=tf.Gemma3ImageProcessorPil(size={"height": 112, "width": 112}),
        tokenizer=tok, chat_template=GEMMA_CHAT_TEMPLATE, image_seq_length=16,
    )  # fmt: skip
    return (config, tf.Gemma3ForConditionalGeneration), processor


def internvl_tokenizer() -> Any:
    """The offline InternVL3-style tokenizer (Qwen's tokens plus the image tokens, named)."""
    names = {"start_image_token": "<img>", "end_image_token": "</img>",
             "context_image_token": "<IMG_CONTEXT>", "video_token": "<video>"}  # fmt: skip
    return char_tokenizer(INTERNVL_SPECIALS, INTERNVL_CHAT_TEMPLATE, extra=names,
                          pad_token="<|endoftext|>", eos_token="<|im_end|>")  # fmt: skip


def internvl_parts(
    tok: Any, vision: Any, text: Any, max_tiles: int
) -> tuple[Any, Any]:  # fmt: skip
    """An InternVL config and its image-only processor, for tiny and benchmark models.

    ``vision`` is an InternViT config, ``text`` a Qwen2 config; images are cut into up to
    ``max_tiles`` tiles plus a thumbnail.
    """
    import transformers as tf

    from vissparse.adapters.qwen2_vl import image_only_processor_class

    size, patch = (v if isinstance(v, int) else int(v[0])
                   for v in (vision.image_size, vision.patch_size))  # fmt: skip
    tokens = (size // patch // 2) ** 2  # pixel shuffle folds 2 x 2 patches into a token
    config = tf.InternVLConfig(
        vision_config=vision, text_config=text, downsample_ratio=0.5, image_seq_length=tokens,
        image_token_id=tok.convert_tokens_to_ids("<IMG_CONTEXT>"), vision_feature_layer=-1,
        vision_feature_select_strategy="default",
    )  # fmt: skip
    image_processor = tf.GotOcr2ImageProcessorPil(
        size={"height": size, "width": size}, crop_to_patches=True, min_patches=1,
        max_patches=max_tiles,
    )  # fmt: skip
    processor = image_only_processor_class(tf.InternVLProcessor)(
        image_processor=image_processor, tokenizer=tok, chat_template=INTERNVL_CHAT_TEMPLATE,
        image_seq_length=tokens,
    )  # fmt: skip
    return config, processor


def _internvl() -> tuple[Any, Any]:
    """InternVL: an InternViT of 8 x 8 patches a tile (16 tokens), up to 4 tiles + thumbnail."""
    import transformers as tf

    tok = internvl_tokenizer()
    vision = tf.InternVLVisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        image_size=[112, 112], patch_size=[14, 14], use_qk_norm=True, initializer_range=INIT_STD,
    )  # fmt: skip
    text = tf.Qwen2Config(**_text_config(tok, False))
    config, processor = internvl_parts(tok, vision, text, max_tiles=4)
    return (config, tf.InternVLForConditionalGeneration), processor


def _llava(family: str) -> tuple[Any, Any]:
    import transformers as tf

    if family == "internvl":
        return _internvl()
    if family == "gemma3":
        return _gemma3()
    if family == "llava_onevision":
        return _onevision()
    tok = llava_tokenizer()
    size = 56 if family == "llava" else 28
    vision = tf.CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                 num_attention_heads=2, image_size=size, patch_size=14,
                                 projection_dim=32, initializer_range=INIT_STD)  # fmt: skip
    common = dict(vision_config=vision, text_config=tf.LlamaConfig(**_text_config(tok, False)),
                  image_token_index=tok.convert_tokens_to_ids("<image>"), vision_feature_layer=-2,
                  vision_feature_select_strategy="default",
                  image_seq_length=(size // 14) ** 2)  # fmt: skip
    if family == "llava":
        config: Any = tf.LlavaConfig(**common)
        return (config, tf.LlavaForConditionalGeneration), llava_processor(tok, size)
    pinpoints = [[size, 2 * size], [2 * size, size], [2 * size, 2 * size]]
    config = tf.LlavaNextConfig(image_grid_pinpoints=pinpoints, **common)
    return (config, tf.LlavaNextForConditionalGeneration), llava_processor(tok, size, pinpoints)


def tiny_model(
    family: str,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    attn_implementation: str = "sdpa",
    text_layers: int | None = None,
) -> tuple[Any, Any]:
    """A small random-weight ``(model, processor)`` of ``family``, built offline.

    Different seeds give different weights; the processor is the same for every seed.
    ``text_layers`` changes the language model's depth (2 by default).

    Example:
        >>> model, processor = tiny_model("qwen2_vl")
        >>> type(model).__name__
        'Qwen2VLForConditionalGeneration'
    """
    if family not in FAMILY_NAMES:
        raise ValueError(f"`family` must be one of {FAMILY_NAMES}, got {family!r}")
    (config, model_cls), processor = (_qwen if family.startswith("qwen") else _llava)(family)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        config = copy.deepcopy(config)
        if text_layers is not None:
            text = config.text_config
            text.num_hidden_layers = text_layers
            types = getattr(text, "layer_types", None)
            if types is not None:  # the family's pattern, repeated (Qwen3.5: linear, full)
                text.layer_types = [types[i % len(types)] for i in range(text_layers)]
        model = model_cls(config)
        if family == "gemma3":  # its projection starts at zero: image features would be 0
            torch.nn.init.normal_(model.model.multi_modal_projector.mm_input_projection_weight,
                                  std=INIT_STD)  # fmt: skip
    model = model.to(dtype).eval()
    model.set_attn_implementation(attn_implementation)
    greedy_defaults(model, processor.tokenizer)
    return model, processor


def greedy_defaults(model: Any, tok: Any) -> None:
    """Set ``model``'s generation config to greedy decoding with ``tok``'s special ids."""
    gen = model.generation_config
    gen.pad_token_id, gen.eos_token_id, gen.bos_token_id = (
        tok.pad_token_id, tok.eos_token_id, tok.bos_token_id,
    )  # fmt: skip
    gen.do_sample = False


def random_image(height: int = 64, width: int = 80, seed: int = 0) -> Image.Image:
    """A random RGB PIL image.

    Example:
        >>> random_image(10, 20).size
        (20, 10)
    """
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
