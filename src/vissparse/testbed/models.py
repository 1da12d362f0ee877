"""The testbed's miniature VLMs: real HF classes, real image processors, word tokenizers.

``build_model(family, seed)`` returns an untrained ``(model, processor)`` of
``LlavaForConditionalGeneration`` (CLIP tower + Llama) or
``Qwen2VLForConditionalGeneration`` (dynamic-resolution ViT with the 2x2 patch merger and
M-RoPE). Both see a 128x128 scene as 256 image tokens: LLaVA cuts 8x8-pixel patches;
Qwen2-VL cuts 4x4-pixel patches and merges 2x2 of them into one token. The sizes are
data (:data:`ARCHITECTURES`); the tokenizer is word-level with the family's special
tokens and chat template.

Example:
    >>> model, processor = build_model("llava")
    >>> type(model).__name__, processor.tokenizer("What color is it?")["input_ids"][:2]
    ('LlavaForConditionalGeneration', [...])
"""

from __future__ import annotations

import copy
from typing import Any

import torch

from vissparse.testbed.questions import ANSWERS
from vissparse.testbed.scenes import IMAGE_SIZE, PLURALS
from vissparse.testing import (
    LLAVA_CHAT_TEMPLATE,
    LLAVA_SPECIALS,
    QWEN_CHAT_TEMPLATE,
    QWEN_SPECIALS,
    greedy_defaults,
    llava_processor,
    qwen_processor,
    qwen_token_ids,
    wrap_tokenizer,
)

TESTBED_FAMILIES = ("llava", "qwen2_vl")
# registered methods that cannot run on the testbed checkpoints, and why: the default
# evaluation leaves them out and naming one is refused
TESTBED_LACKS = {
    "trim": "it ranks tokens in CLIP's text-aligned space, and the testbed's vision towers "
    "were trained without a text tower (they have no such space)",
}


def testbed_scorers() -> list[str]:
    """The registered scorers that can run on the testbed checkpoints (not ``TESTBED_LACKS``).

    Example:
        >>> "random" in testbed_scorers(), "trim" in testbed_scorers()
        (True, False)
    """
    from vissparse.strategies.registry import SCORERS

    return [name for name in SCORERS.names() if name not in TESTBED_LACKS]


# The module whose output is the image tokens the language model sees, per family, in
# raster order over a 16 x 16 grid (training attaches its auxiliary head there).
IMAGE_TOKEN_MODULE = {"llava": "model.multi_modal_projector", "qwen2_vl": "model.visual.merger"}

# Every word of the templates and answers, the chat roles, punctuation; lower case.
WORDS = sorted(
    {w for answers in ANSWERS.values() for w in answers}
    | set(PLURALS.values())
    | set(
        "what color colour shape is the object objects there a an how many are left of above "
        "below right on or in user assistant system image picture this it which side".split()
    )
    | set("?:.,!'\"-")
)

ARCHITECTURES: dict[str, dict[str, Any]] = {
    "llava": {
        "image_token_gain": 20.0,
        "vision": dict(
            hidden_size=128,
            intermediate_size=512,
            num_hidden_layers=4,
            num_attention_heads=4,
            patch_size=8,
        ),
        "text": dict(
            hidden_size=192,
            intermediate_size=512,
            num_hidden_layers=4,
            num_attention_heads=6,
            num_key_value_heads=6,
        ),
    },
    "qwen2_vl": {
        "image_token_gain": 20.0,
        # two layers of two heads: its 1024 patches per image made the vision tower's
        # attention most of a training step at three layers of four heads of 16
        "vision": dict(embed_dim=64, depth=2, num_heads=2, mlp_ratio=4, patch_size=4),
        "text": dict(
            hidden_size=192,
            intermediate_size=512,
            num_hidden_layers=4,
            num_attention_heads=6,
            num_key_value_heads=6,
            mrope_section=[4, 6, 6],
        ),  # mrope_section sums to head_dim / 2 = 16
    },
}


def word_tokenizer(specials: list[str], chat_template: str, **special_tokens: str) -> Any:
    """A lower-casing word-level fast tokenizer (with offsets) over :data:`WORDS`.

    Words outside the vocabulary become the unknown token (the first special).

    Example:
        >>> tok = word_tokenizer(LLAVA_SPECIALS, LLAVA_CHAT_TEMPLATE, unk_token="<unk>")
        >>> tok.decode(tok("What color?")["input_ids"])
        'what color ?'
    """
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

    vocab = {tok: i for i, tok in enumerate([*specials, *WORDS])}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token=specials[0]))
    backend.normalizer = normalizers.Lowercase()
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    return wrap_tokenizer(backend, specials, chat_template, **special_tokens)


