"""The processor step of a call: checked items in, the model's inputs and prompt mask out.

The pipeline (:class:`vissparse.hf.pipeline.HFPipeline`) calls it with the items that
:func:`vissparse.hf.inputs.normalize_batch` gives; with ``scorer="downsample"`` the
images are resized first (:mod:`vissparse.hf.downsample`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from vissparse.content_words import attach_content_mask, content_mask_of
from vissparse.hf.inputs import Item, chat_text, prompt_masks
from vissparse.host_sync import keep_host_copy
from vissparse.prompt_texts import attach_prompt_texts

__all__ = ["encode_items"]


def encode_items(
    model: Any, processor: Any, adapter: Any, items: list[Item], downsampler: Any = None
) -> tuple[Any, Tensor]:
    """The processor's inputs on ``model``'s device and dtype, and the prompt mask.

    The ``[B, L]`` bool prompt mask marks the user's words and carries the mask of
    their content words (:func:`vissparse.content_words.content_mask_of`) and each row's
    prompt as typed (:func:`vissparse.prompt_texts.prompt_texts_of`). The host
    copies of ``input_ids`` and ``attention_mask`` stay attached, so spans and counts are
    read without a device sync. A processor's refusal of an image (aspect ratio, size)
    becomes a ``ValueError`` naming ``image`` and the sizes.

    Example:
        >>> from vissparse.adapters import get_adapter
        >>> from vissparse.hf.inputs import normalize_batch
        >>> from vissparse.testing import random_image, tiny_model
        >>> model, processor = tiny_model("llava")
        >>> items, _ = normalize_batch(random_image(), "What is it?", ("<image>",))
        >>> inputs, mask = encode_items(model, processor, get_adapter(model), items)
        >>> inputs["input_ids"].shape == mask.shape, int(mask.sum()) > 0
        (True, True)
    """
    texts = [chat_text(processor, item) for item in items]
    fed: list[Item] = items
    extra: dict[str, Any] = {}
    if downsampler is not None:
        fed, extra = downsampler.resize(items)
    images = [img for item in fed for img in item.images]
    # LLaVA-OneVision's processor reads images nested per prompt (multi-image prompts)
    given: Any = [list(i.images) for i in fed] if adapter.spec.nested_images else images
    try:
        inputs = processor(
            images=given, text=[text for text, _ in texts], padding=True,
            padding_side="left", return_tensors="pt", **extra,
        )  # fmt: skip
    except ValueError as err:  # the image processor's own checks (aspect ratio, size)
        sizes = [img.size for img in images]
        raise ValueError(
            f"`image` (sizes {sizes}) was refused by the {type(model).__name__} "
            f"image processor: {err}"
        ) from None
    prompt_mask = prompt_masks(
        processor, texts, inputs["input_ids"], inputs["attention_mask"], adapter.image_token_id
    )
    host = {key: inputs[key] for key in ("input_ids", "attention_mask")}
    inputs = inputs.to(model.device)
    for key, value in host.items():  # spans and counts are read from these copies
        keep_host_copy(inputs[key], value)
    for key, value in inputs.items():
        if torch.is_floating_point(value):
            inputs[key] = value.to(model.dtype)
    content = content_mask_of(prompt_mask)  # the content words travel with the mask
    mask = prompt_mask.to(model.device)
    if content is not None:
        attach_content_mask(mask, content.to(model.device))
    attach_prompt_texts(mask, [item.prompt for item in items])
    return inputs, mask
