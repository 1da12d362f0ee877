"""Checks of the ``generate`` options the HF pipeline is given."""

from __future__ import annotations

from typing import Any

# Inputs VisSparse builds itself; passing them to generate() would bypass the pruning.
RESERVED_GENERATE_KWARGS = (
    "input_ids", "inputs_embeds", "attention_mask", "position_ids", "pixel_values",
    "image_grid_thw", "image_sizes", "mm_token_type_ids",
)  # fmt: skip


def check_llm_generate_kwargs(kwargs: dict[str, Any]) -> None:
    """Refuse generate() options that ``stage="llm"`` pruning cannot follow, naming them.

    Example:
        >>> check_llm_generate_kwargs({"num_beams": 2})
        Traceback (most recent call last):
        ...
        ValueError: `num_beams` must be 1 with stage='llm' (the pruned layers' cache is per prompt)
    """
    if kwargs.get("num_beams", 1) != 1:
        raise ValueError(
            "`num_beams` must be 1 with stage='llm' (the pruned layers' cache is per prompt)"
        )
    if kwargs.get("use_cache", True) is not True:
        raise ValueError(
            "`use_cache` must be True with stage='llm': decoding reads the pruned cache"
        )


def check_generate_kwargs(kwargs: dict[str, Any]) -> None:
    """Reject generate() arguments VisSparse cannot honour, naming them.

    Example:
        >>> check_generate_kwargs({"max_new_tokens": 4})
        >>> check_generate_kwargs({"attention_mask": None})
        Traceback (most recent call last):
        ...
        TypeError: `attention_mask` is built by VisSparse from `image` and `prompt`; do not pass it to generate
    """  # noqa: E501
    for key in RESERVED_GENERATE_KWARGS:
        if key in kwargs:
            raise TypeError(
                f"`{key}` is built by VisSparse from `image` and `prompt`; do not pass it to "
                "generate"
            )
    if kwargs.get("num_return_sequences", 1) != 1:
        raise ValueError(
            "`num_return_sequences` must be 1: VisSparse returns one answer per prompt"
        )
    for key in ("max_new_tokens", "min_new_tokens", "max_length"):
        value = kwargs.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or value < (0 if key == "min_new_tokens" else 1)):  # fmt: skip
            raise ValueError(f"`{key}` must be an int >= 1 (0 allowed for min), got {value!r}")
