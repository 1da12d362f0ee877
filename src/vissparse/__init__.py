"""VisSparse: training-free visual-token pruning for vision-language models.

Example:
    >>> from vissparse import VisSparse
    >>> model = VisSparse(base_model="mock", keep_ratio=0.10, mock=True, dim=32, n_tokens=64)
    >>> model.keep_ratio
    0.1
"""

from vissparse.api import VisSparse
from vissparse.config import PruningConfig
from vissparse.strategies import (
    MaskStrategy,
    TokenScorer,
    get_scorer,
    get_strategy,
    register_scorer,
    register_strategy,
)

__all__ = [
    "MaskStrategy",
    "PruningConfig",
    "TokenScorer",
    "VisSparse",
    "VisSparseModule",
    "get_scorer",
    "get_strategy",
    "register_scorer",
    "register_strategy",
]
__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    # Lightning is imported only when the Lightning wrapper is asked for.
    if name == "VisSparseModule":
        from vissparse.lightning import VisSparseModule

        return VisSparseModule
    raise AttributeError(f"module 'vissparse' has no attribute {name!r}")
