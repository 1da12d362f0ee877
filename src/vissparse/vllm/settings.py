"""What an engine asks of the plugin: the ``vissparse`` entry of its HF config overrides.

``LLM(model=..., hf_overrides={"vissparse": {"keep_ratio": 0.1, "scorer": "divprune"}})``
(or ``vllm serve ... --hf-overrides '{"vissparse": {...}}'``) sets ``hf_config.vissparse``;
without it the plugin leaves the engine as vLLM built it. Pure Python: no vLLM import.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from vissparse.keep_ratio import validate_keep_ratio
from vissparse.selection import SelectionCore
from vissparse.strategies.base import MaskStrategy, TokenScorer
from vissparse.strategies.downsample import refuse_resizing

KEY = "vissparse"
OPTIONS = ("keep_ratio", "scorer", "strategy")
# Signals the vLLM path cannot give a method: attention and features inside the vision
# encoder (vLLM's encoder runs fused kernels), attention inside the language model (the
# count per image is fixed before the model runs), and per-sample keys (the pixels and
# the prompt string do not reach the model's embedding step).
UNSERVED_SIGNALS = {
    "vision_attention": "attention inside the vision encoder",
    "vision_keys": "keys inside the vision encoder",
    "vision_features": "vision features before the projector",
    "text_attention": "attention inside the language model (stage='llm')",
    "sample_keys": "per-sample random keys (the prompt string and pixels)",
    "prompt_texts": "the prompt as typed (the string does not reach the embedding step)",
}
REFUSED_OPTIONS = {
    "stage": "the count per image is fixed before the model runs, so only stage='input' serves",
    "layer": "only stage='input' serves",
    "schedule": "only stage='input' serves",
    "mode": "vLLM drops the pruned tokens (mode='drop'); mask mode saves nothing there",
    "positions": "positions follow the family: original M-RoPE positions for Qwen, vLLM's "
    "contiguous numbering for 1-D RoPE (the HF path's positions='compact')",
}


@dataclass(frozen=True)
class ServeSettings:
    """The checked ``vissparse`` overrides of one engine.

    Attributes:
        keep_ratio: fraction of each image's tokens the language model sees.
        scorer: a registered scorer name, or ``"package.module:Name"`` naming a
            :class:`TokenScorer` subclass (or instance) importable in every vLLM process.
        strategy: a registered strategy name or ``"package.module:Name"``.

    Example:
        >>> ServeSettings.parse({"keep_ratio": 0.1, "scorer": "divprune"}).keep_ratio
        0.1
        >>> ServeSettings.parse({"keep_ratio": 0.1, "scorer": "visionzip"})
        Traceback (most recent call last):
        ...
        ValueError: `vissparse.scorer` 'visionzip' reads attention inside the vision encoder, which the vLLM plugin cannot give it; use a method that reads the image tokens and the prompt (cosine, divprune, dart, cdpruner, ...)
    """  # noqa: E501

    keep_ratio: float
    scorer: str = "cosine"
    strategy: str = "topk"

    @classmethod
    def parse(cls, value: Any) -> ServeSettings:
        """Check an engine's ``hf_config.vissparse`` value, naming the key at fault."""
        if not isinstance(value, dict):
            raise TypeError(
                f"`{KEY}` in hf_overrides must be a dict such as "
                f'{{"keep_ratio": 0.1, "scorer": "divprune"}}, got {value!r}'
            )
        for key in value:
            if key in REFUSED_OPTIONS:
                raise ValueError(f"`{KEY}.{key}` is not supported by the vLLM plugin: "
                                 f"{REFUSED_OPTIONS[key]}")  # fmt: skip
            if key not in OPTIONS:
                raise ValueError(
                    f"`{KEY}.{key}` is not an option; expected some of {list(OPTIONS)}"
                )
        if "keep_ratio" not in value:
            raise ValueError(f"`{KEY}.keep_ratio` is required (a real number in [0.05, 1.0])")
        try:
            keep_ratio = validate_keep_ratio(value["keep_ratio"])
        except (TypeError, ValueError) as err:
            message = str(err).replace("`keep_ratio`", f"`{KEY}.keep_ratio`")
            raise ValueError(message) from None
        for key in ("scorer", "strategy"):
            if key in value and not isinstance(value[key], str):
                raise TypeError(f"`{KEY}.{key}` must be a name (str), got {value[key]!r}")
        settings = cls(keep_ratio, value.get("scorer", "cosine"), value.get("strategy", "topk"))
        settings.core()  # an unknown name or an unserved method fails here, at engine start
        return settings

    def core(self) -> SelectionCore:
        """The selection core of these settings (the same objects the HF path uses)."""
        scorer = _resolve(self.scorer, "scorer", TokenScorer)
        strategy = _resolve(self.strategy, "strategy", MaskStrategy)
        try:
            core = SelectionCore(scorer, strategy)
            refuse_resizing(core.scorer, "the vLLM plugin (it prunes after vLLM's processor)",
                            "resize the images before they reach vLLM, or use 'pool'")  # fmt: skip
        except (KeyError, ValueError) as err:
            message = err.args[0] if err.args else err
            raise ValueError(f"`{KEY}.scorer`/`{KEY}.strategy`: {message}") from None
        for signal, what in UNSERVED_SIGNALS.items():
            if signal in core.signals:
                raise ValueError(
                    f"`{KEY}.scorer` {self.scorer!r} reads {what}, which the vLLM plugin cannot "
                    "give it; use a method that reads the image tokens and the prompt (cosine, "
                    "divprune, dart, cdpruner, ...)"
                )
        return core


def settings_of(hf_config: Any) -> ServeSettings | None:
    """The engine's settings, or ``None`` where its config does not ask for VisSparse."""
    value = getattr(hf_config, KEY, None)
    return None if value is None else ServeSettings.parse(value)


def _resolve(spec: str, key: str, base: type) -> Any:
    """A registered name as is; ``"module:Name"`` imported (a class is instantiated)."""
    if ":" not in spec:
        return spec
    module_name, _, attr = spec.partition(":")
    try:
        obj = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"`{KEY}.{key}` {spec!r} cannot be imported: {err}") from None
    if isinstance(obj, type):
        obj = obj()
    if not isinstance(obj, base):
        raise TypeError(f"`{KEY}.{key}` {spec!r} is not a {base.__name__}, got {obj!r}")
    return obj
