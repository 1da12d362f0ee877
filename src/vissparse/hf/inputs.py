"""Turning ``image=`` / ``prompt=`` arguments into a validated, chat-templated batch.

Everything is checked before any model runs, and an error in a batch names the item.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from vissparse.content_words import (
    attach_content_mask,
    content_or_prompt,
    content_spans,
    content_token_flags,
)

_SENTINEL = "\ue000vissparse-prompt\ue000"


@dataclass
class Item:
    """One prompt and the images that go with it, in order."""

    images: list[Image.Image]
    prompt: str


def _where(index: int | None) -> str:
    return "" if index is None else f"item {index}: "


def load_image(obj: Any, index: int | None = None) -> Image.Image:
    """A PIL RGB image from a PIL image or a file path; clear errors otherwise.

    A file is turned upright by its EXIF orientation tag (as transformers' own
    ``load_image`` does); a PIL image is taken as it is. Every PIL mode is read as the
    picture a viewer shows (see :func:`to_rgb`: 16-bit and
    float images are scaled to 8 bits, not clipped). A file over PIL's decompression-bomb
    limit is a ``ValueError`` that names the file, the limit and how to raise it.

    Example:
        >>> load_image(Image.new("RGB", (4, 3))).size
        (4, 3)
        >>> load_image(Image.new("I;16", (2, 1), 65535)).getpixel((0, 0))
        (255, 255, 255)
        >>> load_image(Image.new("RGB", (0, 3)), index=2)
        Traceback (most recent call last):
        ...
        ValueError: item 2: `image` has zero size (0, 3)
    """
    if isinstance(obj, str | os.PathLike):
        try:
            with Image.open(obj) as opened:
                opened.load()
                # a photo's EXIF orientation, applied as transformers' load_image does
                obj = ImageOps.exif_transpose(opened)
        except Image.DecompressionBombError as err:
            raise ValueError(f"{_where(index)}{_too_large(obj, err)}") from None
        except (OSError, UnidentifiedImageError) as err:
            raise ValueError(f"{_where(index)}`image` {str(obj)!r} cannot be read: {err}") from None
    if not isinstance(obj, Image.Image):
        raise TypeError(
            f"{_where(index)}`image` must be a PIL image or a path, got {type(obj).__name__}"
        )
    if obj.width == 0 or obj.height == 0:
        raise ValueError(f"{_where(index)}`image` has zero size {obj.size}")
    return to_rgb(obj, index)


def _too_large(path: str | os.PathLike[str], err: Exception) -> str:
    """The one-line message for a file over PIL's decompression-bomb limit."""
    reason = str(err).split(", could be")[0]  # PIL's "Image size (N pixels) exceeds ..."
    return (
        f"`image` {str(path)!r} is too large to open: {reason} (PIL's decompression-bomb "
        f"guard, 2 x PIL.Image.MAX_IMAGE_PIXELS = 2 x {Image.MAX_IMAGE_PIXELS}); for a file "
        "you trust, raise it first: `PIL.Image.MAX_IMAGE_PIXELS = None` (or a larger number)"
    )


# PIL modes whose pixels are 16-bit unsigned integers, 0..65535 (16-bit PNG, TIFF, PGM)
_SIXTEEN_BIT = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})
_FULL_16 = 65535


