"""The ``generate`` options a call really runs with, and its length limits as new tokens.

``model.generate`` reads each option from its keyword, else from ``generation_config=``,
else from the model's own ``generation_config``, else from HF's defaults. Its length
limits count from the prompt it is given: ``max_length`` / ``min_length`` are totals,
``max_new_tokens`` / ``min_new_tokens`` (which take precedence) counts of new tokens. A
pruned prompt is shorter than the unpruned one, so VisSparse resolves every limit, from
whichever source, to counts of new tokens on the UNPRUNED prompt, and gives both the
pruned and the baseline call those counts: a limit means the same on both sides.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from transformers import GenerationConfig

LENGTHS = ("max_length", "min_length", "max_new_tokens", "min_new_tokens")


def _defaults() -> dict[str, Any]:
    """HF's defaults for options neither the call nor the model sets."""
    return dict(GenerationConfig._get_default_generation_params())


def option_source(model: Any, kwargs: dict[str, Any], key: str) -> tuple[Any, str]:
    """``(value, where it came from)`` of generate option ``key``, as ``generate`` reads it.

    A keyword wins, even ``None`` (HF's ``GenerationConfig.update`` sets it); then a
    non-``None`` value of ``generation_config=``, of the model's ``generation_config``,
    and HF's default.

    Example:
        >>> from types import SimpleNamespace
        >>> model = SimpleNamespace(generation_config=GenerationConfig(num_beams=3))
        >>> option_source(model, {}, "num_beams")
        (3, 'model.generation_config')
        >>> option_source(model, {"num_beams": 2}, "num_beams")
        (2, 'keyword')
    """
    if key in kwargs:
        return kwargs[key], "keyword"
    for config, source in ((kwargs.get("generation_config"), "generation_config"),
                           (getattr(model, "generation_config", None),
                            "model.generation_config")):  # fmt: skip
        value = None if config is None else getattr(config, key, None)
        if value is not None:
            return value, source
    return _defaults().get(key), "default"


def option(model: Any, kwargs: dict[str, Any], key: str) -> Any:
    """The value of generate option ``key`` the call runs with (see :func:`option_source`)."""
    return option_source(model, kwargs, key)[0]


def _where(key: str, source: str) -> str:
    return f"`{key}`" if source == "keyword" else f"`{key}` (from {source})"


def new_token_limits(model: Any, kwargs: dict[str, Any], prompt_length: int) -> tuple[int, int]:
    """``(max_new, min_new)``: the new tokens ``generate`` allows after ``prompt_length``.

    What HF's ``generate`` does with ``input_ids`` of ``prompt_length`` columns:
    ``max_new_tokens`` over ``max_length`` (a total), else HF's default (20 new tokens,
    within ``max_position_embeddings``); ``min_new_tokens`` over ``min_length``. An explicit
    ``max_length=None`` counts as not given (HF fails on it). A limit that leaves no room
    to answer is a ``ValueError`` naming it and where it was set.

    Example:
        >>> from types import SimpleNamespace
        >>> model = SimpleNamespace(generation_config=GenerationConfig(max_length=50),
        ...                         config=SimpleNamespace())
        >>> new_token_limits(model, {}, 45), new_token_limits(model, {"min_length": 47}, 45)
        ((5, 0), (5, 2))
        >>> new_token_limits(model, {}, 50)
        Traceback (most recent call last):
        ...
        ValueError: `max_length` (from model.generation_config)=50 leaves no room to answer: the prompt with its image tokens is 50 tokens; set `max_new_tokens` instead
    """  # noqa: E501
    if "max_length" in kwargs and kwargs["max_length"] is None:
        kwargs = {k: v for k, v in kwargs.items() if k != "max_length"}
    max_new, source = option_source(model, kwargs, "max_new_tokens")
    if max_new is not None:
        if max_new < 1:
            raise ValueError(f"{_where('max_new_tokens', source)} must be >= 1, got {max_new!r}")
    else:
        max_length, source = option_source(model, kwargs, "max_length")
        if source == "default":  # HF: 20 new tokens, within the position table
            max_length += prompt_length
            positions = getattr(getattr(model, "config", None), "max_position_embeddings", None)
            if positions is not None:
                max_length = min(max_length, positions)
        max_new = max_length - prompt_length
        if max_new < 1:
            raise ValueError(
                f"{_where('max_length', source)}={max_length} leaves no room to answer: the "
                f"prompt with its image tokens is {prompt_length} tokens; set `max_new_tokens` "
                "instead"
            )
    min_new = option(model, kwargs, "min_new_tokens")
    if min_new is None:
        min_length = option(model, kwargs, "min_length")
        min_new = max(0, (min_length or 0) - prompt_length)
    return int(max_new), int(min_new)


def as_new_tokens(model: Any, kwargs: dict[str, Any], prompt_length: int) -> dict[str, Any]:
    """``kwargs`` with every length limit given as ``max_new_tokens`` / ``min_new_tokens``.

    The limits are resolved on the unpruned prompt of ``prompt_length`` tokens (see
    :func:`new_token_limits`); a ``generation_config`` passed in is copied, never changed.
    Feed the result to ``generate`` inside :func:`lengths_from_call` so the model's own
    ``max_length`` / ``min_length`` do not compete with the counts.

    Example:
        >>> from types import SimpleNamespace
        >>> model = SimpleNamespace(generation_config=GenerationConfig(), config=None)
        >>> as_new_tokens(model, {"max_length": 50, "do_sample": False}, 45)
        {'do_sample': False, 'max_new_tokens': 5, 'min_new_tokens': 0}
    """
    max_new, min_new = new_token_limits(model, kwargs, prompt_length)
    out = {k: v for k, v in kwargs.items() if k not in LENGTHS}
    given = kwargs.get("generation_config")
    if given is None:
        out.update(max_new_tokens=max_new, min_new_tokens=min_new)
        return out
    config = copy.deepcopy(given)
    config.max_length, config.min_length = None, None
    config.max_new_tokens, config.min_new_tokens = max_new, min_new
    out["generation_config"] = config
    return out


@contextmanager
def lengths_from_call(model: Any) -> Iterator[None]:
    """While open, the model's own ``max_length`` / ``min_length`` are unset.

    A call given :func:`as_new_tokens`'s counts has resolved them already; left set, HF
    would warn on every call that two limits compete. They are back on exit.
    """
    config = getattr(model, "generation_config", None)
    saved = {key: getattr(config, key, None) for key in ("max_length", "min_length")}
    if config is None or all(value is None for value in saved.values()):
        yield
        return
    for key in saved:
        setattr(config, key, None)
    try:
        yield
    finally:
        for key, value in saved.items():
            setattr(config, key, value)
