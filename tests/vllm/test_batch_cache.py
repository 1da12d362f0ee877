"""A pruning engine answers a mixed batch as it answers each prompt alone, and scores one
image again for each question with vLLM's multimodal processor cache on."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("vllm")

from vissparse.config import PruningConfig
from vissparse.hf.pipeline import HFPipeline
from vissparse.testbed.checkpoints import checkpoint_dir
from vissparse.testbed.evaluate import load_testbed_model
from vissparse.testbed.questions import make_questions

HERE = Path(__file__).parent


@pytest.fixture(scope="module", params=["llava", "qwen2_vl"])
def mixed(request, tmp_path_factory):
    out = tmp_path_factory.mktemp(request.param) / "mixed.json"
    done = subprocess.run([sys.executable, str(HERE / "run_mixed.py"), request.param, str(out)],
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    return request.param, json.loads(out.read_text())


def test_a_mixed_batch_equals_each_prompt_alone(mixed):
    _, result = mixed
    assert len(result["together"]) == 4  # three image sizes and a text-only prompt
    assert result["together"] == result["alone"]


def test_one_image_two_questions_two_keep_masks_through_the_cache(mixed):
    family, result = mixed
    first, second = result["asked_kept"]
    assert first != second  # the text-conditioned scorer saw each question
    model, processor = load_testbed_model(checkpoint_dir(family))
    config = PruningConfig(keep_ratio=result["settings"]["keep_ratio"],
                           scorer=result["settings"]["scorer"],
                           positions="compact" if family == "llava" else "keep")  # fmt: skip
    pipe = HFPipeline(model, processor, config)
    image = make_questions(12, seed=5)[0]["image"]
    details = pipe.generate([image, image], result["asked"], return_details=True,
                            max_new_tokens=3)  # fmt: skip
    assert [t.strip() for t in result["asked_answers"]] == [t.strip() for t in details.text]
    assert [first, second] == [row[0].nonzero().flatten().tolist() for row in details.keep_mask]


def test_videos_are_served_whole_and_unchanged(mixed):
    family, result = mixed
    if family == "llava":
        pytest.skip("LLaVA-1.5 takes no video")
    with_plugin, without = result["video"]
    assert with_plugin == without
