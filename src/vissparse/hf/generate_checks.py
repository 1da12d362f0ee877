"""Checks of the ``generate`` options the HF pipeline is given."""

from __future__ import annotations

from typing import Any

from transformers import GenerationConfig

from vissparse.hf.compiled import check_compiled_kwargs
from vissparse.hf.generation_options import option, option_source

# Inputs VisSparse builds itself; passing them to generate() would bypass the pruning.
RESERVED_GENERATE_KWARGS = (
    "input_ids", "inputs_embeds", "attention_mask", "position_ids", "pixel_values",
    "image_grid_thw", "image_sizes", "mm_token_type_ids",
)  # fmt: skip


def _named(key: str, source: str) -> str:
    return f"`{key}`" if source == "keyword" else f"`{key}` (from {source})"


def check_llm_generate_kwargs(kwargs: dict[str, Any], model: Any = None) -> None:
    """Refuse generate() options that ``stage="llm"`` pruning cannot follow, naming them.

    With ``model``, the options are read where ``generate`` reads them: the keyword,
    ``generation_config=``, or the model's own ``generation_config``.

    Example:
        >>> check_llm_generate_kwargs({"num_beams": 2})
        Traceback (most recent call last):
        ...
        ValueError: `num_beams` must be 1 with stage='llm' (the pruned layers' cache is per prompt), got 2
    """  # noqa: E501
    beams, source = option_source(model, kwargs, "num_beams")
    if beams is not None and beams != 1:
        raise ValueError(
            f"{_named('num_beams', source)} must be 1 with stage='llm' (the pruned layers' "
            f"cache is per prompt), got {beams!r}"
        )
    use_cache, source = option_source(model, kwargs, "use_cache")
    if use_cache is not None and use_cache is not True:
        raise ValueError(
            f"{_named('use_cache', source)} must be True with stage='llm': decoding reads "
            "the pruned cache"
        )


def _check_length(key: str, value: Any) -> None:
    low = 0 if key.startswith("min") else 1
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                              or value < low):  # fmt: skip
        raise ValueError(f"`{key}` must be an int >= {low} (or None), got {value!r}")


def check_generate_kwargs(kwargs: dict[str, Any], model: Any = None, compile: bool = False) -> None:
    """Reject generate() arguments VisSparse cannot honour, naming them.

    With ``model``, options that may also come from a ``generation_config`` (passed or
    the model's own) are checked where ``generate`` reads them. ``compile``: also the
    options the compiled path refuses (:func:`vissparse.hf.compiled.check_compiled_kwargs`).

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
    config = kwargs.get("generation_config")
    if config is not None and not isinstance(config, GenerationConfig):
        raise TypeError(
            f"`generation_config` must be a transformers.GenerationConfig, got "
            f"{type(config).__name__}"
        )
    for key in ("max_new_tokens", "min_new_tokens", "max_length", "min_length"):
        _check_length(key, kwargs.get(key))
    sequences, source = option_source(model, kwargs, "num_return_sequences")
    if sequences is not None and sequences != 1:
        raise ValueError(
            f"{_named('num_return_sequences', source)} must be 1: VisSparse returns one "
            f"answer per prompt, got {sequences!r}"
        )
    if option(model, kwargs, "cache_implementation") == "paged":
        raise ValueError(
            "`cache_implementation`='paged' switches generate to continuous batching, which "
            "takes token ids only and would skip the pruned embeddings; use 'dynamic' or "
            "'static'"
        )
    if compile:
        check_compiled_kwargs(kwargs, model)
