"""Visual questions about generated scenes, with balanced one-word answers.

Five question families, each a fixed template (``{c}`` a colour, ``{s}`` a shape):

==========  =====================================================  ======================
family      templates                                              answers
==========  =====================================================  ======================
attribute   ``What color is the {s}?`` (the only {s})               a colour or a shape
            ``What shape is the {c} object?`` (the only {c} one)
existence   ``Is there a {c} {s}?``                                 yes / no
counting    ``How many {c} objects are there?``                     0 to 9
            ``How many {s}s are there?``
relation    ``What color is the object left of the {c} {s}?``       a colour
            ``What color is the object above the {c} {s}?``
position    ``On which side is the {s}?``                           left / right
==========  =====================================================  ======================

"Left of X" means the one object in X's row (centres at most ``ROW`` pixels apart
vertically) to its left; every other object is either right of X or at least
``3 * ROW`` pixels off its row ("above" likewise with the axes swapped). "Is there a
{c} {s}?" answered "no" usually shows a {c} object of another shape and a {s} of another
colour. "On the left" means the centre lies at least ``MIDDLE`` pixels left of the
image's middle.

Question ``i`` of a list is a pure function of ``(split, seed, i)``: its family is
``FAMILIES[i % 5]`` and its answer cycles through the family's answers from an offset
drawn from ``(split, seed)``, so answers are balanced within each family and text alone
cannot beat chance. Splits draw from disjoint random streams.

Example:
    >>> q = make_questions(5, seed=0)
    >>> [x["family"] for x in q]
    ['attribute', 'existence', 'counting', 'relation', 'position']
    >>> q[0]["image"].size
    (128, 128)
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from vissparse.testbed.scenes import (
    COLORS,
    IMAGE_SIZE,
    LARGE,
    MAX_OBJECTS,
    PLURALS,
    SHAPES,
    SMALL,
    Obj,
    Where,
    draw_scene,
    place_objects,
)

FAMILIES = ("attribute", "existence", "counting", "relation", "position")
SPLITS = {"train": 0, "val": 1, "test": 2}
COLOR_NAMES = tuple(COLORS)
ANSWERS: dict[str, tuple[str, ...]] = {
    "attribute": COLOR_NAMES + SHAPES,
    "existence": ("yes", "no"),
    "counting": tuple(str(n) for n in range(10)),
    "relation": COLOR_NAMES,
    "position": ("left", "right"),
}
ROW = 6
MIDDLE = 10
Spec = tuple[str, str, int]
Scene = tuple[list[Spec], list[Where | None], str]


def _size(rng: np.random.Generator) -> int:
    return SMALL if rng.random() < 0.5 else LARGE


def _random_specs(
    rng: np.random.Generator, n: int, allowed: Callable[[str, str], bool]
) -> list[Spec]:
    pairs = [(s, c) for s in SHAPES for c in COLOR_NAMES if allowed(s, c)]
    picks = rng.integers(0, len(pairs), n)
    return [(*pairs[int(p)], _size(rng)) for p in picks]


def _n_objects(rng: np.random.Generator, top: int, at_least: int = 2) -> int:
    return int(rng.integers(max(2, at_least), max(top, at_least) + 1))


def _pick(rng: np.random.Generator, options: tuple[str, ...], avoid: str | None = None) -> str:
    choices = [o for o in options if o != avoid]
    return choices[int(rng.integers(len(choices)))]


def _attribute(rng: np.random.Generator, answer: str, top: int) -> Scene:
    n = _n_objects(rng, top)
    if answer in COLORS:  # the colour of the only object of some shape
        shape = _pick(rng, SHAPES)
        others = _random_specs(rng, n - 1, lambda s, c: s != shape)
        return [(shape, answer, _size(rng)), *others], [], f"What color is the {shape}?"
    color = _pick(rng, COLOR_NAMES)
    others = _random_specs(rng, n - 1, lambda s, c: c != color)
    return [(answer, color, _size(rng)), *others], [], f"What shape is the {color} object?"


def _existence(rng: np.random.Generator, answer: str, top: int) -> Scene:
    shape, color = _pick(rng, SHAPES), _pick(rng, COLOR_NAMES)
    n = _n_objects(rng, top)
    absent = lambda s, c: (s, c) != (shape, color)  # noqa: E731
    if answer == "yes":
        specs = [(shape, color, _size(rng)), *_random_specs(rng, n - 1, absent)]
    else:  # usually near misses: the colour on another shape, the shape in another colour
        near = [(_pick(rng, SHAPES, shape), color, _size(rng)),
                (shape, _pick(rng, COLOR_NAMES, color), _size(rng))]  # fmt: skip
        near = near[: int(rng.integers(0, 3))]
        specs = near + _random_specs(rng, max(n - len(near), 0), absent)
    order = rng.permutation(len(specs))
    return [specs[i] for i in order], [], f"Is there a {color} {shape}?"


def _counting(rng: np.random.Generator, answer: str, top: int) -> Scene:
    count = int(answer)
    n = _n_objects(rng, top, at_least=count)
    if rng.random() < 0.5:
        color = _pick(rng, COLOR_NAMES)
        hits = _random_specs(rng, count, lambda s, c: c == color)
        rest = _random_specs(rng, n - count, lambda s, c: c != color)
        question = f"How many {color} objects are there?"
    else:
        shape = _pick(rng, SHAPES)
        hits = _random_specs(rng, count, lambda s, c: s == shape)
        rest = _random_specs(rng, n - count, lambda s, c: s != shape)
        question = f"How many {PLURALS[shape]} are there?"
    return hits + rest, [], question


def _relation(rng: np.random.Generator, answer: str, top: int) -> Scene:
    shape, color = _pick(rng, SHAPES), _pick(rng, COLOR_NAMES)
    left = rng.random() < 0.5
    a = 0 if left else 1  # the axis along which the target lies before the anchor
    b = 1 - a

    def anchor(x: float, y: float, placed: list[Obj]) -> bool:
        return (x, y)[a] >= LARGE + 2 * SMALL  # room for the target before it

    def target(x: float, y: float, placed: list[Obj]) -> bool:
        at = (placed[0].x, placed[0].y)
        return abs((x, y)[b] - at[b]) <= ROW and (x, y)[a] < at[a]

    def other(x: float, y: float, placed: list[Obj]) -> bool:
        at = (placed[0].x, placed[0].y)
        return (x, y)[a] > at[a] or abs((x, y)[b] - at[b]) >= 3 * ROW

    n = _n_objects(rng, top)
    unique = lambda s, c: (s, c) != (shape, color)  # noqa: E731
    target_shape = _pick(rng, SHAPES, shape if answer == color else None)
    specs = [(shape, color, _size(rng)), (target_shape, answer, _size(rng))]
    specs += _random_specs(rng, n - 2, unique)
    where: list[Where | None] = [anchor, target, *([other] * (n - 2))]
    word = "left of" if left else "above"
    return specs, where, f"What color is the object {word} the {color} {shape}?"


def _position(rng: np.random.Generator, answer: str, top: int) -> Scene:
    shape = _pick(rng, SHAPES)
    mid = IMAGE_SIZE / 2
    side: Where = (
        (lambda x, y, _: x <= mid - MIDDLE)
        if answer == "left"
        else (lambda x, y, _: x >= mid + MIDDLE)
    )
    others = _random_specs(rng, _n_objects(rng, top) - 1, lambda s, c: s != shape)
    specs = [(shape, _pick(rng, COLOR_NAMES), _size(rng)), *others]
    return specs, [side], f"On which side is the {shape}?"


_BUILDERS = {"attribute": _attribute, "existence": _existence, "counting": _counting,
             "relation": _relation, "position": _position}  # fmt: skip


def _check_split(split: str) -> int:
    if split not in SPLITS:
        raise ValueError(f"`split` must be one of {sorted(SPLITS)}, got {split!r}")
    return SPLITS[split]


def make_question(
    index: int,
    seed: int = 0,
    split: str = "test",
    clutter: float = 1.0,
    max_objects: int = MAX_OBJECTS,
) -> dict[str, Any]:
    """Question ``index`` of the list ``make_questions(n, seed, split)`` (any ``n``).

    ``clutter`` below 1.0 draws the same scene on a calmer background, and
    ``max_objects`` below ``MAX_OBJECTS`` caps the number of objects (a counting answer
    above the cap wraps round to ``answer % (max_objects + 1)``): both for training
    curricula only; held-out questions use the defaults.

    Example:
        >>> make_question(7, seed=3)["question"] == make_questions(8, seed=3)[7]["question"]
        True
    """
    split_id = _check_split(split)
    if isinstance(index, bool) or not isinstance(index, int) or index < 0:
        raise ValueError(f"`index` must be an int >= 0, got {index!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"`seed` must be an int >= 0, got {seed!r}")
    family = FAMILIES[index % len(FAMILIES)]
    answers = ANSWERS[family]
    offset = int(np.random.default_rng([split_id, seed, 2**31]).integers(0, 10_000))
    offset += FAMILIES.index(family)
    answer = answers[(index // len(FAMILIES) + offset) % len(answers)]
    if not 2 <= max_objects <= MAX_OBJECTS:
        raise ValueError(f"`max_objects` must be in [2, {MAX_OBJECTS}], got {max_objects!r}")
    if family == "counting" and int(answer) > max_objects:
        answer = str(int(answer) % (max_objects + 1))
    rng = np.random.default_rng([split_id, seed, index])
    for _ in range(1000):
        specs, where, question = _BUILDERS[family](rng, answer, max_objects)
        objects = place_objects(rng, specs, (where + [None] * len(specs))[: len(specs)])
        if objects is not None:
            order = rng.permutation(len(objects))  # the drawing order reveals nothing
            objects = [objects[i] for i in order]
            image = draw_scene(objects, rng, clutter)
            return {"image": image, "question": question, "answer": answer, "family": family,
                    "objects": objects}  # fmt: skip
    raise RuntimeError(f"could not place a {family} scene for index {index}")  # pragma: no cover


def make_questions(n: int, seed: int = 0, split: str = "test") -> list[dict[str, Any]]:
    """``n`` questions ``{"image", "question", "answer", "family", "objects"}`` of ``split``.

    ``objects`` lists the scene's :class:`~vissparse.testbed.scenes.Obj` (shape, colour,
    size, centre), from which every answer follows.

    Deterministic for ``(n, seed, split)``; ``train``, ``val`` and ``test`` never share
    a random stream. Families cycle, and answers cycle within each family.

    Example:
        >>> sorted(q["answer"] for q in make_questions(10, seed=0)[1::5])  # existence
        ['no', 'yes']
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"`n` must be an int >= 0, got {n!r}")
    _check_split(split)
    return [make_question(i, seed, split) for i in range(n)]


def export_questions(
    questions: list[dict[str, Any]], out: str | os.PathLike[str], name: str = "questions.jsonl"
) -> Path:
    """Write ``questions`` as PNG files plus a JSONL that ``VQAJsonlDataset`` reads.

    Returns the JSONL path; image paths in it are relative to it.

    Example:
        >>> import tempfile
        >>> from vissparse.data import VQAJsonlDataset
        >>> path = export_questions(make_questions(2), tempfile.mkdtemp())
        >>> VQAJsonlDataset(path)[1]["answer"] in ("yes", "no")
        True
    """
    root = Path(out)
    (root / "images").mkdir(parents=True, exist_ok=True)
    lines = []
    for i, q in enumerate(questions):
        rel = f"images/{i:05d}.png"
        q["image"].save(root / rel)
        row = {"image": rel, "question": q["question"], "answer": q["answer"],
               "family": q["family"]}  # fmt: skip
        lines.append(json.dumps(row))
    path = root / name
    path.write_text("\n".join(lines) + "\n")
    return path
