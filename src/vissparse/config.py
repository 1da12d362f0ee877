"""``PruningConfig``: the validated settings of one pruning pipeline."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from vissparse.keep_ratio import validate_keep_ratio
from vissparse.llm.schedule import DEFAULT_LAYER, LayerSchedule, schedule_pairs
from vissparse.strategies.base import MaskStrategy, TokenScorer, reads_llm_attention
from vissparse.strategies.registry import get_scorer, get_strategy

MODES = ("drop", "mask")
Mode = Literal["drop", "mask"]
STAGES = ("input", "llm")
Stage = Literal["input", "llm"]
POSITIONS = ("keep", "compact")
Positions = Literal["keep", "compact"]


@dataclass
class PruningConfig:
    """What to keep and how.

    Attributes:
        keep_ratio: fraction of each image's tokens to keep, a real number in [0.05, 1.0].
        scorer: a registered scorer name (``"cosine"``, ``"random"``, ...) or an instance.
        strategy: a registered strategy name (``"topk"``) or an instance.
        mode: ``"drop"`` removes pruned tokens from the sequence (real savings);
            ``"mask"`` keeps them but zeroes them in the attention mask.
        stage: ``"input"`` prunes before the language model; ``"llm"`` inside it: the
            first ``layer`` layers see every image token, the layers from ``layer`` on
            only the kept ones (FastV, PyramidDrop).
        layer: with ``stage="llm"``, the layer K at which tokens are dropped (``None``:
            layer 2, FastV's), or several layers (PyramidDrop-style stages keeping
            ``keep_ratio ** (s / S)``). Refused with ``stage="input"`` and with ``schedule``.
        schedule: with ``stage="llm"``, explicit ``(layer, keep_ratio)`` stages instead of
            ``layer``; the last ratio must equal ``keep_ratio``.
        positions: ``"keep"`` (default): kept tokens keep their original positions and
            decoding continues after the unpruned prompt; ``"compact"`` (drop mode, input
            stage, 1-D RoPE families): the kept sequence is renumbered 0, 1, ..., as vLLM
            numbers it, so the HF path and the vLLM plugin give the same tokens.
        compile: run the language model compiled (HF models, ``stage="input"``):
            transformers' static KV cache and ``torch.compile`` of prefill and decode (CUDA
            graphs on a GPU), the pruned prompt left-padded (masked) to a length bucket so
            a new keep ratio or prompt length reuses the compiled graphs; the baseline of a
            paired measurement runs compiled the same way. See :mod:`vissparse.hf.compiled`.

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
    stage: Stage = "input"
    layer: int | tuple[int, ...] | None = None
    schedule: tuple[tuple[int, float], ...] | None = None
    positions: Positions = "keep"
    compile: bool = False

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
        if self.stage not in STAGES:
            raise ValueError(f"`stage` must be one of {STAGES}, got {self.stage!r}")
        if self.positions not in POSITIONS:
            raise ValueError(f"`positions` must be one of {POSITIONS}, got {self.positions!r}")
        if self.positions == "compact" and (self.mode != "drop" or self.stage != "input"):
            raise ValueError(
                "`positions`='compact' renumbers the dropped sequence: it needs mode='drop' and "
                f"stage='input', got mode={self.mode!r}, stage={self.stage!r}"
            )
        if not isinstance(self.compile, bool):
            raise TypeError(f"`compile` must be a bool, got {self.compile!r}")
        if self.compile and self.stage != "input":
            raise ValueError(
                "`compile`=True runs with stage='input' only (the in-LLM hooks change the "
                f"sequence inside the model), got stage={self.stage!r}"
            )
        if isinstance(self.layer, list):
            self.layer = tuple(self.layer)
        if self.schedule is not None:
            self.schedule = schedule_pairs(self.schedule)  # type: ignore[assignment]
            if self.layer is not None:
                raise ValueError(
                    f"`layer`={self.layer!r} and `schedule` were both given: the schedule names "
                    "its own layers; pass one of them"
                )
        if self.stage != "llm" and self.layer is not None:
            raise ValueError(
                f"`layer`={self.layer!r} applies to stage='llm' only (pruning inside the "
                f"language model), got stage={self.stage!r}"
            )
        scorer = get_scorer(self.scorer) if isinstance(self.scorer, str) else self.scorer
        reads_llm = reads_llm_attention(scorer)  # type: ignore[arg-type]
        if self.stage == "llm":
            schedule = self.layer_schedule()  # validates layer / schedule against keep_ratio
            if reads_llm and schedule.layers[0] == 0:
                raise ValueError(
                    f"`scorer` {getattr(scorer, 'name', scorer)!r} reads the attention of the "
                    "layer before `layer`; `layer` must be >= 1"
                )
        else:
            if reads_llm:
                raise ValueError(
                    f"`scorer` {getattr(scorer, 'name', scorer)!r} reads attention inside the "
                    "language model: pass stage='llm' (and `layer`)"
                )
            if self.schedule is not None:
                raise ValueError("`schedule` applies to stage='llm' only")

    def layer_schedule(self) -> LayerSchedule:
        """The stages of ``stage="llm"`` pruning.

        Example:
            >>> PruningConfig(keep_ratio=0.25, stage="llm", layer=2).layer_schedule().stages
            ((2, 0.25),)
        """
        layer = DEFAULT_LAYER if self.layer is None else self.layer
        return LayerSchedule.build(layer, self.keep_ratio, self.schedule)
