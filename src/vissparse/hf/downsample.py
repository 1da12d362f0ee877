"""The downsampling baseline's size arithmetic and image resizing (``scorer="downsample"``).

A Qwen-style processor resizes an image of ``H x W`` pixels to the nearest multiples of
``factor = patch_size * merge_size`` within ``[min_pixels, max_pixels]``
(transformers' ``smart_resize``); the encoder then emits one token per ``factor x
factor`` block. The full image's grid of ``R x C`` tokens gives ``n = R * C``. The
downsampled image has ``r x c`` blocks, each side within one merge unit of its exact
share, ``R * sqrt(keep_ratio)`` and ``C * sqrt(keep_ratio)``, choosing the pair whose
count is closest to ``keep_ratio * n`` (then the closest aspect ratio). The image is
resized once, PIL bicubic (as VTC-Bench and the processor resize), straight to ``r *
factor x c * factor`` pixels, and the processor's ``min_pixels`` is lowered for that
call to the smallest such image, so it keeps that size instead of scaling it back up.

Pure functions apart from :class:`Downsampler`, which reads the processor's numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from PIL import Image

from vissparse.adapters import family_of
from vissparse.adapters.base import FamilySpec
from vissparse.hf.inputs import Item
from vissparse.host_sync import host_copy


@dataclass(frozen=True)
class ResizeFacts:
    """How a Qwen-style processor sizes an image.

    Attributes:
        factor: pixels per side of one emitted token (``patch_size * merge_size``).
        min_pixels: the least area the processor resizes to (``size["shortest_edge"]``).
        max_pixels: the largest (``size["longest_edge"]``).

    Example:
        >>> ResizeFacts(28, 3136, 12845056).factor
        28
    """

    factor: int
    min_pixels: int
    max_pixels: int


def smart_resize(height: int, width: int, facts: ResizeFacts) -> tuple[int, int]:
    """``(height, width)`` in pixels after the processor's resize (transformers' rule).

    Example:
        >>> smart_resize(448, 448, ResizeFacts(28, 3136, 12845056))
        (448, 448)
        >>> smart_resize(10, 10, ResizeFacts(28, 3136, 12845056))
        (56, 56)
    """
    f = facts.factor
    h_bar, w_bar = round(height / f) * f, round(width / f) * f
    if h_bar * w_bar > facts.max_pixels:
        beta = math.sqrt(height * width / facts.max_pixels)
        h_bar = max(f, math.floor(height / beta / f) * f)
        w_bar = max(f, math.floor(width / beta / f) * f)
    elif h_bar * w_bar < facts.min_pixels:
        beta = math.sqrt(facts.min_pixels / (height * width))
        h_bar = math.ceil(height * beta / f) * f
        w_bar = math.ceil(width * beta / f) * f
    return h_bar, w_bar


def token_grid(height: int, width: int, facts: ResizeFacts) -> tuple[int, int]:
    """``(rows, cols)`` of the tokens the encoder emits for an ``height x width`` image.

    Example:
        >>> token_grid(448, 600, ResizeFacts(28, 3136, 12845056))
        (16, 21)
    """
    h, w = smart_resize(height, width, facts)
    return h // facts.factor, w // facts.factor


def target_grid(rows: int, cols: int, keep_ratio: float) -> tuple[int, int]:
    """The ``(r, c)`` token grid of the downsampled image of a ``rows x cols`` grid.

    Each side is the floor or the ceiling of its exact share (``rows * sqrt(keep_ratio)``,
    at least 1): of those four pairs, the count closest to ``keep_ratio * rows * cols``,
    then the aspect ratio closest to the image's, then the larger count.

    Example:
        >>> target_grid(16, 16, 0.25), target_grid(16, 16, 0.1), target_grid(16, 21, 1.0)
        ((8, 8), (5, 5), (16, 21))
    """
    if keep_ratio >= 1.0:
        return rows, cols
    scale, want = math.sqrt(keep_ratio), keep_ratio * rows * cols

    def sides(n: int) -> set[int]:
        exact = n * scale
        return {min(n, max(1, math.floor(exact))), min(n, max(1, math.ceil(exact)))}

    def cost(rc: tuple[int, int]) -> tuple[float, float, int]:
        r, c = rc
        aspect = abs(math.log((r / c) / (rows / cols)))
        return abs(r * c - want), aspect, -r * c

    return min(((r, c) for r in sides(rows) for c in sides(cols)), key=cost)


def downsampled_size(
    width: int, height: int, keep_ratio: float, facts: ResizeFacts
) -> tuple[int, int]:
    """``(width, height)`` in pixels (PIL's order) the image is resized to before the processor.

    Example:
        >>> downsampled_size(448, 448, 0.25, ResizeFacts(28, 3136, 12845056))
        (224, 224)
    """
    rows, cols = token_grid(height, width, facts)
    r, c = target_grid(rows, cols, keep_ratio)
    return c * facts.factor, r * facts.factor


def refuse_family(spec: FamilySpec) -> None:
    """A one-line ``ValueError`` unless the family's processor takes any image size.

    Example:
        >>> from vissparse.adapters.llava import LLAVA
        >>> refuse_family(LLAVA)
        Traceback (most recent call last):
        ...
        ValueError: `scorer` 'downsample' needs a processor that takes any image size (Qwen2-VL, Qwen2.5-VL, Qwen3-VL, Qwen3.5); llava resizes every image to a fixed size: use scorer='pool', its analogue (average pooling on the token grid)
    """  # noqa: E501
    if spec.layout != "merged_grid":
        raise ValueError(
            "`scorer` 'downsample' needs a processor that takes any image size (Qwen2-VL, "
            f"Qwen2.5-VL, Qwen3-VL, Qwen3.5); {spec.name} resizes every image to a fixed "
            "size: use scorer='pool', its analogue (average pooling on the token grid)"
        )


def takes_any_size(model: Any) -> bool:
    """Whether ``model``'s family runs ``scorer="downsample"`` (see :func:`refuse_family`).

    Example:
        >>> from vissparse.testing import tiny_model
        >>> takes_any_size(tiny_model("qwen2_vl")[0]), takes_any_size(tiny_model("llava")[0])
        (True, False)
    """
    return family_of(getattr(model.config, "model_type", None))[0].layout == "merged_grid"


def resize_facts(processor: Any) -> ResizeFacts:
    """The :class:`ResizeFacts` of a loaded Qwen-style processor.

    Example:
        >>> from vissparse.testing import tiny_model
        >>> resize_facts(tiny_model("qwen2_vl")[1])
        ResizeFacts(factor=28, min_pixels=3136, max_pixels=12544)
    """
    images = processor.image_processor
    size = images.size
    low = size["shortest_edge"] if "shortest_edge" in size else None
    high = size["longest_edge"] if "longest_edge" in size else None
    low = getattr(images, "min_pixels", None) if low is None else low
    high = getattr(images, "max_pixels", None) if high is None else high
    if low is None or high is None:
        raise ValueError(
            f"`processor` {type(images).__name__} gives no min/max pixels (size={size!r}); "
            "scorer='downsample' needs them"
        )
    return ResizeFacts(int(images.patch_size) * int(images.merge_size), int(low), int(high))


class Downsampler:
    """Resizes a batch's images for ``keep_ratio`` and counts the full-size tokens.

    Example:
        >>> from vissparse.testing import tiny_model
        >>> down = Downsampler(resize_facts(tiny_model("qwen2_vl")[1]), 0.25)
        >>> items, kwargs = down.resize([Item([Image.new("RGB", (112, 112))], "hi")])
        >>> items[0].images[0].size, kwargs["size"]["shortest_edge"], down.full_tokens(items)
        ((56, 56), 3136, [4])
    """

    def __init__(self, facts: ResizeFacts, keep_ratio: float) -> None:
        self.facts = facts
        self.keep_ratio = keep_ratio

    def resize(self, items: list[Item]) -> tuple[list[Item], dict[str, Any]]:
        """The items with downsampled images, and the processor keywords for them.

        At ``keep_ratio`` 1.0 the items come back as they are, with no keywords.
        """
        if self.keep_ratio >= 1.0:
            return items, {}
        out, least = [], self.facts.min_pixels
        for item in items:
            images = []
            for image in item.images:
                size = downsampled_size(image.width, image.height, self.keep_ratio, self.facts)
                least = min(least, size[0] * size[1])
                images.append(image.resize(size, Image.Resampling.BICUBIC))
            out.append(Item(images, item.prompt))
        size_kwargs = {"shortest_edge": least, "longest_edge": self.facts.max_pixels}
        return out, {"size": size_kwargs}

    def full_tokens(self, items: list[Item]) -> list[int]:
        """Per item, the tokens its images have at full size (what ``n_image_tokens`` reports)."""
        return [
            sum(math.prod(token_grid(i.height, i.width, self.facts)) for i in item.images)
            for item in items
        ]

    def unpruned_length(self, inputs: Any, items: list[Item], image_token_id: int) -> int:
        """The padded prompt length the full-size images would give (the baseline's).

        Read from the processor's host copies of the downsampled batch's ids and mask.
        """
        ids = host_copy(inputs["input_ids"])
        lengths = host_copy(inputs["attention_mask"]).sum(dim=1)
        small = (ids == image_token_id).sum(dim=1)
        full = [int(x) for x in self.full_tokens(items)]
        return max(int(n) - int(s) + f for n, s, f in zip(lengths, small, full, strict=True))


def downsampler_for(
    scorer: Any, spec: FamilySpec, processor: Any, config: Any
) -> Downsampler | None:
    """The pipeline's :class:`Downsampler` when ``scorer`` resizes images, else ``None``.

    Refuses families of fixed image size and ``stage="llm"`` in one line.
    """
    if not getattr(scorer, "resizes_images", False):
        return None
    refuse_family(spec)
    if config.stage != "input":
        raise ValueError(
            f"`stage` {config.stage!r} cannot run scorer='downsample': it resizes the image "
            "before the vision encoder; use stage='input'"
        )
    return Downsampler(resize_facts(processor), config.keep_ratio)
