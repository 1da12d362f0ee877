"""Testbed accuracy through vLLM with the plugin, beside the HF path's recorded rows.

    .venv-vllm/bin/python benchmarks/vllm_testbed.py --out benchmarks/results/vllm \\
        --readme README.md

The held-out questions of ``make bench-testbed`` (``--n`` of them, seed 0, test split)
answered by vLLM engines on both shipped checkpoints, one engine per method and keep
ratio (greedy, 2 new tokens, exact match), beside the HF rows of
``benchmarks/results/testbed/testbed_eval.json`` (same questions, drop mode). The HF
rows keep LLaVA's original positions; vLLM numbers LLaVA's kept tokens contiguously
(the HF path's ``positions="compact"``), so a LLaVA difference between the two columns
is the positions'; Qwen2-VL keeps its original positions on both.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "vllm"))

os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")

FAMILIES = ("llava", "qwen2_vl")
KEEPS = (0.25, 0.1)


def measure(n: int) -> dict:
    from run_engines import MAX_NEW_TOKENS, SERVED
    from vllm import LLM, SamplingParams

    from vissparse.bench.paired import exact_match
    from vissparse.bench.report import machine_description
    from vissparse.hf.inputs import Item, chat_text
    from vissparse.testbed.checkpoints import checkpoint_dir
    from vissparse.testbed.evaluate import load_testbed_model
    from vissparse.testbed.questions import make_questions

    start = time.perf_counter()
    questions = make_questions(n, seed=0)
    rows = []
    for family in FAMILIES:
        path = str(checkpoint_dir(family))
        _, processor = load_testbed_model(path)
        prompts = [{"prompt": chat_text(processor, Item([q["image"]], q["question"]))[0],
                    "multi_modal_data": {"image": q["image"]}} for q in questions]  # fmt: skip
        settings = [(1.0, None)] + [(k, s) for k in KEEPS for s in SERVED]
        for keep, scorer in settings:
            overrides = None if scorer is None else {"vissparse": {"keep_ratio": keep,
                                                                   "scorer": scorer}}  # fmt: skip
            llm = LLM(model=path, enforce_eager=True, max_model_len=1024, dtype="float32",
                      seed=0, hf_overrides=overrides)  # fmt: skip
            params = SamplingParams(temperature=0, max_tokens=MAX_NEW_TOKENS)
            outputs = llm.generate(prompts, params, use_tqdm=False)
            right = [exact_match(o.outputs[0].text, q["answer"])
                     for o, q in zip(outputs, questions, strict=True)]  # fmt: skip
            rows.append({"model": family, "scorer": scorer or "none", "keep_ratio": keep,
                         "accuracy": sum(right) / len(right), "n": len(right)})  # fmt: skip
            print(f"{family} {scorer} {keep}: {rows[-1]['accuracy']:.3f}", flush=True)
            del llm
            gc.collect()
    import vllm

    return {"n_questions": n, "question_seed": 0, "split": "test", "rows": rows,
            "vllm": vllm.__version__, "machine": machine_description(),
            "minutes": (time.perf_counter() - start) / 60}  # fmt: skip


def render(results: dict, hf_path: Path) -> str:
    from vissparse.bench.report import machine_name

    hf = {}
    if hf_path.exists():
        recorded = json.loads(hf_path.read_text())
        if recorded.get("n_questions") == results["n_questions"]:
            for r in recorded["results"]:
                if r["family"] == "all" and not r.get("stage"):
                    hf[(r["model"], r["scorer"], r["keep_ratio"])] = r["accuracy"]
    vllm_rows = {(r["model"], r["scorer"], r["keep_ratio"]): r["accuracy"]
                 for r in results["rows"]}  # fmt: skip
    machine = results["machine"]
    lines = [
        f"{results['n_questions']} held-out questions (seed 0), greedy, exact match; vLLM "
        f"{results['vllm']} (CPU build) on {machine_name(machine)}, "
        f"{results['minutes']:.0f} minutes. HF: the recorded `make bench-testbed` rows.",
        "",
        "| method | keep | llava vLLM | llava HF | qwen2_vl vLLM | qwen2_vl HF |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    keys = sorted({(s, k) for _, s, k in vllm_rows}, key=lambda sk: (-sk[1], sk[0]))
    for scorer, keep in keys:
        cells = []
        for family in FAMILIES:
            v = vllm_rows.get((family, scorer, keep))
            h = hf.get((family, scorer if scorer != "none" else "cosine", keep))
            cells += [_pct(v), _pct(h)]
        lines.append(f"| {scorer if scorer != 'none' else 'unpruned'} | {keep:g} | "
                     + " | ".join(cells) + " |")  # fmt: skip
    return "\n".join(lines)


def _pct(value: float | None) -> str:
    return "" if value is None else f"{100 * value:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/vllm"))
    parser.add_argument("--readme", type=Path)
    parser.add_argument("--render-only", action="store_true")
    parser.add_argument(
        "--hf", type=Path, default=Path("benchmarks/results/testbed/testbed_eval.json")
    )
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "vllm_testbed.json"
    if not args.render_only:
        path.write_text(json.dumps(measure(args.n), indent=2) + "\n")
    from mock_benchmark import publish

    text = render(json.loads(path.read_text()), args.hf)
    publish(text, args.out / "vllm_testbed.md", args.readme, "vllm-testbed")


if __name__ == "__main__":
    main()
