"""The question generator: deterministic, disjoint splits, balanced answers, valid scenes."""

from collections import Counter

import numpy as np
import pytest

from vissparse.testbed import ANSWERS, FAMILIES, export_questions, make_question, make_questions
from vissparse.testbed.questions import MIDDLE, ROW
from vissparse.testbed.scenes import (
    CELL,
    COLORS,
    IMAGE_SIZE,
    LARGE,
    MAX_OBJECTS,
    PLURALS,
    SHAPES,
    SMALL,
    Obj,
    draw_scene,
    place_objects,
    token_labels,
)


def _pixels(q):
    return np.asarray(q["image"]).tobytes()


def test_deterministic_for_a_seed():
    a, b = make_questions(10, seed=4), make_questions(10, seed=4)
    assert [q["question"] for q in a] == [q["question"] for q in b]
    assert [_pixels(q) for q in a] == [_pixels(q) for q in b]
    assert make_question(7, seed=4)["question"] == a[7]["question"]
    assert _pixels(make_question(7, seed=4)) == _pixels(a[7])


def test_other_seed_differs():
    a, b = make_questions(10, seed=0), make_questions(10, seed=1)
    assert sum(_pixels(x) == _pixels(y) for x, y in zip(a, b, strict=True)) == 0


def test_splits_are_disjoint():
    seen = {}
    for split in ("train", "val", "test"):
        for q in make_questions(60, seed=0, split=split):
            key = _pixels(q)
            assert key not in seen, f"{split} repeats a {seen[key]} scene"
            seen[key] = split
    assert len(seen) == 180


def test_answers_balanced_within_each_family():
    n = 5 * 2 * 11 * 10 * 3  # a whole number of cycles for every family
    questions = make_questions(n // 10, seed=2)
    by_family = Counter(q["family"] for q in questions)
    assert set(by_family) == set(FAMILIES) and len(set(by_family.values())) == 1
    for family in FAMILIES:
        counts = Counter(q["answer"] for q in questions if q["family"] == family)
        assert set(counts) <= set(ANSWERS[family])
        assert max(counts.values()) - min(counts.values()) <= 1, (family, counts)


def test_text_alone_is_near_chance():
    # the best answer per question template (colour and shape words masked) does no
    # better than the family's chance level
    from vissparse.testbed.evaluate import chance_accuracy

    questions = make_questions(1000, seed=3, split="val")
    for family in FAMILIES:
        mine = [q for q in questions if q["family"] == family]
        by_template = {}
        for q in mine:
            words = q["question"].lower().rstrip("?").split()
            template = " ".join(
                "{c}" if w in COLORS else "{s}" if w in SHAPES or w in PLURALS.values() else w
                for w in words
            )
            by_template.setdefault(template, Counter())[q["answer"]] += 1
        best = sum(c.most_common(1)[0][1] for c in by_template.values()) / len(mine)
        assert best <= chance_accuracy(family) + 0.08, (family, best)


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="`split`"):
        make_questions(2, split="dev")
    with pytest.raises(ValueError, match="`n`"):
        make_questions(-1)
    with pytest.raises(ValueError, match="`seed`"):
        make_question(0, seed=-3)


