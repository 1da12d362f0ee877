"""The shipped testbed checkpoints: one folder per family, each with its model card.

Example:
    >>> set(shipped_families()) <= {"llava", "qwen2_vl"}
    True
"""

from __future__ import annotations

from pathlib import Path

from vissparse.testbed.models import TESTBED_FAMILIES

ROOT = Path(__file__).resolve().parent


def shipped_families() -> tuple[str, ...]:
    """The families whose trained checkpoint ships with the package, in a fixed order.

    Example:
        >>> all((ROOT / f / "config.json").is_file() for f in shipped_families())
        True
    """
    return tuple(f for f in TESTBED_FAMILIES if (ROOT / f / "model.safetensors").is_file())


def checkpoint_dir(family: str) -> Path:
    """The folder of the shipped checkpoint of ``family`` ("llava" or "qwen2_vl").

    Load it like any downloaded checkpoint: ``VisSparse(base_model=checkpoint_dir(f))``.

    Example:
        >>> checkpoint_dir("gemma3")
        Traceback (most recent call last):
        ...
        ValueError: `family` must be one of ('llava', 'qwen2_vl'), got 'gemma3'
    """
    if family not in TESTBED_FAMILIES:
        raise ValueError(f"`family` must be one of {TESTBED_FAMILIES}, got {family!r}")
    if family not in shipped_families():
        raise FileNotFoundError(
            f"no trained {family!r} testbed checkpoint ships with this version (shipped: "
            f"{shipped_families()}); train one with `vissparse testbed train --family "
            f"{family} --out DIR` and pass DIR"
        )
    return ROOT / family
