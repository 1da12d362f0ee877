"""``PruningConfig``: the validated settings of one pruning pipeline."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from vissparse.keep_ratio import validate_keep_ratio
from vissparse.strategies.base import MaskStrategy, TokenScorer
from vissparse.strategies.registry import get_scorer, get_strategy

MODES = ("drop", "mask")
Mode = Literal["drop", "mask"]


@dataclass
class PruningConfig:
    """What to keep and how.

    Attributes:
        keep_ratio: fraction of each image's tokens to keep, a real number in [0.05, 1.0].
        scorer: a registered scorer name (``"cosine"``, ``"random"``, ...) or an instance.
        strategy: a registered strategy name (``"topk"``) or an instance.
        mode: ``"drop"`` removes pruned tokens from the sequence (real savings);
            ``"mask"`` keeps them but zeroes them in the attention mask.

    Example:
        >>> PruningConfig(keep_ratio=0.25).keep_ratio
        0.25
        >>> PruningConfig(keep_ratio=float("nan"))
        Traceback (most recent call last):
        ...
        ValueError: `keep_ratio` must be a real number in [0.05, 1.0], got nan
    """

    keep_ratio: float = 0.10
    scorer: str | TokenScorer = "cosine"
    strategy: str | MaskStrategy = "topk"
    mode: Mode = "drop"

    def __post_init__(self) -> None:
        self.keep_ratio = validate_keep_ratio(self.keep_ratio)
        if isinstance(self.scorer, str):
            get_scorer(self.scorer)  # an unknown name fails here, before any model loads
        if isinstance(self.strategy, str):
            get_strategy(self.strategy)
        if not isinstance(self.scorer, str | TokenScorer):
            raise TypeError(
                f"`scorer` must be a registered name or a TokenScorer, got {self.scorer!r}"
            )
        if not isinstance(self.strategy, str | MaskStrategy):
            raise TypeError(
                f"`strategy` must be a registered name or a MaskStrategy, got {self.strategy!r}"
            )
        if self.mode not in MODES:
            raise ValueError(f"`mode` must be one of {MODES}, got {self.mode!r}")