def test_scene_constraints():
    rng = np.random.default_rng(0)
    specs = [(SHAPES[i % 5], list(COLORS)[i % 6], LARGE if i % 2 else SMALL) for i in range(9)]
    objs = place_objects(rng, specs)
    assert objs is not None and len(objs) == 9
    for i, a in enumerate(objs):
        assert a.size**2 <= 0.03 * IMAGE_SIZE**2
        assert all(not a.clashes(b) for b in objs[i + 1 :])
    image = draw_scene(objs, rng)
    assert image.size == (IMAGE_SIZE, IMAGE_SIZE)

    # on the token grid: each object's box lies in its own block of cells
    def span(c: float, size: int) -> range:
        return range(int(c - size / 2) // CELL, int(c + size / 2 - 1) // CELL + 1)

    cells = [{(cx, cy) for cx in span(o.x, o.size) for cy in span(o.y, o.size)} for o in objs]
    for o, block in zip(objs, cells, strict=True):
        assert len(block) == (-(-o.size // CELL)) ** 2
    assert sum(map(len, cells)) == len(set().union(*cells))
    background = np.asarray(draw_scene([], rng), dtype=float)
    assert background.std() > 5  # textured and noisy, not a flat colour


def test_drawn_object_has_its_colour():
    rng = np.random.default_rng(5)
    for name, rgb in COLORS.items():
        img = draw_scene([Obj("square", name, LARGE, 64, 64)], rng)
        centre = np.asarray(img, dtype=float)[60:68, 60:68].mean(axis=(0, 1))
        assert np.abs(centre - rgb).max() < 30, name


def test_key_cells_count_the_objects():
    """One key cell per object, labelled with that object's colour and shape, so the key
    cells of a colour count its objects (whatever their size), which counting asks."""
    for q in make_questions(200, seed=3, split="train"):
        labels = token_labels(q["objects"])
        keys = labels[labels[:, 2] == 1]
        colours = list(COLORS)
        got = sorted((int(c), int(s)) for c, s, _ in keys)
        want = sorted((colours.index(o.color) + 1, SHAPES.index(o.shape) + 1) for o in q["objects"])
        assert got == want and labels[:, 2].sum() == len(q["objects"])
        for t in np.flatnonzero(labels[:, 2]):  # the key cell lies inside its object's box
            centre = ((t % 16 + 0.5) * CELL, (t // 16 + 0.5) * CELL)
            assert any(abs(centre[0] - o.x) < o.size / 2 and abs(centre[1] - o.y) < o.size / 2
                       for o in q["objects"])  # fmt: skip


def test_relation_labels_answer_the_derived_relation_questions():
    """Each object's left / above label is the answer to the relation question about it,
    and 0 exactly where no such question is defined; ``per_object`` writes an object's
    labels into the cells it takes, and nothing into the background."""
    from vissparse.testbed.derived import relation_labels, scene_questions

    colours, defined = list(COLORS), Counter()
    for q in make_questions(150, seed=4, split="train"):
        objects = q["objects"]
        asked = {question: a for question, a, f in scene_questions(objects) if f == "relation"}
        labels = relation_labels(objects)
        assert labels.shape == (len(objects), 2)
        defined.update({"left": int(labels[:, 0].astype(bool).sum()),
                        "above": int(labels[:, 1].astype(bool).sum())})  # fmt: skip
        for o, row in zip(objects, labels, strict=True):
            for word, got in zip(("left of", "above"), row, strict=True):
                answer = asked.get(f"What color is the object {word} the {o.color} {o.shape}?")
                unique = sum((p.color, p.shape) == (o.color, o.shape) for p in objects) == 1
                if unique:
                    assert got == (0 if answer is None else colours.index(answer) + 1)
        cells = token_labels(objects, per_object=labels)
        assert np.array_equal(cells[:, :3], token_labels(objects))
        assert not cells[cells[:, 0] == 0, 3:].any()
        classes = [(colours.index(p.color) + 1, SHAPES.index(p.shape) + 1) for p in objects]
        for t in np.flatnonzero(cells[:, 2]):  # a key cell carries its object's labels
            same = [i for i, c in enumerate(classes) if c == tuple(cells[t, :2])]
            assert any(np.array_equal(cells[t, 3:], labels[i]) for i in same)
    assert defined["left"] > 20 and defined["above"] > 20  # not all "none"
    with pytest.raises(ValueError, match="per_object"):
        token_labels(q["objects"], per_object=np.zeros((len(q["objects"]) + 1, 2), dtype=int))


def test_relation_errors_say_which_object_a_wrong_answer_names():
    from vissparse.testbed.derived import RELATION_ERRORS, relation_error

    objs = [Obj("circle", "red", SMALL, 60, 60), Obj("square", "blue", SMALL, 30, 60),
            Obj("cross", "green", SMALL, 30, 100),
            Obj("diamond", "yellow", SMALL, 100, 60)]  # fmt: skip
    q = {"question": "What color is the object left of the red circle?", "answer": "blue",
         "objects": objs}  # fmt: skip
    got = [relation_error(q, a) for a in ("Blue.", "green", "yellow", "red", "purple")]
    assert got == [None, *RELATION_ERRORS]
    above = dict(q, question="What color is the object above the blue square?", answer="x")
    assert relation_error(above, "green") == "after it"  # below it, along the column


def reference_answer(question, objects):
    """Each template's answer, recomputed from the scene (independent of the generator)."""
    q = question.lower().rstrip("?")
    words = q.split()
    color = next((w for w in words if w in COLORS), None)
    shape = next((w for w in words if w in SHAPES), None)
    if q.startswith("what color is the object"):
        anchor = [o for o in objects if (o.color, o.shape) == (color, shape)]
        assert len(anchor) == 1
        a = anchor[0]
        if " left of " in q:
            hits = [o for o in objects if abs(o.y - a.y) <= ROW and o.x < a.x]
            near = [o for o in objects if o not in hits and o.x < a.x and abs(o.y - a.y) < 3 * ROW]
        else:
            hits = [o for o in objects if abs(o.x - a.x) <= ROW and o.y < a.y]
            near = [o for o in objects if o not in hits and o.y < a.y and abs(o.x - a.x) < 3 * ROW]
        assert len(hits) == 1 and not near  # one object in the row, none close to it
        return hits[0].color
    if q.startswith("what color is the"):
        (hit,) = [o for o in objects if o.shape == shape]
        return hit.color
    if q.startswith("what shape is the"):
        (hit,) = [o for o in objects if o.color == color]
        return hit.shape
    if q.startswith("is there a"):
        return "yes" if any((o.color, o.shape) == (color, shape) for o in objects) else "no"
    if q.startswith("how many"):
        plural = words[2]
        if color:
            return str(sum(o.color == color for o in objects))
        return str(sum(PLURALS[o.shape] == plural for o in objects))
    if q.startswith("on which side is the"):
        (hit,) = [o for o in objects if o.shape == shape]
        assert abs(hit.x - IMAGE_SIZE / 2) >= MIDDLE
        return "left" if hit.x < IMAGE_SIZE / 2 else "right"
    raise AssertionError(f"unknown template: {question}")


def test_every_answer_follows_from_the_scene():
    for q in make_questions(400, seed=7, split="train"):
        assert 2 <= len(q["objects"]) <= MAX_OBJECTS
        assert reference_answer(q["question"], q["objects"]) == q["answer"], q["question"]


def test_export_round_trip(tmp_path):
    from vissparse.data import VQAJsonlDataset

    questions = make_questions(6, seed=1)
    data = VQAJsonlDataset(export_questions(questions, tmp_path))
    assert len(data) == 6
    assert [data[i]["answer"] for i in range(6)] == [q["answer"] for q in questions]
    assert np.array_equal(np.asarray(data[2]["image"]), np.asarray(questions[2]["image"]))


def test_derived_questions_follow_from_the_scene():
    from vissparse.testbed.derived import conversation, scene_questions

    rng = np.random.default_rng(0)
    for q in make_questions(100, seed=8, split="train"):
        derived = scene_questions(q["objects"])
        assert {f for _, _, f in derived} >= {"existence", "counting"}
        for question, answer, family in derived:
            assert family in FAMILIES and answer in ANSWERS[family]
            assert reference_answer(question, q["objects"]) == answer, question
        turns = conversation(q, rng, extra_turns=4)
        assert turns[0] == (q["question"], q["answer"]) and len(turns) == 5
        assert len({t[0] for t in turns}) == 5


def test_derived_existence_turns_are_balanced():
    """Most derived existence questions answer "no"; the conversation draws yes or no
    first, so the extra turns are near even."""
    from collections import Counter

    from vissparse.testbed.derived import conversation, scene_questions

    rng = np.random.default_rng(0)
    pooled: Counter[str] = Counter()
    drawn: Counter[str] = Counter()
    for q in make_questions(60, seed=9, split="train"):
        derived = scene_questions(q["objects"])
        family = {question: f for question, _, f in derived}
        pooled.update(a for _, a, f in derived if f == "existence")
        drawn.update(a for question, a in conversation(q, rng, extra_turns=20)[1:]
                     if family[question] == "existence")  # fmt: skip
    assert pooled["no"] / sum(pooled.values()) > 0.7
    assert 0.4 < drawn["no"] / sum(drawn.values()) < 0.65
