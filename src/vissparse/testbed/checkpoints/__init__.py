"""The shipped testbed checkpoints: one folder per family, each with its model card.

Example:
    >>> checkpoint_dir("llava").name
    'llava'
"""

from __future__ import annotations

from pathlib import Path

from vissparse.testbed.models import TESTBED_FAMILIES

ROOT = Path(__file__).resolve().parent


def checkpoint_dir(family: str) -> Path:
    """The folder of the shipped checkpoint of ``family`` ("llava" or "qwen2_vl").

    Load it like any downloaded checkpoint: ``VisSparse(base_model=checkpoint_dir(f))``.
    """
    if family not in TESTBED_FAMILIES:
        raise ValueError(f"`family` must be one of {TESTBED_FAMILIES}, got {family!r}")
    return ROOT / family
