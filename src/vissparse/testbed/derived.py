"""Every question the templates can ask about an existing scene, with its answer.

Training uses these as extra turns of a multi-turn conversation about one image (as
LLaVA's instruction tuning does), so each image forward pass teaches several answers.
The semantics are those of :mod:`vissparse.testbed.questions`; a question is listed only
where its answer is well defined (a unique referent, a clear side, an unambiguous row).
Held-out evaluation never uses them: it asks the balanced single questions.

Example:
    >>> from vissparse.testbed.scenes import Obj
    >>> objs = [Obj("circle", "red", 20, 30, 60), Obj("square", "blue", 14, 90, 62)]
    >>> answers = {q: a for q, a, _ in scene_questions(objs)}
    >>> answers["What color is the object left of the blue square?"]
    'red'
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from vissparse.testbed.questions import COLOR_NAMES, MIDDLE, ROW
from vissparse.testbed.scenes import IMAGE_SIZE, PLURALS, SHAPES, Obj


def _in_row(objects: Sequence[Obj], anchor: Obj, axis: int) -> str | None:
    """The colour of the one object before ``anchor`` along ``axis`` in its row, if clear."""
    at = (anchor.x, anchor.y)
    hits, near = [], []
    for o in objects:
        pos = (o.x, o.y)
        if o is anchor or pos[axis] >= at[axis]:
            continue
        off = abs(pos[1 - axis] - at[1 - axis])
        if off <= ROW:
            hits.append(o)
        elif off < 3 * ROW:
            near.append(o)
    return hits[0].color if len(hits) == 1 and not near else None


def relation_labels(objects: Sequence[Obj]) -> np.ndarray:
    """``[len(objects), 2]``: the colour class of the object left of, then above, each one.

    Class ``k`` is ``COLOR_NAMES[k - 1]``; 0 where the relation question about that object
    has no answer (no object, or no clear one, before it in its row or column). These are
    what "What color is the object left of / above ..." asks about each object.

    Example:
        >>> objs = [Obj("circle", "red", 20, 30, 60), Obj("square", "blue", 14, 90, 62)]
        >>> relation_labels(objs).tolist()
        [[0, 0], [1, 0]]
    """
    out = np.zeros((len(objects), 2), dtype=np.int64)
    for i, anchor in enumerate(objects):
        for axis in (0, 1):
            color = _in_row(objects, anchor, axis)
            out[i, axis] = 0 if color is None else COLOR_NAMES.index(color) + 1
    return out


# What a wrong answer to a relation question names (``relation_error``), in the order
# they are tried: the colour of another object before the anchor along the asked axis
# but off its row (or column), of an object after it, the anchor's own colour, or no
# other object's colour.
RELATION_ERRORS = ("before, off its row", "after it", "its own colour", "no object's colour")


def relation_error(question: dict[str, Any], answer: str) -> str | None:
    """Which of ``RELATION_ERRORS`` a relation ``answer`` makes (None if it is right).

    Example:
        >>> objs = [Obj("circle", "red", 14, 60, 60), Obj("square", "blue", 14, 30, 60),
        ...         Obj("cross", "green", 14, 30, 100)]
        >>> q = {"question": "What color is the object left of the red circle?",
        ...      "answer": "blue", "objects": objs}
        >>> relation_error(q, "green"), relation_error(q, "blue")
        ('before, off its row', None)
    """
    from vissparse.bench.paired import normalize_answer

    given = normalize_answer(answer)
    if given == normalize_answer(str(question["answer"])):
        return None
    text = str(question["question"]).rstrip("?").split()
    color, shape, axis = text[-2], text[-1], 0 if "left" in text else 1
    objects: Sequence[Obj] = question["objects"]
    anchor = next(o for o in objects if (o.color, o.shape) == (color, shape))
    at = (anchor.x, anchor.y)
    others = [o for o in objects if o is not anchor and o.color == given]
    if any((o.x, o.y)[axis] < at[axis] for o in others):
        return RELATION_ERRORS[0]
    if others:
        return RELATION_ERRORS[1]
    return RELATION_ERRORS[2] if given == color else RELATION_ERRORS[3]


def scene_questions(objects: Sequence[Obj]) -> list[tuple[str, str, str]]:
    """``(question, answer, family)`` for every template instance defined on ``objects``."""
    shapes = Counter(o.shape for o in objects)
    colors = Counter(o.color for o in objects)
    pairs = Counter((o.color, o.shape) for o in objects)
    out: list[tuple[str, str, str]] = []
    mid = IMAGE_SIZE / 2
    for o in objects:
        if shapes[o.shape] == 1:
            out.append((f"What color is the {o.shape}?", o.color, "attribute"))
            if abs(o.x - mid) >= MIDDLE:
                side = "left" if o.x < mid else "right"
                out.append((f"On which side is the {o.shape}?", side, "position"))
        if colors[o.color] == 1:
            out.append((f"What shape is the {o.color} object?", o.shape, "attribute"))
        if pairs[(o.color, o.shape)] == 1:
            for axis, word in ((0, "left of"), (1, "above")):
                target = _in_row(objects, o, axis)
                if target is not None:
                    question = f"What color is the object {word} the {o.color} {o.shape}?"
                    out.append((question, target, "relation"))
    for c in COLOR_NAMES:
        out.append((f"How many {c} objects are there?", str(colors[c]), "counting"))
        for s in SHAPES:
            out.append((f"Is there a {c} {s}?", "yes" if pairs[(c, s)] else "no", "existence"))
    for s in SHAPES:
        out.append((f"How many {PLURALS[s]} are there?", str(shapes[s]), "counting"))
    return out


def conversation(
    question: dict[str, object],
    rng: np.random.Generator,
    extra_turns: int,
    families: Sequence[str] | None = None,
) -> list[tuple[str, str]]:
    """The question's own turn, then up to ``extra_turns`` distinct derived ones.

    ``families``, when given, limits the derived turns to those question families.

    Each extra turn draws a family uniformly, then (for existence) yes or no evenly,
    then a question of that kind, so no family or answer floods the conversation.
    """
    turns = [(str(question["question"]), str(question["answer"]))]
    pool: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for q, a, family in scene_questions(question["objects"]):  # type: ignore[arg-type]
        if q != turns[0][0] and (families is None or family in families):
            key = (family, a if family == "existence" else "")
            pool.setdefault(key, []).append((q, a))
    for _ in range(extra_turns):
        if not pool:
            break
        families = sorted({f for f, _ in pool})
        family = families[int(rng.integers(len(families)))]
        keys = sorted(k for k in pool if k[0] == family)
        key = keys[int(rng.integers(len(keys)))]
        turns.append(pool[key].pop(int(rng.integers(len(pool[key])))))
        if not pool[key]:
            del pool[key]
    return turns
