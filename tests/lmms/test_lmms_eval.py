"""The plugin inside lmms-eval: registration, every family batched, and the testbed task.

Runs in ``.venv-lmms`` (``make test-lmms``); skipped where lmms-eval is not installed.
The accuracy test answers the same testbed questions through ``vissparse testbed eval``'s
code path (:func:`run_scorers`, :func:`answer_all`) and through ``lmms-eval --model
vissparse`` with the local task, on both shipped checkpoints at keep 1.0 and 0.10, and
asks for equal accuracy and equal answers per question.
"""

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("lmms_eval")

from lmms_eval.api.instance import Instance
from lmms_eval.evaluator import simple_evaluate
from lmms_eval.tasks import TaskManager

from vissparse import VisSparse
from vissparse.lmms.model import VisSparseLMM
from vissparse.lmms.task import TASK, write_task
from vissparse.strategies.topk import kept_count
from vissparse.testbed.checkpoints import checkpoint_dir
from vissparse.testbed.evaluate import answer_all, load_testbed_model, pipeline_for, run_scorers
from vissparse.testbed.questions import make_questions
from vissparse.testing import FAMILY_NAMES, random_image, tiny_model

N = 40
SCORER = "divprune"
PROMPTS = ["What is in the image?", "Describe it.", "Which colour?"]


@pytest.fixture(autouse=True)
def _offline(monkeypatch, tmp_path_factory):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    cache = tmp_path_factory.getbasetemp() / "datasets-cache"
    monkeypatch.setenv("LMMS_EVAL_DATASETS_CACHE", str(cache))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(cache))


def test_entry_point_registers_the_model():
    from lmms_eval.models import get_model

    assert get_model("vissparse") is VisSparseLMM


def _requests(n, gen):
    def doc_to_visual(doc):
        return [doc["image"]]

    return [
        Instance(
            "generate_until",
            (PROMPTS[i % 3], dict(gen), doc_to_visual, i, "t", "test"),
            idx=0,
            metadata={"task": "t", "doc_id": i, "repeats": 1},
        )
        for i in range(n)
    ]


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_every_family_batched(family):
    """Batches of 2: the answers of VisSparse.generate on the same batches, rows per sample."""
    model, processor = tiny_model(family)
    vs = VisSparse(base_model=model, processor=processor, keep_ratio=0.5, scorer="divprune")
    lm = VisSparseLMM.from_vissparse(vs, batch_size=2)
    images = [random_image(seed=i) for i in range(3)]
    lm.task_dict = {"t": {"test": [{"image": im} for im in images]}}
    gen = {"max_new_tokens": 3, "temperature": 0, "until": []}
    answers = lm.generate_until(_requests(3, gen))
    want = vs.generate(images[:2], PROMPTS[:2], max_new_tokens=3, do_sample=False)
    want += vs.generate(images[2:], PROMPTS[2:], max_new_tokens=3, do_sample=False)
    assert answers == want
    assert [r["doc_id"] for r in lm.rows] == [0, 1, 2]
    assert [r["batch_size"] for r in lm.rows] == [2, 2, 1]
    for row in lm.rows:
        assert row["kept_tokens"] == kept_count(0.5, row["image_tokens"]) < row["image_tokens"]
        assert row["effective_keep_ratio"] == row["kept_tokens"] / row["image_tokens"]
        assert row["latency_ms"] > 0


def test_answers_are_cut_at_until():
    model, processor = tiny_model("llava")
    vs = VisSparse(base_model=model, processor=processor, keep_ratio=0.5)
    lm = VisSparseLMM.from_vissparse(vs, batch_size=3)
    lm.task_dict = {"t": {"test": [{"image": random_image(seed=i)} for i in range(3)]}}
    full = lm.generate_until(_requests(3, {"max_new_tokens": 8}))
    stop = next(ch for text in full for ch in text[1:] if ch.strip())  # occurs after 1 char
    cut = lm.generate_until(_requests(3, {"max_new_tokens": 8, "until": [stop]}))
    assert cut == [text.split(stop, 1)[0] for text in full]
    assert any(c != f for c, f in zip(cut, full, strict=True))


def test_loglikelihood_is_refused_by_name():
    model, processor = tiny_model("llava")
    lm = VisSparseLMM.from_vissparse(VisSparse(base_model=model, processor=processor))
    with pytest.raises(NotImplementedError, match="generate_until"):
        lm.loglikelihood([])


@pytest.fixture(scope="module")
def task_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("testbed_task")
    write_task(out, N)
    return out


def _lmms_eval(task_dir, pretrained, keep, batch_size, **extra):
    args = f"pretrained={pretrained},keep_ratio={keep},scorer={SCORER}"
    result = simple_evaluate(
        model="vissparse", model_args=args, tasks=[TASK], batch_size=batch_size, device="cpu",
        task_manager=TaskManager(include_path=str(task_dir)), log_samples=True,
        bootstrap_iters=0, **extra,
    )  # fmt: skip
    samples = sorted(result["samples"][TASK], key=lambda s: s["doc_id"])
    return result["results"][TASK]["accuracy,none"], samples


@pytest.mark.parametrize("family", ["llava", "qwen2_vl"])
def test_task_matches_testbed_eval(family, task_dir):
    """lmms-eval's accuracy and per-question answers equal `vissparse testbed eval`'s."""
    path = checkpoint_dir(family)
    model, processor = load_testbed_model(path)
    questions = make_questions(N, seed=0, split="test")
    for keep in (1.0, 0.1):
        (run,) = run_scorers(model, processor, questions, [SCORER], (keep,), (0,), 50,
                             progress=False)  # fmt: skip
        texts, _, _ = answer_all(pipeline_for(model, processor, SCORER, keep), questions, 50)
        accuracy, samples = _lmms_eval(task_dir, path, keep, batch_size=8)
        assert [s["doc_id"] for s in samples] == list(range(N))
        assert [s["filtered_resps"][0] for s in samples] == texts, (family, keep)
        assert [s["accuracy"] for s in samples] == run.scores.tolist(), (family, keep)
        assert accuracy == pytest.approx(run.scores.mean(), abs=1e-12)


def test_lmms_eval_command_line(task_dir, tmp_path):
    """`lmms-eval --model vissparse ...` as a user runs it: results, samples, sample log."""
    path = checkpoint_dir("qwen2_vl")
    log = tmp_path / "vissparse_samples.jsonl"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "LMMS_EVAL_DATASETS_CACHE": str(tmp_path / "cache")}  # fmt: skip
    cmd = [
        os.path.join(os.path.dirname(sys.executable), "lmms-eval"), "--model", "vissparse",
        "--model_args", f"pretrained={path},keep_ratio=0.1,scorer={SCORER},sample_log={log}",
        "--include_path", str(task_dir), "--tasks", TASK, "--batch_size", "16",
        "--device", "cpu", "--output_path", str(tmp_path / "out"), "--log_samples",
    ]  # fmt: skip
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (results,) = (tmp_path / "out").rglob("*_results.json")
    accuracy = json.loads(results.read_text())["results"][TASK]["accuracy,none"]
    want, _ = _lmms_eval(task_dir, path, 0.1, batch_size=16)
    assert accuracy == pytest.approx(want, abs=1e-12)
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    assert sorted(r["doc_id"] for r in rows) == list(range(N))
    for row in rows:
        assert row["kept_tokens"] == kept_count(0.1, row["image_tokens"])
        assert row["effective_keep_ratio"] == pytest.approx(0.1, abs=0.02)
