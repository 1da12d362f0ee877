"""Where pruning happens inside the language model, and how many tokens each layer sees.

A schedule is a list of ``(layer, keep_ratio)`` stages: from ``layer`` on, the language
model sees only ``keep_ratio`` of each image's tokens (a fraction of the ORIGINAL count).
FastV is one stage, ``[(2, r)]``; PyramidDrop is several, ``[(8, .5), (16, .25), (24,
.125)]``. Pure code: no model here.
"""

from __future__ import annotations

import itertools
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from vissparse.keep_ratio import validate_keep_ratio
from vissparse.strategies.topk import kept_count

# PyramidDrop's stages for 32-layer LLaVA-1.5 (Xing et al., 2024): halve at 8, 16, 24.
PDROP_LAYERS = (8, 16, 24)
# FastV's layer K (Chen et al., 2024): the layer of ``stage="llm"`` when none is given.
DEFAULT_LAYER = 2


def schedule_pairs(schedule: object) -> tuple[tuple[object, object], ...]:
    """``schedule`` as a tuple of ``(layer, keep_ratio)`` pairs, or a one-line error.

    The values are checked by :meth:`LayerSchedule.build`; this checks the form.

    Example:
        >>> schedule_pairs([[8, 0.5], (16, 0.25)])
        ((8, 0.5), (16, 0.25))
        >>> schedule_pairs({8: 0.5})
        Traceback (most recent call last):
        ...
        ValueError: `schedule` must be a non-empty list of (layer, keep_ratio) pairs such as [(8, 0.5), (16, 0.25)], got {8: 0.5}
    """  # noqa: E501
    form = "a non-empty list of (layer, keep_ratio) pairs such as [(8, 0.5), (16, 0.25)]"
    if isinstance(schedule, str | Mapping) or not isinstance(schedule, Sequence) or not schedule:
        raise ValueError(f"`schedule` must be {form}, got {schedule!r}")
    pairs = []
    for pair in schedule:
        if isinstance(pair, str | Mapping) or not isinstance(pair, Sequence) or len(pair) != 2:
            raise ValueError(f"`schedule` entries must be (layer, keep_ratio) pairs, got {pair!r}")
        pairs.append((pair[0], pair[1]))
    return tuple(pairs)


