"""A tiny random Qwen2.5-VL through the pruning vLLM engine (no Qwen2.5-VL checkpoint ships).

``python tests/vllm/run_tiny.py OUT_DIR`` (in ``.venv-vllm``) saves the model of
:func:`tiny_qwen2_5_vl` to ``OUT_DIR/model``, answers four prompts with images of
different sizes at keep 0.25, and writes the generated token ids and the kept indices to
``OUT_DIR/vllm.json``. ``tests/vllm/test_qwen2_5.py`` compares them with the HF path.
"""

from __future__ import annotations

import copy
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")

SETTINGS = {"keep_ratio": 0.25, "scorer": "cosine"}
PROMPTS = ("What is it?", "Where is the red one?", "How many are there?", "Which colour?")
NEW_TOKENS = 4


def tiny_qwen2_5_vl():
    """``vissparse.testing``'s tiny Qwen2.5-VL, with 32-wide heads (vLLM's CPU attention
    takes no 16-wide heads)."""
    import torch

    from vissparse.testing import tiny_model

    model, processor = tiny_model("qwen2_5_vl", 0)
    config = copy.deepcopy(model.config)
    text = config.text_config
    text.num_attention_heads = text.num_key_value_heads = 2
    text.rope_parameters = {**text.rope_parameters, "mrope_section": [4, 6, 6]}
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = type(model)(config).eval()
    return model, processor


def images():
    from vissparse.testing import random_image

    return [random_image(56 + 28 * i, 84, seed=i) for i in range(len(PROMPTS))]


def main() -> None:
    from vllm import LLM, SamplingParams

    from vissparse.hf.inputs import Item, chat_text
    from vissparse.testbed.portable import make_portable
    from vissparse.vllm.models import KEPT_LOG

    out = Path(sys.argv[1])
    model, processor = tiny_qwen2_5_vl()
    model.save_pretrained(out / "model")
    processor.save_pretrained(out / "model")
    make_portable(out / "model", "qwen2_5_vl")
    os.environ[KEPT_LOG] = str(out / "kept.jsonl")
    prompts = [{"prompt": chat_text(processor, Item([image], text))[0],
                "multi_modal_data": {"image": image}}
               for image, text in zip(images(), PROMPTS, strict=True)]  # fmt: skip
    llm = LLM(model=str(out / "model"), enforce_eager=True, max_model_len=512, dtype="float32",
              seed=0, max_num_seqs=1, hf_overrides={"vissparse": SETTINGS})  # fmt: skip
    params = SamplingParams(temperature=0, max_tokens=NEW_TOKENS, min_tokens=NEW_TOKENS)
    outputs = llm.generate(prompts, params, use_tqdm=False)
    kept = [json.loads(line)["kept"] for line in (out / "kept.jsonl").read_text().splitlines()]
    (out / "vllm.json").write_text(json.dumps({
        "tokens": [list(o.outputs[0].token_ids) for o in outputs], "kept": kept,
        "prompt_tokens": [len(o.prompt_token_ids) for o in outputs],
    }))  # fmt: skip


if __name__ == "__main__":
    main()
