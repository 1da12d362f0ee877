"""A tiny random-weight CLIP model and tokenizer, built offline, for tests and examples.

Its vision tower has the shape of :func:`vissparse.testing.tiny_model`'s ``"llava"``
tower (width 32, 56x56 images, 14-pixel patches), so a test can copy that tower into it
and get the text-aligned space of the tiny LLaVA (:mod:`vissparse.hf.clip_space`).
"""

from __future__ import annotations

from typing import Any

import torch

from vissparse.testing import CHARS, INIT_STD, char_tokenizer

CLIP_SPECIALS = ["<|startoftext|>", "<|endoftext|>"]


def clip_tokenizer() -> Any:
    """A character-level CLIP-style tokenizer: start and end-of-text tokens, right padding.

    Example:
        >>> tok = clip_tokenizer()
        >>> ids = tok(["ab"])["input_ids"][0]
        >>> tok.convert_ids_to_tokens([ids[0], ids[-1]])
        ['<|startoftext|>', '<|endoftext|>']
    """
    from tokenizers import processors

    bos, eos = CLIP_SPECIALS
    tok = char_tokenizer(CLIP_SPECIALS, "", bos_token=bos, eos_token=eos, pad_token=eos)
    ids = [(t, tok.convert_tokens_to_ids(t)) for t in CLIP_SPECIALS]
    tok.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}", special_tokens=ids
    )
    tok.padding_side = "right"  # the pooled token is the first end-of-text token
    return tok


def tiny_clip(vision_model: Any = None, seed: int = 0) -> tuple[Any, Any]:
    """A small random-weight ``(CLIPModel, tokenizer)``.

    ``vision_model`` (a ``CLIPVisionModel``, e.g. a tiny LLaVA's ``vision_tower``) gives
    the config and weights of the vision tower, as LLaVA-1.5 carries CLIP's.

    Example:
        >>> model, tok = tiny_clip()
        >>> model.config.vision_config.hidden_size, model.config.projection_dim
        (32, 16)
    """
    import transformers as tf

    tok = clip_tokenizer()
    text = tf.CLIPTextConfig(
        vocab_size=len(CHARS) + len(CLIP_SPECIALS), hidden_size=32, intermediate_size=64,
        num_hidden_layers=2, num_attention_heads=2, max_position_embeddings=64,
        eos_token_id=tok.eos_token_id, bos_token_id=tok.bos_token_id,
        pad_token_id=tok.pad_token_id, initializer_range=INIT_STD,
    )  # fmt: skip
    if vision_model is None:
        vision = tf.CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                     num_attention_heads=2, image_size=56, patch_size=14,
                                     initializer_range=INIT_STD)  # fmt: skip
    else:
        vision = vision_model.config
    config = tf.CLIPConfig(text_config=text.to_dict(), vision_config=vision.to_dict(),
                           projection_dim=16)  # fmt: skip
    torch.manual_seed(seed)
    model = tf.CLIPModel(config).eval()
    if vision_model is not None:
        tower = getattr(vision_model, "vision_model", vision_model)  # transformers 4 nests it
        model.vision_model.load_state_dict(tower.state_dict())
    return model, tok
