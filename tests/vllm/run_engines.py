"""Run the testbed questions through vLLM engines, one configuration after another.

``python tests/vllm/run_engines.py FAMILY OUT.json [N]`` (in ``.venv-vllm``) writes, per
configuration, the greedy answers and the kept indices the plugin logged. Engines run in
this process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``: about 3 s to start on the CPU), so
many configurations fit in one run; ``tests/vllm/test_engine.py`` compares them with the
HF path. A script that builds ``LLM`` needs the ``__main__`` guard: vLLM spawns processes.
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

SERVED = ("cosine", "cosine-least", "cosine-max", "divprune", "dart", "cdpruner", "pool",
          "uniform")  # fmt: skip
MAX_NEW_TOKENS = 2


def configs() -> list[tuple[str, dict | None]]:
    """``(name, hf_overrides)``: the plugin off, keep 1.0, and every served method."""
    out: list[tuple[str, dict | None]] = [("off", None),
                                          ("keep1.0-cosine", {"keep_ratio": 1.0})]  # fmt: skip
    for keep in (0.25, 0.1):
        out += [(f"keep{keep}-{s}", {"keep_ratio": keep, "scorer": s}) for s in SERVED]
    return out


def main() -> None:
    from vllm import LLM, SamplingParams

    from vissparse.hf.inputs import Item, chat_text
    from vissparse.testbed.checkpoints import checkpoint_dir
    from vissparse.testbed.evaluate import load_testbed_model
    from vissparse.testbed.questions import make_questions
    from vissparse.vllm.models import KEPT_LOG

    family, out_path = sys.argv[1], Path(sys.argv[2])
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 40
    only = sys.argv[4].split(",") if len(sys.argv) > 4 else None
    path = str(checkpoint_dir(family))
    _, processor = load_testbed_model(path)
    questions = make_questions(n, seed=0)
    prompts = [{"prompt": chat_text(processor, Item([q["image"]], q["question"]))[0],
                "multi_modal_data": {"image": q["image"]}} for q in questions]  # fmt: skip
    params = SamplingParams(temperature=0, max_tokens=MAX_NEW_TOKENS)
    results = {}
    for name, overrides in configs():
        if only and name not in only:
            continue
        log = Path(tempfile.mkdtemp()) / "kept.jsonl"
        os.environ[KEPT_LOG] = str(log)
        llm = LLM(model=path, enforce_eager=True, max_model_len=1024, dtype="float32",
                  max_num_seqs=1, seed=0,
                  hf_overrides={"vissparse": overrides} if overrides else None)  # fmt: skip
        outputs = llm.generate(prompts, params, use_tqdm=False)
        kept = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
        results[name] = {"overrides": overrides, "texts": [o.outputs[0].text for o in outputs],
                         "prompt_tokens": [len(o.prompt_token_ids) for o in outputs],
                         "kept": kept}  # fmt: skip
        del llm
        gc.collect()
    out_path.write_text(json.dumps(results))


if __name__ == "__main__":
    main()