def to_rgb(image: Image.Image, index: int | None = None) -> Image.Image:
    """``image`` as 8-bit RGB, the picture an image viewer shows, whatever its PIL mode.

    8-bit modes (``1``, ``L``, ``P``, ``RGB``, ``CMYK``, ``YCbCr``, ``LAB``, ``HSV``, ...)
    go through PIL's ``convert("RGB")``; an alpha channel (``RGBA``, ``LA``, ``PA``,
    ``La``, ``RGBa``) is dropped, not composited, as before. High-bit-depth modes are
    scaled, because ``convert("RGB")`` clips them at 255 (a 16-bit gradient comes out
    white). transformers' image processors call the same ``convert("RGB")``
    (``do_convert_rgb``), so they clip too; VisSparse hands them the viewer's picture:

    - ``I;16`` (and ``I;16L``/``I;16B``/``I;16N``): ``round(v * 255 / 65535)``, the
      standard 16-to-8-bit reduction (PNG viewers, libpng's ``png_set_scale_16``).
    - ``I`` (32-bit integers with no recorded depth; what Pillow < 10 and PGM files give
      for 16-bit greyscale, and what Pillow writes to PNG as 16-bit): read as 16-bit, the
      same way; values outside ``[0, 65535]`` have no standard reading and are an error.
    - ``F`` (32-bit floats): values in ``[0, 1]`` are the float-image convention (numpy,
      matplotlib, torchvision) and are multiplied by 255; values in ``[0, 255]`` are PIL's
      own scale (``convert("F")`` of an 8-bit image) and kept; anything else (negative,
      above 255, NaN or infinite) is an error.

    Example:
        >>> ramp = Image.frombytes("I;16", (3, 1), bytes([0, 0, 128, 128, 255, 255]))
        >>> [to_rgb(ramp).getpixel((x, 0)) for x in range(3)]
        [(0, 0, 0), (128, 128, 128), (255, 255, 255)]
        >>> to_rgb(Image.new("F", (2, 1), -1.0), index=4)
        Traceback (most recent call last):
        ...
        ValueError: item 4: `image` of PIL mode 'F' has values in [-1, -1]: expected [0, 1] or [0, 255]; convert it to 8-bit 'L' or 'RGB' first
    """  # noqa: E501
    mode = image.mode
    if mode in _SIXTEEN_BIT or mode == "I":
        values = np.asarray(image).astype(np.int64)
        if mode == "I":
            _check_range(values, index, mode, ((0, _FULL_16),))
        eight = (values * 255 + _FULL_16 // 2) // _FULL_16  # round half up, in integers
        return Image.fromarray(eight.astype(np.uint8), "L").convert("RGB")
    if mode == "F":
        floats = np.asarray(image, dtype=np.float64)
        hi = _check_range(floats, index, mode, ((0, 1), (0, 255)))
        scaled = floats * (255 if hi <= 1 else 1)
        return Image.fromarray(np.rint(scaled).astype(np.uint8), "L").convert("RGB")
    if mode == "La":  # premultiplied alpha: PIL converts it to LA only
        image = image.convert("LA")
    return image.convert("RGB")


def _check_range(
    values: np.ndarray, index: int | None, mode: str, ranges: tuple[tuple[int, int], ...]
) -> float:
    """The largest value, after checking that all ``values`` lie in one of ``ranges``."""
    lo, hi = float(values.min()), float(values.max())
    if not any(a <= lo and hi <= b for a, b in ranges):
        expected = " or ".join(f"[{a}, {b}]" for a, b in ranges)
        raise ValueError(
            f"{_where(index)}`image` of PIL mode {mode!r} has values in [{lo:g}, {hi:g}]: "
            f"expected {expected}; convert it to 8-bit 'L' or 'RGB' first"
        )
    return hi


def probe_image(obj: Any) -> None:
    """Check that ``obj`` is a usable image without decoding its pixels.

    A path must open as an image file (header and checksums, ``Image.verify``); a PIL
    image must be non-empty. Benchmarks call this on every sample before the first run.

    Example:
        >>> probe_image("no-such.png")
        Traceback (most recent call last):
        ...
        ValueError: `image` 'no-such.png' cannot be read: [Errno 2] No such file or directory: 'no-such.png'
    """  # noqa: E501
    if isinstance(obj, str | os.PathLike):
        try:
            with Image.open(obj) as opened:
                opened.verify()
        except Image.DecompressionBombError as err:
            raise ValueError(_too_large(obj, err)) from None
        except (OSError, UnidentifiedImageError, SyntaxError) as err:
            raise ValueError(f"`image` {str(obj)!r} cannot be read: {err}") from None
        return
    if not isinstance(obj, Image.Image):
        raise TypeError(f"`image` must be a PIL image or a path, got {type(obj).__name__}")
    if obj.width == 0 or obj.height == 0:
        raise ValueError(f"`image` has zero size {obj.size}")


def _as_images(obj: Any, index: int | None) -> list[Image.Image]:
    if obj is None:
        raise ValueError(f"{_where(index)}`image` is required: VisSparse prunes image tokens")
    items = list(obj) if isinstance(obj, list | tuple) else [obj]
    if not items:
        raise ValueError(f"{_where(index)}`image` is an empty list")
    return [load_image(x, index) for x in items]


def _check_prompt(prompt: Any, index: int | None, placeholders: tuple[str, ...]) -> str:
    if not isinstance(prompt, str):
        raise TypeError(f"{_where(index)}`prompt` must be a string, got {type(prompt).__name__}")
    if not prompt.strip():
        raise ValueError(f"{_where(index)}`prompt` is empty")
    found = [p for p in placeholders if p in prompt]
    if found:
        raise ValueError(
            f"{_where(index)}`prompt` contains the image placeholder {found[0]!r}; pass images "
            "with `image=` and VisSparse puts one placeholder per image in the chat template"
        )
    return prompt


def normalize_batch(
    image: Any, prompt: Any, placeholders: tuple[str, ...]
) -> tuple[list[Item], bool]:
    """Validate ``image``/``prompt`` and return the items and whether it was a batch.

    A single ``prompt`` string takes one image or a list of images (several images in
    one prompt). A list of prompts takes a list of the same length whose elements are an
    image or a list of images.

    Example:
        >>> img = Image.new("RGB", (8, 8))
        >>> items, batched = normalize_batch([img, [img, img]], ["a?", "b?"], ("<image>",))
        >>> [len(i.images) for i in items], batched
        ([1, 2], True)
    """
    if isinstance(prompt, list | tuple):
        if not prompt:
            raise ValueError("`prompt` is an empty list")
        if not isinstance(image, list | tuple) or len(image) != len(prompt):
            got = len(image) if isinstance(image, list | tuple) else type(image).__name__
            raise ValueError(
                f"a list of {len(prompt)} prompts needs a list of {len(prompt)} images "
                f"(each an image or a list of images), got {got}"
            )
        items = [
            Item(images=_as_images(img, i), prompt=_check_prompt(p, i, placeholders))
            for i, (img, p) in enumerate(zip(image, prompt, strict=True))
        ]
        return items, True
    return [
        Item(images=_as_images(image, None), prompt=_check_prompt(prompt, None, placeholders))
    ], False


def sample_keys(items: list[Item]) -> list[bytes]:
    """One key per image, in batch order: random scorers seed each image's scores from it.

    The key hashes the prompt, the image's place in it, and its mode, size and pixels.

    Example:
        >>> img = Image.new("RGB", (4, 3))
        >>> keys = sample_keys([Item([img], "a?"), Item([img, img], "a?")])
        >>> keys[0] == keys[1], keys[1] == keys[2], len(keys[0])
        (True, False, 16)
    """
    keys = []
    for item in items:
        for place, image in enumerate(item.images):
            digest = hashlib.blake2b(digest_size=16)
            for part in (item.prompt, str(place), image.mode, str(image.size)):
                digest.update(part.encode() + b"\0")
            digest.update(image.tobytes())
            keys.append(digest.digest())
    return keys


def chat_text(processor: Any, item: Item) -> tuple[str, tuple[int, int]]:
    """The chat-templated text of one item and the character span of the user's prompt.

    Images come first in the user turn, then the prompt, as the model cards show.
    """
    content: list[dict[str, Any]] = [{"type": "image"} for _ in item.images]
    # A sentinel stands in for the prompt, so its place is found exactly even when the
    # prompt's text also occurs in the template.
    content.append({"type": "text", "text": _SENTINEL})
    messages = [{"role": "user", "content": content}]
    template_owner: Any = processor if getattr(processor, "chat_template", None) else None
    if template_owner is None:
        tokenizer = getattr(processor, "tokenizer", None)
        if not getattr(tokenizer, "chat_template", None):
            raise ValueError("the processor has no chat template; pass a processor that has one")
        template_owner = tokenizer
    text = template_owner.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    if text.count(_SENTINEL) != 1:
        raise ValueError("the chat template changed the prompt text; cannot locate the prompt")
    start = text.index(_SENTINEL)
    text = text.replace(_SENTINEL, item.prompt)
    return text, (start, start + len(item.prompt))


def prompt_token_mask(
    tokenizer: Any,
    text: str,
    span: tuple[int, int],
    expanded_ids: list[int],
    image_token_id: int,
) -> list[bool]:
    """Which of the processor's (expanded, unpadded) tokens belong to the user's prompt.

    ``text`` is tokenized with offsets; tokens overlapping ``span`` are prompt tokens.
    Each image placeholder of the unexpanded text is then aligned with its run of image
    tokens in ``expanded_ids``; every other token must match one to one.
    """
    return prompt_token_flags(tokenizer, text, span, expanded_ids, image_token_id)[0]


def prompt_token_flags(
    tokenizer: Any,
    text: str,
    span: tuple[int, int],
    expanded_ids: list[int],
    image_token_id: int,
) -> tuple[list[bool], list[bool]]:
    """:func:`prompt_token_mask` and, aligned the same way, the prompt's content tokens.

    A content token is a prompt token that overlaps a content word of the prompt
    (:mod:`vissparse.content_words`: function words and punctuation out, sub-word pieces
    with their word).
    """
    encoding = tokenizer(text, return_offsets_mapping=True)
    ids, offsets = encoding["input_ids"], encoding["offset_mapping"]
    start, end = span
    special = set(getattr(tokenizer, "all_special_ids", []))
    # special tokens typed into the prompt (e.g. "</s>") are not part of the query
    in_prompt = [
        s < end and e > start and e > s and token not in special
        for token, (s, e) in zip(ids, offsets, strict=True)
    ]
    words = content_token_flags(offsets, content_spans(text, span))
    out: list[bool] = []
    content: list[bool] = []
    j = 0
    for token, flag, word in zip(ids, in_prompt, words, strict=True):
        if token == image_token_id:
            while j < len(expanded_ids) and expanded_ids[j] == image_token_id:
                out.append(False)
                content.append(False)
                j += 1
            continue
        if j >= len(expanded_ids) or expanded_ids[j] != token:
            raise ValueError("the processor's tokens do not match the tokenizer's; cannot align")
        out.append(flag)
        content.append(flag and word)
        j += 1
    if j != len(expanded_ids):
        raise ValueError("the processor's tokens do not match the tokenizer's; cannot align")
    return out, content


def expand_placeholders(
    processor: Any, text: str, span: tuple[int, int]
) -> tuple[str, tuple[int, int]]:
    r"""``text`` with each image placeholder written out as the processor expands it.

    Gemma 3's processor replaces ``<start_of_image>`` with ``"\n\n<start_of_image>"``,
    the image tokens and ``"<end_of_image>\n\n"``; InternVL's puts ``<img>`` and
    ``</img>`` around its image tokens: the text tokens it adds must be in the text the
    prompt mask is aligned on. ``span`` (the prompt's characters) moves
    with the text before it. Processors that expand nothing get ``text`` back.

    Example:
        >>> from types import SimpleNamespace as NS
        >>> p = NS(boi_token="<i>", full_image_sequence="[<i>]")
        >>> expand_placeholders(p, "<i>hi", (3, 5))
        ('[<i>]hi', (5, 7))
    """
    placeholder, full = _expansion(processor)
    if not placeholder or not full:
        return text, span
    start, end = span
    before = text[:start].count(placeholder)
    shift = before * (len(full) - len(placeholder))
    inside = text[start:end].count(placeholder)
    out = text.replace(placeholder, full)
    return out, (start + shift, end + shift + inside * (len(full) - len(placeholder)))


def _expansion(processor: Any) -> tuple[str | None, str | None]:
    """The placeholder a processor expands and what it writes around the image tokens."""
    start, end = (getattr(processor, name, None) for name in ("start_image_token",
                                                               "end_image_token"))  # fmt: skip
    if start and end:  # InternVL: <img> + the image tokens + </img>
        token = processor.image_token
        return token, f"{start}{token}{end}"
    return getattr(processor, "boi_token", None), getattr(processor, "full_image_sequence", None)


def prompt_masks(
    processor: Any, texts: list[tuple[str, tuple[int, int]]], input_ids: torch.Tensor,
    attention_mask: torch.Tensor, image_token_id: int,
) -> torch.Tensor:  # fmt: skip
    """``[B, L]`` bool mask of the user-prompt tokens of a padded processor batch.

    It carries the mask of the prompt's content words (:func:`prompt_token_flags`; the
    whole prompt in a row with no content word), read back by
    :func:`vissparse.content_words.content_mask_of`.
    """
    masks = torch.zeros(input_ids.shape, dtype=torch.bool)
    content = torch.zeros(input_ids.shape, dtype=torch.bool)
    for row, (text, span) in enumerate(texts):
        text, span = expand_placeholders(processor, text, span)
        valid = attention_mask[row].bool().cpu()
        ids = input_ids[row].cpu()[valid].tolist()
        flags, words = prompt_token_flags(processor.tokenizer, text, span, ids, image_token_id)
        if not any(flags):
            raise ValueError(f"item {row}: no prompt tokens found in the tokenized input")
        masks[row, valid.nonzero().flatten()] = torch.tensor(flags)
        content[row, valid.nonzero().flatten()] = torch.tensor(words)
    content = content_or_prompt(content, masks).to(input_ids.device)
    return attach_content_mask(masks.to(input_ids.device), content)
