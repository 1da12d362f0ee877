"""What every sub-command of ``vissparse`` shares: argument types, up-front checks, Ctrl-C.

Argument types turn a bad value into argparse's one-line usage error naming the flag
(``argument --n-samples: expected a positive integer, got 'x'``). A run interrupted
with Ctrl-C prints the table of its finished rows (already saved in ``--out`` row by
row) and exits 130 with one line: see :class:`Interrupted`.

Example:
    >>> positive_int("3")
    3
    >>> positive_int("x")
    Traceback (most recent call last):
    ...
    argparse.ArgumentTypeError: expected a positive integer, got 'x'
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from typing import Any

import torch

from vissparse.keep_ratio import MAX_KEEP_RATIO, MIN_KEEP_RATIO, validate_keep_ratio

INTERRUPTED = 130  # the shell's code for a run ended by SIGINT (128 + 2)


class Interrupted(Exception):
    """A run stopped by Ctrl-C; the message says what was kept. ``main`` exits 130."""


def interrupted(rows: Sequence[Any], where: Any = None) -> Interrupted:
    """The :class:`Interrupted` of a run that finished ``rows``, saved in ``where``.

    Example:
        >>> str(interrupted([{}], "out/sweep.json"))
        'interrupted: 1 finished row kept in out/sweep.json'
    """
    n = len(rows)
    if not n:
        return Interrupted("interrupted before the first row finished")
    kept = f"kept in {where}" if where else "shown above"
    return Interrupted(f"interrupted: {n} finished row{'s' * (n != 1)} {kept}")


def one_line(err: BaseException) -> str:
    r"""An error's message on one line (the lines of a long message joined by ``; ``).

    Example:
        >>> one_line(ValueError("first\n  second"))
        'first; second'
    """
    return "; ".join(line.strip() for line in str(err).splitlines() if line.strip())


def _number(text: str, kind: type = float) -> Any:
    try:
        value = kind(text)
    except ValueError:
        return None
    return value if kind is int or math.isfinite(value) else None


def keep_ratio(text: str) -> float:
    """A ``--keep-ratio``: a real number in [0.05, 1.0]."""
    value = _number(text)
    try:
        return validate_keep_ratio(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a real number in [{MIN_KEEP_RATIO}, {MAX_KEEP_RATIO}], got {text!r}"
        ) from None


def positive_int(text: str) -> int:
    """An int >= 1."""
    value = _number(text, int)
    if value is None or value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return int(value)


def non_negative_int(text: str) -> int:
    """An int >= 0."""
    value = _number(text, int)
    if value is None or value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return int(value)


def integer(text: str) -> int:
    """Any int (a seed)."""
    value = _number(text, int)
    if value is None:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}")
    return int(value)


def positive_float(text: str) -> float:
    """A finite number > 0."""
    value = _number(text)
    if value is None or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return float(value)


def non_negative_float(text: str) -> float:
    """A finite number >= 0."""
    value = _number(text)
    if value is None or value < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return float(value)


def share(text: str) -> float:
    """A share in [0, 1]."""
    value = _number(text)
    if value is None or not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}")
    return float(value)


def check_device(name: str) -> str:
    """``name`` if torch can run on it here, else ``ValueError`` naming ``--device``."""
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise ValueError(f"--device {name!r} is not a torch device (e.g. cpu, cuda)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name!r}: this torch build sees no CUDA device")
    return name


def refuse_ignored_flags(args: argparse.Namespace) -> None:
    """``vissparse bench``: flags that the chosen mode would ignore are errors, not silence."""
    if args.records and not args.json:
        raise ValueError("--records adds per-call records to the JSON: give --json too")
    if args.model_config:
        if args.records:
            raise ValueError("--records is for --mock runs")
        if args.n_samples is not None:
            raise ValueError("--n-samples is for --mock runs; --model-config times prompts")
    else:
        for flag, value in (("--dtype", args.dtype), ("--device", args.device)):
            if value is not None:
                raise ValueError(f"{flag} is for --model-config runs; --mock runs on the CPU")
        if args.batch_size is not None:
            raise ValueError("--batch-size is for --model-config runs; --mock answers one "
                             "sample per call")  # fmt: skip
        if args.stage != "input":
            raise ValueError("--stage llm is for --model-config runs: the mock has no LM layers")
        if args.compile:
            raise ValueError("--compile is for --model-config runs: the mock has no HF model")
    if args.layers and args.stage != "llm":
        raise ValueError("--layer applies to --stage llm")
