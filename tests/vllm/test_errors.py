"""Bad `vissparse` settings stop a vLLM engine at start with one error naming the key."""

import os
import subprocess
import sys

import pytest

pytest.importorskip("vllm")

from vissparse.testbed.checkpoints import checkpoint_dir

SCRIPT = """
import sys
from vllm import LLM

if __name__ == "__main__":
    try:
        LLM(model=sys.argv[1], enforce_eager=True, max_model_len=1024,
            hf_overrides={"vissparse": eval(sys.argv[2])})
    except Exception as err:
        print("ERROR:", err)
    else:
        print("STARTED")
"""


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"keep_ratio": 2.0}, "`vissparse.keep_ratio` must be a real number in [0.05, 1.0]"),
        ({"keep_ratio": 0.1, "scorer": "no-such-method"}, "`vissparse.scorer`"),
        ({"keep_ratio": 0.1, "scorer": "visionzip"}, "`vissparse.scorer` 'visionzip' reads"),
        ({"keep_ratio": 0.1, "stage": "llm"}, "`vissparse.stage` is not supported"),
    ],
)
def test_bad_settings_fail_at_engine_start(tmp_path, settings, message):
    script = tmp_path / "start.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "VLLM_ENABLE_V1_MULTIPROCESSING": "0", "VLLM_CPU_KVCACHE_SPACE": "1"}
    done = subprocess.run([sys.executable, str(script), str(checkpoint_dir("llava")),
                           repr(settings)], capture_output=True, text=True, env=env,
                          timeout=300)  # fmt: skip
    assert "STARTED" not in done.stdout
    assert message in done.stdout + done.stderr, (done.stdout + done.stderr)[-3000:]


def test_settings_on_a_model_the_plugin_does_not_serve_fail_at_engine_start(tmp_path):
    import torch
    import transformers as tf

    from vissparse.testing import llava_tokenizer

    tokenizer = llava_tokenizer()
    config = tf.LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128,
                            num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2,
                            max_position_embeddings=256)  # fmt: skip
    torch.manual_seed(0)
    tf.LlamaForCausalLM(config).save_pretrained(tmp_path / "text")
    tokenizer.save_pretrained(tmp_path / "text")
    script = tmp_path / "start.py"
    script.write_text(SCRIPT.replace("max_model_len=1024", "max_model_len=256"))
    env = {**os.environ, "VLLM_ENABLE_V1_MULTIPROCESSING": "0", "VLLM_CPU_KVCACHE_SPACE": "1"}
    done = subprocess.run([sys.executable, str(script), str(tmp_path / "text"),
                           repr({"keep_ratio": 0.5})], capture_output=True, text=True, env=env,
                          timeout=300)  # fmt: skip
    output = done.stdout + done.stderr
    assert "STARTED" not in done.stdout
    assert "`vissparse` is set in hf_overrides, but LlamaForCausalLM is not served" in output, (
        output[-3000:]
    )
