"""Qwen2.5-VL through the plugin (a tiny random model): the HF path's tokens and keeps."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("vllm")

from vissparse.config import PruningConfig
from vissparse.hf.pipeline import HFPipeline

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from run_tiny import NEW_TOKENS, PROMPTS, SETTINGS, images, tiny_qwen2_5_vl  # noqa: E402


def test_qwen2_5_vl_in_vllm_equals_the_hf_path(tmp_path):
    done = subprocess.run([sys.executable, str(HERE / "run_tiny.py"), str(tmp_path)],
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    served = json.loads((tmp_path / "vllm.json").read_text())
    model, processor = tiny_qwen2_5_vl()
    pipe = HFPipeline(model, processor, PruningConfig(**SETTINGS))
    kept, tokens = [], []
    for image, prompt in zip(images(), PROMPTS, strict=True):  # one at a time: no padding
        details = pipe.generate(image, prompt, return_details=True, max_new_tokens=NEW_TOKENS,
                                min_new_tokens=NEW_TOKENS)  # fmt: skip
        tokens.append(details.sequences[0].tolist())
        kept.append(details.keep_mask[0].nonzero().flatten().tolist())
    assert served["kept"] == kept
    assert served["tokens"] == tokens