def _layer(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or int(value) < 0:
        raise ValueError(f"`{name}` must be a layer index (an int >= 0), got {value!r}")
    return int(value)


@dataclass(frozen=True)
class LayerSchedule:
    """Pruning stages inside the language model: ``((layer, keep_ratio), ...)``.

    Layers strictly increase; keep ratios (fractions of each image's original tokens)
    do not increase. The last ratio is the final keep ratio.

    Example:
        >>> LayerSchedule.build(layer=(8, 16, 24), keep_ratio=0.125).stages
        ((8, 0.5), (16, 0.25), (24, 0.125))
        >>> LayerSchedule.build(layer=2, keep_ratio=0.25).tokens_per_layer(4, 100)
        [100, 100, 25, 25]
    """

    stages: tuple[tuple[int, float], ...]

    @classmethod
    def build(
        cls,
        layer: int | Sequence[int] = 2,
        keep_ratio: float = 0.1,
        schedule: Sequence[tuple[int, float]] | None = None,
    ) -> LayerSchedule:
        """From ``layer`` (one index, or several with geometric ratios) or a ``schedule``.

        Several layers without a schedule keep ``keep_ratio ** (s / S)`` at stage ``s`` of
        ``S`` (PyramidDrop's constant factor per stage). A ``schedule`` gives the stages
        explicitly; its last ratio must equal ``keep_ratio``.
        """
        keep_ratio = validate_keep_ratio(keep_ratio)
        if schedule is not None:
            stages = [(_layer(layer, "schedule"), validate_keep_ratio(ratio, "schedule"))
                      for layer, ratio in schedule_pairs(schedule)]  # fmt: skip
            if abs(stages[-1][1] - keep_ratio) > 1e-9:
                raise ValueError(
                    f"the last stage of `schedule` keeps {stages[-1][1]:g} but `keep_ratio` is "
                    f"{keep_ratio:g}; they must agree"
                )
        else:
            layers = [layer] if not isinstance(layer, Sequence) else list(layer)
            if not layers:
                raise ValueError("`layer` must be a layer index or a non-empty list of them")
            ints = [_layer(value, "layer") for value in layers]
            n = len(ints)
            ratios = [round(keep_ratio ** ((s + 1) / n), 6) for s in range(n)]
            ratios[-1] = keep_ratio
            stages = list(zip(ints, ratios, strict=True))
        for (a, ra), (b, rb) in itertools.pairwise(stages):
            if b <= a or rb > ra:
                raise ValueError(
                    f"stages must have increasing layers and non-increasing keep ratios, got "
                    f"{stages}"
                )
        return cls(tuple(stages))

    @property
    def layers(self) -> tuple[int, ...]:
        """The layers at which tokens are dropped."""
        return tuple(layer for layer, _ in self.stages)

    @property
    def keep_ratio(self) -> float:
        """The final keep ratio."""
        return self.stages[-1][1]

    def relative_ratios(self) -> list[float]:
        """Each stage's ratio as a fraction of the tokens the previous stage left."""
        out, previous = [], 1.0
        for _, ratio in self.stages:
            out.append(min(1.0, ratio / previous))
            previous = ratio
        return out

    def check_depth(self, n_layers: int) -> None:
        """A ``ValueError`` naming ``layer`` if a stage lies beyond the model's layers."""
        if self.layers[-1] >= n_layers:
            raise ValueError(
                f"`layer` {self.layers[-1]} is beyond the language model's {n_layers} layers "
                f"(0..{n_layers - 1})"
            )

    def tokens_per_layer(self, n_layers: int, n_image: int) -> list[int]:
        """Image tokens each of ``n_layers`` layers sees for an image of ``n_image`` tokens.

        Each stage keeps its relative ratio of the tokens the previous stage left
        (:meth:`relative_ratios`), counted as top-k counts them.
        """
        self.check_depth(n_layers)
        out, alive = [], n_image
        stages = dict(zip(self.layers, self.relative_ratios(), strict=True))
        for layer in range(n_layers):
            if layer in stages:
                alive = kept_count(stages[layer], alive)
            out.append(alive)
        return out


def average_tokens(per_layer: Sequence[float]) -> float:
    """The mean over layers: the fair token count of a layer-wise setting.

    Example:
        >>> average_tokens([100, 100, 25, 25])
        62.5
    """
    return sum(per_layer) / max(1, len(per_layer))


def schedule_for_average(
    layers: Sequence[int], n_layers: int, average: float
) -> LayerSchedule | None:
    """Geometric stages at ``layers`` whose image tokens per layer average ``average``.

    The fair comparison with input-stage pruning at keep ``average``: the same image
    tokens per layer on average. ``None`` when no final keep ratio in [0.05, 1.0]
    reaches it (the layers before the first stage alone see more).

    Example:
        >>> schedule_for_average([1], 4, 0.5).stages
        ((1, 0.3333),)
        >>> schedule_for_average([1], 4, 0.25) is None
        True
    """

    def mean_fraction(final: float) -> float:
        n = len(layers)
        fractions = [1.0] * n_layers
        for s, start in enumerate(layers):
            for layer in range(start, n_layers):
                fractions[layer] = final ** ((s + 1) / n)
        return sum(fractions) / n_layers

    low, high = 0.05, 1.0
    if mean_fraction(low) > average + 1e-9:
        return None
    for _ in range(60):
        mid = (low + high) / 2
        low, high = (mid, high) if mean_fraction(mid) < average else (low, mid)
    return LayerSchedule.build(tuple(layers), round(high, 4))
