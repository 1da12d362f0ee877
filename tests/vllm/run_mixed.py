"""A mixed batch, and one image asked two questions, through one pruning vLLM engine.

``python tests/vllm/run_mixed.py FAMILY OUT.json`` (in ``.venv-vllm``): images of three
sizes with different questions and a text-only prompt answered together and one by one;
then one image asked two questions in two calls, the second through vLLM's multimodal
processor cache (on, as by default). ``tests/vllm/test_batch_cache.py`` reads the result.
"""

from __future__ import annotations

import gc
import json
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")

SETTINGS = {"keep_ratio": 0.25, "scorer": "cosine"}
SIZES = ((128, 128), (160, 96), (96, 128))


def main() -> None:
    from vllm import LLM, SamplingParams

    from vissparse.hf.inputs import Item, chat_text
    from vissparse.testbed.checkpoints import checkpoint_dir
    from vissparse.testbed.evaluate import load_testbed_model
    from vissparse.testbed.questions import make_questions
    from vissparse.vllm.models import KEPT_LOG

    family, out_path = sys.argv[1], Path(sys.argv[2])
    path = str(checkpoint_dir(family))
    _, processor = load_testbed_model(path)
    questions = make_questions(12, seed=5)
    images = [q["image"].resize(size) for q, size in zip(questions, SIZES, strict=False)]

    def prompt(image, text):
        return {"prompt": chat_text(processor, Item([image], text))[0],
                "multi_modal_data": {"image": image}}  # fmt: skip

    template = processor.tokenizer.chat_template or processor.chat_template
    text_only = processor.tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is it?"}], add_generation_prompt=True, tokenize=False,
        chat_template=template,
    )  # fmt: skip
    batch = [prompt(i, q["question"]) for i, q in zip(images, questions, strict=False)]
    batch.insert(2, {"prompt": text_only})
    log = Path(tempfile.mkdtemp()) / "kept.jsonl"
    os.environ[KEPT_LOG] = str(log)
    llm = LLM(model=path, enforce_eager=True, max_model_len=1024, dtype="float32", seed=0,
              hf_overrides={"vissparse": SETTINGS})  # fmt: skip
    params = SamplingParams(temperature=0, max_tokens=3)
    together = [o.outputs[0].text for o in llm.generate(batch, params, use_tqdm=False)]
    alone = [llm.generate([p], params, use_tqdm=False)[0].outputs[0].text for p in batch]
    log.unlink()
    # one image, two questions that name different objects, in two calls (cache on)
    image = questions[0]["image"]
    asked = ["What color is the square?", "What color is the circle?"]
    answers, kept = [], []
    for text in asked:
        answers.append(llm.generate([prompt(image, text)], params, use_tqdm=False)[0]
                       .outputs[0].text)  # fmt: skip
        kept.append(json.loads(log.read_text().splitlines()[-1])["kept"])
    result = {"together": together, "alone": alone, "settings": SETTINGS, "asked": asked,
              "asked_answers": answers, "asked_kept": kept}  # fmt: skip
    if family.startswith("qwen"):  # a video, served whole, with and without the plugin
        result["video"] = [_video_answer(llm, params)]
        del llm
        gc.collect()
        plain = LLM(model=path, enforce_eager=True, max_model_len=1024, dtype="float32", seed=0)
        result["video"].append(_video_answer(plain, params))
    out_path.write_text(json.dumps(result))


def _video_answer(llm, params) -> list[int]:
    import numpy as np

    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, size=(4, 64, 96, 3), dtype=np.uint8)
    prompt = ("<|im_start|>user\n<|vision_start|><|video_pad|><|vision_end|>What is it?"
              "<|im_end|>\n<|im_start|>assistant\n")  # fmt: skip
    from vllm import SamplingParams

    params = SamplingParams(temperature=0, max_tokens=6, min_tokens=6)
    out = llm.generate([{"prompt": prompt, "multi_modal_data": {"video": frames}}], params,
                       use_tqdm=False)  # fmt: skip
    return list(out[0].outputs[0].token_ids)


if __name__ == "__main__":
    main()
