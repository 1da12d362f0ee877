"""The plugin in vLLM's engine, against the HF path, on both shipped testbed checkpoints.

Runs in ``.venv-vllm`` (``make test-vllm``); skipped where vLLM is not installed.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("vllm")

from vissparse.config import PruningConfig
from vissparse.hf.pipeline import HFPipeline
from vissparse.strategies.topk import kept_count
from vissparse.testbed.checkpoints import checkpoint_dir
from vissparse.testbed.evaluate import load_testbed_model
from vissparse.testbed.questions import make_questions

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from run_engines import MAX_NEW_TOKENS, configs  # noqa: E402

N = 40
FAMILIES = ("llava", "qwen2_vl")
NAMES = [name for name, _ in configs()]


@pytest.fixture(scope="module", params=FAMILIES)
def engine_runs(request, tmp_path_factory):
    """Every configuration of run_engines.py on one checkpoint: answers and kept indices."""
    family = request.param
    out = tmp_path_factory.mktemp(family) / "runs.json"
    done = subprocess.run([sys.executable, str(HERE / "run_engines.py"), family, str(out), str(N)],
                          capture_output=True, text=True, timeout=900)  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    return family, json.loads(out.read_text())


_HF: dict = {}


def hf_answers(family, overrides):
    """The HF path on the same questions: vLLM's positions (compact for 1-D RoPE)."""
    key = (family, json.dumps(overrides, sort_keys=True))
    if key not in _HF:
        model, processor = load_testbed_model(checkpoint_dir(family))
        questions = make_questions(N, seed=0)
        settings = overrides or {"keep_ratio": 1.0}
        config = PruningConfig(keep_ratio=settings["keep_ratio"],
                               scorer=settings.get("scorer", "cosine"),
                               positions="compact" if family == "llava" else "keep")  # fmt: skip
        pipe = HFPipeline(model, processor, config)
        details = pipe.generate([q["image"] for q in questions],
                                [q["question"] for q in questions], return_details=True,
                                max_new_tokens=MAX_NEW_TOKENS)  # fmt: skip
        kept = [row[0].nonzero().flatten().tolist() for row in details.keep_mask]
        _HF[key] = ([t.strip() for t in details.text], kept)
    return _HF[key]


@pytest.mark.parametrize("name", NAMES)
def test_vllm_answers_equal_the_hf_path(engine_runs, name):
    family, runs = engine_runs
    run = runs[name]
    texts, kept = hf_answers(family, run["overrides"])
    answers = [t.strip() for t in run["texts"]]
    assert answers == texts
    if run["overrides"] is None:
        assert run["kept"] == []  # installed but not asked: the plugin does nothing
        return
    # The same tokens, image by image. vLLM's vision kernels (fused QKV, its own
    # attention) differ from transformers' in the last float32 bits, and a greedy
    # selection (DivPrune, CDPruner's DPP) can flip a near-tie: a few images may differ
    # by a few tokens, never by more.
    logged = [r["kept"] for r in run["kept"]]
    assert len(logged) == len(kept)
    same = sum(a == b for a, b in zip(logged, kept, strict=True))
    overlap = min(len(set(a) & set(b)) / len(b) for a, b in zip(logged, kept, strict=True))
    assert same >= 0.95 * len(kept), f"{same} of {len(kept)} images keep the same tokens"
    assert overlap >= 0.9, f"an image shares only {overlap:.0%} of its kept tokens"


def test_keep_one_equals_vllm_without_the_plugin(engine_runs):
    _, runs = engine_runs
    assert runs["keep1.0-cosine"]["texts"] == runs["off"]["texts"]
    assert runs["keep1.0-cosine"]["prompt_tokens"] == runs["off"]["prompt_tokens"]


@pytest.mark.parametrize("keep", [0.25, 0.1])
def test_each_image_holds_exactly_its_kept_count(engine_runs, keep):
    _, runs = engine_runs
    full = runs["off"]["prompt_tokens"]
    run = runs[f"keep{keep}-divprune"]
    for record, before, after in zip(run["kept"], full, run["prompt_tokens"], strict=True):
        n = record["n"]
        assert len(record["kept"]) == kept_count(keep, n)  # ceil(keep * n)
        assert before - after == n - len(record["kept"])  # the prompt lost exactly the rest


@pytest.mark.parametrize("family", FAMILIES)
def test_installed_but_not_asked_is_vllm_without_the_plugin(tmp_path, family):
    """The plugin loaded and not asked answers as vLLM with the plugin not loaded at all."""
    outs = {}
    for name, plugins in (("loaded", None), ("unloaded", "no-such-plugin")):
        env = dict(os.environ)
        if plugins:
            env["VLLM_PLUGINS"] = plugins  # vLLM loads only the plugins named here
        out = tmp_path / f"{name}.json"
        done = subprocess.run([sys.executable, str(HERE / "run_engines.py"), family, str(out),
                               "12", "off"], capture_output=True, text=True, env=env,
                              timeout=600)  # fmt: skip
        assert done.returncode == 0, done.stderr[-4000:]
        outs[name] = json.loads(out.read_text())["off"]
    assert outs["loaded"]["texts"] == outs["unloaded"]["texts"]
    assert outs["loaded"]["prompt_tokens"] == outs["unloaded"]["prompt_tokens"]
