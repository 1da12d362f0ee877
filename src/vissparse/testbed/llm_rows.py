"""Where the in-LLM methods prune a testbed model, and which keep ratios give them a row.

A method that prunes inside the language model (fastv, pdrop, text-attn) runs in the
testbed eval with ``stage="llm"`` at equal AVERAGE image tokens per layer: the row for
keep ``r`` sees ``r`` of the image tokens per layer on average, like the input-stage
rows. Its first layers see every image token, so a keep ratio below what they already
see gives it no row (:func:`lowest_llm_keep`), and the eval refuses such a request up
front (:func:`check_llm_keeps`).

Example:
    >>> llm_layers("pdrop", 4)
    (1, 2, 3)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from vissparse.testbed.oracle import is_oracle

__all__ = ["check_llm_keeps", "llm_layers", "llm_stage", "lowest_llm_keep", "text_layers"]


# The layers at which the in-LLM methods prune a testbed model (4 LM layers): FastV's
# layer 2 of 32 is early, here the first layer that has a layer before it; PyramidDrop's
# stages at 8, 16 and 24 of 32 are every later layer.
def llm_layers(scorer: str, n_layers: int) -> tuple[int, ...]:
    """The pruning layers of in-LLM method ``scorer`` on an ``n_layers``-layer model.

    Example:
        >>> llm_layers("fastv", 4), llm_layers("pdrop", 4)
        ((1,), (1, 2, 3))
    """
    return tuple(range(1, n_layers)) if scorer == "pdrop" else (1,)


def _in_llm(scorer: str) -> bool:
    """Whether ``scorer`` prunes inside the language model (it reads its attention)."""
    from vissparse.strategies.base import reads_llm_attention
    from vissparse.strategies.registry import build_scorer

    return not is_oracle(scorer) and reads_llm_attention(build_scorer(scorer))


def llm_stage(scorer: str, model: Any, keep: float) -> dict[str, Any] | None:
    """The ``stage="llm"`` settings of ``scorer`` at equal average tokens per layer.

    ``{}`` for an input-stage method; ``None`` when ``keep`` is below what the layers
    before the first stage already see. ``model`` may be the model or its config.
    """
    from vissparse.llm.schedule import schedule_for_average

    if not _in_llm(scorer):
        return {}
    n_layers = text_layers(model)
    schedule = schedule_for_average(llm_layers(scorer, n_layers), n_layers, keep)
    if schedule is None:
        return None
    return {"stage": "llm", "schedule": schedule.stages, "keep_ratio": schedule.keep_ratio}


def text_layers(model: Any) -> int:
    """The language model's depth of a testbed model (or of its config)."""
    config = getattr(model, "config", model)
    return int(config.text_config.num_hidden_layers)


def lowest_llm_keep(scorer: str, n_layers: int) -> float:
    """The lowest average share of image tokens per layer in-LLM ``scorer`` can reach.

    Its first layers see every image token; the bound is rounded up to 3 decimals.

    Example:
        >>> lowest_llm_keep("fastv", 4)  # layer 0 sees all, layers 1-3 keep 0.05
        0.288
    """
    from vissparse.keep_ratio import MIN_KEEP_RATIO
    from vissparse.llm.schedule import LayerSchedule

    n = 10**6
    schedule = LayerSchedule.build(llm_layers(scorer, n_layers), MIN_KEEP_RATIO)
    mean = sum(schedule.tokens_per_layer(n_layers, n)) / (n_layers * n)
    return math.ceil(mean * 1000 - 1e-9) / 1000


def check_llm_keeps(
    scorers: Sequence[str], keep_ratios: Sequence[float], model: Any, where: str,
    name: str = "keep_ratios",
) -> None:  # fmt: skip
    """Refuse a scorer that would get no row: an in-LLM method at keep ratios all too low.

    ``model`` is a testbed model or its config, ``where`` its name in the message.

    Example:
        >>> from types import SimpleNamespace as NS
        >>> config = NS(text_config=NS(num_hidden_layers=4))
        >>> check_llm_keeps(["fastv"], [0.25], config, "llava")
        Traceback (most recent call last):
        ...
        ValueError: `keep_ratios` [0.25] give fastv no row on llava: it prunes inside the language model from layer 1 of 4, so its image tokens per layer average at least 0.288 of the image; give a keep ratio >= 0.288 (or 1.0)
    """  # noqa: E501
    for scorer in scorers:
        if not _in_llm(scorer) or any(
            k == 1.0 or llm_stage(scorer, model, k) is not None for k in keep_ratios
        ):
            continue
        n_layers = text_layers(model)
        low = lowest_llm_keep(scorer, n_layers)
        raise ValueError(
            f"`{name}` {list(keep_ratios)} give {scorer} no row on {where}: it prunes inside "
            f"the language model from layer {llm_layers(scorer, n_layers)[0]} of {n_layers}, "
            f"so its image tokens per layer average at least {low:g} of the image; give a "
            f"keep ratio >= {low:g} (or 1.0)"
        )
