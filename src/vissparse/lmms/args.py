"""The plugin's ``--model_args``: lmms-eval's ``key=value`` strings to ``VisSparse`` settings.

lmms-eval splits ``--model_args`` at commas (not inside brackets) and turns numbers and
``true``/``false`` into Python values; lists arrive as text (``layer=[8,16,24]``). Here
every value is checked and converted before any weights load, each error naming the
argument. No lmms-eval import: this runs (and is tested) in the main environment.

Example:
    >>> args = plugin_settings(pretrained="llava-hf/llava-1.5-7b-hf", keep_ratio=0.1,
    ...                        scorer="divprune", batch_size="8")
    >>> args.batch_size, args.vissparse["keep_ratio"], args.vissparse["scorer"]
    (8, 0.1, 'divprune')
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

# model_args that go to VisSparse as they are (after the checks PruningConfig makes)
PRUNING_ARGS = ("keep_ratio", "scorer", "strategy", "mode", "stage", "positions")
# model_args that go to from_pretrained (VisSparse checks them before loading)
LOADING_ARGS = ("dtype", "attn_implementation", "revision", "trust_remote_code",
                "local_files_only", "device_map")  # fmt: skip
# given by lmms-eval itself (--batch_size, --max_batch_size, --device)
HARNESS_ARGS = ("batch_size", "max_batch_size", "device")
OTHER_ARGS = ("pretrained", "layer", "schedule", "max_new_tokens", "sample_log")


@dataclass
class PluginSettings:
    """What ``--model_args`` asked for, checked.

    Attributes:
        vissparse: keyword arguments of :class:`vissparse.VisSparse` (``base_model``
            included).
        batch_size: prompts answered in one pruned ``generate`` call.
        max_new_tokens: the default when a task's ``generation_kwargs`` give none.
        sample_log: a JSONL file that gets one row per answered request, or ``None``.
    """

    vissparse: dict[str, Any] = field(default_factory=dict)
    batch_size: int = 1
    max_new_tokens: int = 128
    sample_log: str | None = None


def _positive_int(value: Any, name: str) -> int:
    """``value`` (an int or its text) as an int >= 1."""
    text = str(value).strip()
    if isinstance(value, bool) or not text.isdigit() or int(text) < 1:
        raise ValueError(f"`{name}` must be a whole number >= 1, got {value!r}")
    return int(text)


def parse_layer(value: Any) -> int | tuple[int, ...]:
    """``layer=2`` or ``layer=[8,16,24]`` (PyramidDrop-style stages).

    Example:
        >>> parse_layer(2), parse_layer("[8,16,24]")
        (2, (8, 16, 24))
        >>> parse_layer("[8,x]")
        Traceback (most recent call last):
        ...
        ValueError: `layer` must be a layer index or a list of them such as [8,16,24], got '[8,x]'
    """
    parsed = _json(value, "layer", "a layer index or a list of them such as [8,16,24]")
    if isinstance(parsed, int) and not isinstance(parsed, bool):
        return parsed
    if isinstance(parsed, list) and parsed and all(type(x) is int for x in parsed):
        return tuple(parsed)
    raise ValueError(
        f"`layer` must be a layer index or a list of them such as [8,16,24], got {value!r}"
    )


def parse_schedule(value: Any) -> tuple[tuple[int, float], ...]:
    """``schedule=[[8,0.5],[16,0.25]]``: ``(layer, keep_ratio)`` stages.

    Example:
        >>> parse_schedule("[[8,0.5],[16,0.25]]")
        ((8, 0.5), (16, 0.25))
    """
    what = "a list of [layer, keep_ratio] pairs such as [[8,0.5],[16,0.25]]"
    parsed = _json(value, "schedule", what)
    ok = isinstance(parsed, list) and parsed and all(
        isinstance(p, list) and len(p) == 2 and type(p[0]) is int
        and isinstance(p[1], int | float) and not isinstance(p[1], bool) for p in parsed
    )  # fmt: skip
    if not ok:
        raise ValueError(f"`schedule` must be {what}, got {value!r}")
    return tuple((int(p[0]), float(p[1])) for p in parsed)


def _json(value: Any, name: str, what: str) -> Any:
    """``value`` itself when lmms-eval already converted it, else its JSON reading."""
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        raise ValueError(f"`{name}` must be {what}, got {value!r}") from None


def plugin_settings(**model_args: Any) -> PluginSettings:
    """Check ``--model_args`` (plus lmms-eval's own batch size and device).

    Example:
        >>> plugin_settings(keep_ratio=0.1)
        Traceback (most recent call last):
        ...
        ValueError: `pretrained` is required: a HuggingFace model id or a local checkpoint folder (--model_args pretrained=ID_OR_DIR,...)
        >>> plugin_settings(pretrained="x", keep=0.1)
        Traceback (most recent call last):
        ...
        TypeError: unknown --model_args ['keep'] for --model vissparse; expected some of ['attn_implementation', 'batch_size', 'device', 'device_map', 'dtype', 'keep_ratio', 'layer', 'local_files_only', 'max_batch_size', 'max_new_tokens', 'mode', 'positions', 'pretrained', 'revision', 'sample_log', 'schedule', 'scorer', 'stage', 'strategy', 'trust_remote_code']
    """  # noqa: E501
    known = (*PRUNING_ARGS, *LOADING_ARGS, *HARNESS_ARGS, *OTHER_ARGS)
    unknown = sorted(set(model_args) - set(known))
    if unknown:
        raise TypeError(
            f"unknown --model_args {unknown} for --model vissparse; expected some of "
            f"{sorted(known)}"
        )
    pretrained = model_args.get("pretrained")
    if pretrained is None or not str(pretrained).strip():
        raise ValueError(
            "`pretrained` is required: a HuggingFace model id or a local checkpoint folder "
            "(--model_args pretrained=ID_OR_DIR,...)"
        )
    kwargs: dict[str, Any] = {"base_model": str(pretrained)}
    for name in (*PRUNING_ARGS, *LOADING_ARGS):
        if model_args.get(name) is not None:
            kwargs[name] = model_args[name]
    if "keep_ratio" in kwargs and isinstance(kwargs["keep_ratio"], str):
        raise ValueError(f"`keep_ratio` must be a real number in [0.05, 1.0], "
                         f"got {kwargs['keep_ratio']!r}")  # fmt: skip
    if model_args.get("layer") is not None:
        kwargs["layer"] = parse_layer(model_args["layer"])
    if model_args.get("schedule") is not None:
        kwargs["schedule"] = parse_schedule(model_args["schedule"])
    device = model_args.get("device")
    if device is not None and "device_map" not in kwargs:
        kwargs["device"] = str(device)
    batch = model_args.get("batch_size")
    sample_log = model_args.get("sample_log")
    return PluginSettings(
        vissparse=kwargs,
        batch_size=1 if batch is None else _positive_int(batch, "batch_size"),
        max_new_tokens=_positive_int(model_args.get("max_new_tokens", 128), "max_new_tokens"),
        sample_log=None if sample_log is None else str(sample_log),
    )
