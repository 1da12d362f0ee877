"""The training stream of the testbed: generated questions with curricula over items.

``QuestionStream(seed, ...)`` yields ``make_question(i, seed, "train")`` for ``i = 0, 1,
...``, each with up to ``extra_turns`` questions derived from the same scene, while the
background clutter, the most objects per scene and the question families grow over the
first items (see :class:`QuestionStream`).

Example:
    >>> item = next(iter(QuestionStream(0, extra_turns=2)))
    >>> item["family"], len(item["turns"])
    ('attribute', 3)
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
from torch.utils.data import IterableDataset

from vissparse.testbed.derived import conversation
from vissparse.testbed.questions import FAMILIES, make_question
from vissparse.testbed.scenes import MAX_OBJECTS

# The question families in the order training introduces them (``family_ramp``): the
# language model first learns to find an object named in the question, then to count
# them, then where they are. Asking everything from the start stalled near the text-only
# level in our development runs (see docs/testbed/history.md).
FAMILY_STAGES = (("attribute",), ("existence", "counting"), ("relation", "position"))


def _ramp(at: int, span: int) -> float:
    """How far a curriculum of ``span`` items has grown at item ``at`` (0 to 1).

    Items before the ramp (``at < 0``) and every item when ``span`` is 0 are at 1.

    >>> _ramp(50, 200), _ramp(400, 200), _ramp(-3, 200), _ramp(7, 0)
    (0.25, 1.0, 1.0, 1.0)
    """
    return min(1.0, at / span) if span and at >= 0 else 1.0


class QuestionStream(IterableDataset):
    """Training items: ``make_question(i, seed, "train")`` for ``i = start, start+1, ...``.

    With ``clutter_ramp = R`` the background clutter of item ``i`` is ``min(1, i / R)``:
    the first scenes are drawn on a plain background and the texture and noise grow to
    the held-out level by item ``R`` (a curriculum; held-out scenes are always at 1).
    With ``objects_ramp = R`` the most objects a scene may hold grows likewise from 2 to
    ``MAX_OBJECTS`` by item ``R``. With ``family_ramp = R`` the question families come in
    the stages of ``FAMILY_STAGES``, evenly spaced over the first ``R`` items (first
    attribute only, every family from item ``R`` on), for the balanced
    question and the derived turns alike; each family then draws its questions in order.
    The ramps start after ``warm_items`` items at full difficulty (the vision stage).
    ``family_weights`` (family -> n) asks the balanced question of a family ``n`` times
    per cycle instead of once (the derived turns are unchanged); families not named
    keep 1.
    With ``extra_turns > 0`` each item also carries ``turns``: its own question then up
    to that many derived questions about the same scene (see
    :func:`vissparse.testbed.derived.conversation`), drawn from a stream seeded by
    ``(seed, i)``.
    """

    def __init__(
        self,
        seed: int,
        start: int = 0,
        extra_turns: int = 0,
        clutter_ramp: int = 0,
        objects_ramp: int = 0,
        family_ramp: int = 0,
        warm_items: int = 0,
        family_weights: dict[str, int] | None = None,
    ) -> None:
        self.seed, self.start, self.extra_turns = seed, start, extra_turns
        self.family_weights = check_family_weights(family_weights)
        self.clutter_ramp, self.objects_ramp = clutter_ramp, objects_ramp
        self.family_ramp, self.warm_items = family_ramp, warm_items

    def families(self, i: int) -> tuple[str, ...]:
        """The question families item ``i`` may ask (all of them once the ramp is over).

        A family of weight ``n`` (``family_weights``) is listed ``n`` times in a row.
        """
        i -= self.warm_items
        allowed: tuple[str, ...] = FAMILIES
        if self.family_ramp and 0 <= i < self.family_ramp:
            last = len(FAMILY_STAGES) - 1
            stage = min(last, int(i * last / self.family_ramp))
            allowed = tuple(f for group in FAMILY_STAGES[: stage + 1] for f in group)
        weights = self.family_weights
        return tuple(f for f in allowed for _ in range(weights.get(f, 1)))

    def __iter__(self) -> Iterator[dict[str, Any]]:
        i = self.start
        drawn: dict[str, int] = {}  # next question per family, once the family ramp starts
        while True:
            families = self.families(i)
            if families != FAMILIES and not drawn:  # past every index used so far
                drawn = dict.fromkeys(FAMILIES, -(-i // len(FAMILIES)))
            if drawn:
                family = families[i % len(families)]
                index = drawn[family] * len(FAMILIES) + FAMILIES.index(family)
                drawn[family] += 1
            else:
                index = i
            at = i - self.warm_items  # the first ``warm_items`` are at full difficulty
            clutter = _ramp(at, self.clutter_ramp)
            top = 2 + int(_ramp(at, self.objects_ramp) * (MAX_OBJECTS - 2) + 0.5)
            item = make_question(index, self.seed, "train", clutter, top)
            if self.extra_turns:
                rng = np.random.default_rng([self.seed, i, 7])
                item["turns"] = conversation(item, rng, self.extra_turns, families)
            yield item
            i += 1


def check_family_weights(weights: dict[str, int] | None) -> dict[str, int]:
    """``weights`` checked: question families mapped to ints >= 1 (None: no weights).

    >>> check_family_weights({"counting": 3})
    {'counting': 3}
    """
    weights = dict(weights or {})
    for family, n in weights.items():
        if family not in FAMILIES:
            raise ValueError(f"`family_weights` names {family!r}; expected one of {FAMILIES}")
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"`family_weights[{family!r}]` must be an int >= 1, got {n!r}")
    return weights
