r"""lmms-eval requests to batches and generation settings, and answers cut at stop strings.

Pure Python (no lmms-eval import). Requests are batched in the order lmms-eval gives
them, grouped only where they cannot share a ``generate`` call (another task, split or
``generation_kwargs``), so a batch of the plugin holds the same questions as a batch of
``vissparse testbed eval`` with the same batch size.

Example:
    >>> reqs = [("q0", {"until": ["\n"]}, None, 0, "t", "test"),
    ...         ("q1", {"until": ["\n"]}, None, 1, "t", "test"),
    ...         ("q2", {"max_new_tokens": 2}, None, 2, "t", "test")]
    >>> [list(b) for b in request_batches(reqs, batch_size=8)]
    [[0, 1], [2]]
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

# generation_kwargs keys that mean nothing to a HF generate call here
IGNORED_GEN_KEYS = ("until", "image_aspect_ratio")


def _group_key(args: Sequence[Any]) -> tuple[str, str, str]:
    """Requests with equal keys may share one ``generate`` call."""
    _, gen_kwargs, _, _, task, split = args
    return str(task), str(split), json.dumps(gen_kwargs, sort_keys=True, default=repr)


def request_batches(requests: Sequence[Sequence[Any]], batch_size: int) -> Iterator[list[int]]:
    """Indices of ``requests`` (each ``Instance.args``) in batches of at most ``batch_size``.

    A batch never mixes tasks, splits or generation settings; within a group the order
    of ``requests`` is kept, and groups come in the order of their first request.
    """
    groups: dict[tuple[str, str, str], list[int]] = {}
    for i, args in enumerate(requests):
        groups.setdefault(_group_key(args), []).append(i)
    for indices in groups.values():
        for start in range(0, len(indices), batch_size):
            yield indices[start : start + batch_size]


def generate_kwargs(gen_kwargs: dict[str, Any], default_max_new_tokens: int) -> dict[str, Any]:
    r"""HF ``generate`` keyword arguments from a task's ``generation_kwargs``.

    ``temperature`` 0 (lmms-eval's default) or absent means greedy decoding.

    Example:
        >>> generate_kwargs({"until": ["\n"], "max_new_tokens": 2, "temperature": 0}, 128)
        {'max_new_tokens': 2, 'do_sample': False}
        >>> generate_kwargs({"temperature": 0.7, "top_p": 0.9}, 16)
        {'max_new_tokens': 16, 'do_sample': True, 'temperature': 0.7, 'top_p': 0.9}
    """
    out: dict[str, Any] = {
        "max_new_tokens": int(gen_kwargs.get("max_new_tokens", default_max_new_tokens))
    }
    temperature = float(gen_kwargs.get("temperature") or 0.0)
    sample = bool(gen_kwargs.get("do_sample", False)) or temperature > 0
    out["do_sample"] = sample
    if sample:
        if temperature > 0:
            out["temperature"] = temperature
        if gen_kwargs.get("top_p") is not None:
            out["top_p"] = float(gen_kwargs["top_p"])
    if int(gen_kwargs.get("num_beams", 1) or 1) > 1:
        out["num_beams"] = int(gen_kwargs["num_beams"])
    return out


def stop_strings(gen_kwargs: dict[str, Any]) -> list[str]:
    """The task's ``until`` as a list (lmms-eval allows one string or a list).

    Example:
        >>> stop_strings({"until": "ASSISTANT:"}), stop_strings({})
        (['ASSISTANT:'], [])
    """
    until = gen_kwargs.get("until", [])
    if isinstance(until, str):
        return [until]
    if not isinstance(until, list | tuple) or not all(isinstance(u, str) for u in until):
        raise TypeError(f"`until` in generation_kwargs must be a string or a list of strings, "
                        f"got {until!r}")  # fmt: skip
    return list(until)


def cut_at_stops(text: str, stops: Sequence[str]) -> str:
    r"""``text`` up to the first stop string that occurs in it (empty stops are ignored).

    Example:
        >>> cut_at_stops("red\nblue", ["\n"]), cut_at_stops("red", [""])
        ('red', 'red')
    """
    for stop in stops:
        if stop:
            text = text.split(stop, 1)[0]
    return text
