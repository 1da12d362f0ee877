"""The testbed's oracle selections: deterministic, exact budget, object tokens first."""

import numpy as np
import pytest
import torch

from vissparse.hf.inputs import normalize_batch, sample_keys
from vissparse.strategies.topk import kept_count
from vissparse.testbed.evaluate import pipeline_for
from vissparse.testbed.models import build_model
from vissparse.testbed.oracle import (
    ORACLES,
    OracleScorer,
    object_cover,
    oracle_scorer,
    oracle_scores,
    token_grid,
)
from vissparse.testbed.questions import make_questions
from vissparse.testbed.scenes import token_labels

QUESTIONS = make_questions(10, seed=4)


@pytest.fixture(scope="module", params=["llava", "qwen2_vl"])
def family(request):
    model, processor = build_model(request.param, seed=1)
    return request.param, model, processor


def _masks(pipe, questions):
    details = pipe.generate([q["image"] for q in questions], [q["question"] for q in questions],
                            return_details=True, max_new_tokens=1)  # fmt: skip
    return [row[0].cpu() for row in details.keep_mask]


def test_cover_agrees_with_the_training_labels():
    """The token grid of the oracles is the one training labels (raster, 16 x 16)."""
    for q in QUESTIONS:
        cover = object_cover(q["objects"], 16)
        labels = token_labels(q["objects"])
        assert cover.shape == (len(q["objects"]), 256)
        assert np.array_equal(cover.max(axis=0) >= 0.2, labels[:, 0] > 0)
        assert sorted(cover.argmax(axis=1)) == sorted(np.flatnonzero(labels[:, 2]))


def test_oracles_through_the_pipeline(family):
    """Exact budget; one key token per object; object tokens first; deterministic."""
    name, model, processor = family
    keep, questions = 0.1, QUESTIONS[:4]
    assert token_grid(processor) == 16
    budget = kept_count(keep, 256)
    for oracle in ORACLES:
        pipe = pipeline_for(model, processor, oracle_scorer(oracle, questions, processor), keep)
        masks = _masks(pipe, questions)
        again = _masks(pipe, questions[2:]) + _masks(pipe, questions[:2])  # other batches
        assert all(torch.equal(a, b) for a, b in zip(masks[2:] + masks[:2], again, strict=True))
        for q, mask in zip(questions, masks, strict=True):
            cover = object_cover(q["objects"], 16)
            assert int(mask.sum()) == budget, (name, oracle)
            assert mask[cover.argmax(axis=1)].all()  # each object's key token
            on_object = cover.max(axis=0) > 0
            if oracle == "oracle-objects":  # object tokens before any background
                assert not mask[~on_object].any() or mask[on_object].all()
            (key,) = sample_keys(normalize_batch(q["image"], q["question"], ())[0])
            expected = torch.from_numpy(oracle_scores(oracle, cover, key)).float()
            top = expected.argsort(descending=True, stable=True)[:budget]
            assert torch.equal(mask, torch.zeros(256, dtype=torch.bool).index_fill(0, top, True))


def test_one_per_object_fills_with_background_at_random():
    """Past the key tokens the order is random: it differs between two scenes' keys."""
    cover = np.zeros((1, 16))
    cover[0, 3] = 1.0
    a = oracle_scores("oracle-one-per-object", cover, b"a")
    b = oracle_scores("oracle-one-per-object", cover, b"b")
    assert a.argmax() == b.argmax() == 3 and 4.0 <= a[3] < 4.001
    assert not np.array_equal(np.delete(a, 3).argsort(), np.delete(b, 3).argsort())
    assert np.array_equal(a, oracle_scores("oracle-one-per-object", cover, b"a"))
    ranked = oracle_scores("oracle-objects", np.array([[0.0, 0.25, 1.0, 0.5]]), b"k").argsort()
    assert ranked[::-1][:3].tolist() == [2, 3, 1]  # key, then by coverage


def test_oracle_errors_name_the_argument():
    scorer = OracleScorer("oracle-objects", {b"k": np.zeros((0, 4))})
    tokens, query = torch.zeros(1, 4, 2), torch.zeros(1, 2)
    with pytest.raises(ValueError, match="`sample_keys` must be 1 keys"):
        scorer.score(tokens, query)
    with pytest.raises(ValueError, match="`sample_keys` row 0 is no question"):
        scorer.score(tokens, query, sample_keys=[b"other"])
    with pytest.raises(ValueError, match="`image_tokens` row 0 has 5 tokens"):
        scorer.score(torch.zeros(1, 5, 2), query, sample_keys=[b"k"])
    with pytest.raises(ValueError, match="`name` must be one of"):
        OracleScorer("oracle", {})
    with pytest.raises(ValueError, match="`questions` item 0 has no `objects`"):
        oracle_scorer("oracle-objects", [{"image": None, "question": "q"}], None)


def test_testbed_eval_takes_the_oracles(saved_untrained, tmp_path, monkeypatch, capsys):
    """By name, and by default beside every registered scorer."""
    from vissparse.cli import main as cli
    from vissparse.strategies.registry import SCORERS
    from vissparse.testbed import llm_rows
    from vissparse.testbed.models import testbed_scorers

    seen = []

    def stop(scorers, *args, **kwargs):
        seen.append(list(scorers))
        raise AssertionError("checked")

    monkeypatch.setattr(llm_rows, "check_llm_keeps", stop)
    argv = ["testbed", "eval", "--model", str(saved_untrained), "--out", str(tmp_path)]
    for extra in (["--scorer", "oracle-one-per-object", "--scorer", "random"], []):
        with pytest.raises(AssertionError, match="checked"):
            cli(argv + extra)
    runnable = testbed_scorers()
    assert "trim" in SCORERS.names() and "trim" not in runnable
    assert seen == [["oracle-one-per-object", "random"], [*runnable, *ORACLES]]
    assert cli([*argv, "--scorer", "trim"]) != 0
    assert "'trim' cannot run on the testbed: it ranks" in capsys.readouterr().err