def _llava(arch: dict[str, Any]) -> tuple[Any, Any, Any]:
    import transformers as tf

    tok = word_tokenizer(LLAVA_SPECIALS, LLAVA_CHAT_TEMPLATE, unk_token="<unk>",
                         bos_token="<s>", eos_token="</s>", pad_token="<pad>")  # fmt: skip
    patch = arch["vision"]["patch_size"]
    vision = tf.CLIPVisionConfig(image_size=IMAGE_SIZE, **arch["vision"])
    text = tf.LlamaConfig(vocab_size=len(tok), **_text_ids(tok), **arch["text"])
    config = tf.LlavaConfig(
        vision_config=vision, text_config=text,
        image_token_index=tok.convert_tokens_to_ids("<image>"),
        vision_feature_layer=-1, vision_feature_select_strategy="default",
        image_seq_length=(IMAGE_SIZE // patch) ** 2,
    )  # fmt: skip
    processor = llava_processor(tok, IMAGE_SIZE, patch_size=patch)
    return config, tf.LlavaForConditionalGeneration, processor


def _qwen2_vl(arch: dict[str, Any]) -> tuple[Any, Any, Any]:
    import transformers as tf

    tok = word_tokenizer(QWEN_SPECIALS, QWEN_CHAT_TEMPLATE, pad_token="<|endoftext|>",
                         eos_token="<|im_end|>")  # fmt: skip
    text_arch = dict(arch["text"])
    section = text_arch.pop("mrope_section")
    text = dict(vocab_size=len(tok), **_text_ids(tok), **text_arch,
                rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                                 "mrope_section": section})  # fmt: skip
    vision = dict(hidden_size=text_arch["hidden_size"], spatial_merge_size=2,
                  temporal_patch_size=2, in_channels=3, **arch["vision"])  # fmt: skip
    config = tf.Qwen2VLConfig(text_config=text, vision_config=vision, **qwen_token_ids(tok))
    pixels = IMAGE_SIZE * IMAGE_SIZE
    processor = qwen_processor(tf.Qwen2VLProcessor, tok, pixels, pixels,
                               patch_size=arch["vision"]["patch_size"])  # fmt: skip
    return config, tf.Qwen2VLForConditionalGeneration, processor


def _text_ids(tok: Any) -> dict[str, Any]:
    return dict(eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                bos_token_id=tok.bos_token_id, max_position_embeddings=1024)  # fmt: skip


def _scale_image_tokens(model: Any, family: str, gain: float) -> None:
    """Multiply the initial weights of the projector's last layer by ``gain``.

    At the default initialisation the image tokens come out about as small as the word
    embeddings, and the language model's attention soon washes them out; starting them
    larger (as the image tokens of real LLaVA models are, next to their word embeddings)
    lets each keep what it shows. A diagnostic run with ideal image tokens of unit scale
    per dimension learned to find objects where tokens at the default scale did not.
    """
    layers = [m for m in model.get_submodule(IMAGE_TOKEN_MODULE[family]).modules()
              if isinstance(m, torch.nn.Linear)]  # fmt: skip
    with torch.no_grad():
        layers[-1].weight.mul_(gain)
        if layers[-1].bias is not None:
            layers[-1].bias.mul_(gain)


def architecture(family: str, changes: dict[str, Any] | None = None) -> dict[str, Any]:
    """``ARCHITECTURES[family]`` with ``changes`` as ``{"vision.depth": 3, ...}``.

    Example:
        >>> architecture("qwen2_vl", {"vision.depth": 3})["vision"]["depth"]
        3
    """
    if family not in TESTBED_FAMILIES:
        raise ValueError(f"`family` must be one of {TESTBED_FAMILIES}, got {family!r}")
    arch = copy.deepcopy(ARCHITECTURES[family])
    for key, value in (changes or {}).items():
        part, _, name = key.rpartition(".")
        where = arch.get(part) if part else arch
        if not isinstance(where, dict) or name not in where:
            raise ValueError(f"`architecture` key {key!r} is not one of {arch_keys(family)}")
        where[name] = value
    return arch


def arch_keys(family: str) -> list[str]:
    """The keys :func:`architecture` can change, as ``"vision.depth"``.

    Example:
        >>> "text.num_hidden_layers" in arch_keys("llava")
        True
    """
    return list(flat_architecture(ARCHITECTURES[family]))


def flat_architecture(arch: dict[str, Any]) -> dict[str, Any]:
    """An architecture dict keyed as :func:`architecture` takes its changes.

    Example:
        >>> flat_architecture({"image_token_gain": 20.0, "vision": {"depth": 2}})
        {'image_token_gain': 20.0, 'vision.depth': 2}
    """
    flat: dict[str, Any] = {}
    for part, value in arch.items():
        if isinstance(value, dict):
            flat.update({f"{part}.{name}": v for name, v in value.items()})
        else:
            flat[part] = value
    return flat


def build_model(
    family: str, seed: int = 0, changes: dict[str, Any] | None = None
) -> tuple[Any, Any]:
    """An untrained testbed ``(model, processor)`` of ``family`` ("llava" or "qwen2_vl").

    ``changes`` alter :data:`ARCHITECTURES` (see :func:`architecture`).

    Example:
        >>> model, _ = build_model("qwen2_vl", seed=1)
        >>> sum(p.numel() for p in model.parameters()) < 6_000_000
        True
    """
    arch = architecture(family, changes)
    config, model_cls, processor = (_llava if family == "llava" else _qwen2_vl)(arch)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = model_cls(copy.deepcopy(config))
    _scale_image_tokens(model, family, arch["image_token_gain"])
    greedy_defaults(model, processor.tokenizer)
    model.generation_config.max_new_tokens = 4
    return model.eval(), processor
