"""Throughput of pruned serving in vLLM, against unpruned vLLM and VisSparse's HF path.

    .venv-vllm/bin/python benchmarks/vllm_benchmark.py --model-config llava-1.5-7b \\
        --out benchmarks/results/vllm --readme README.md

For a shape-faithful config (``vissparse.bench.model_configs``: real widths, depth divided
by ``--depth-scale``) with random weights (vLLM's ``load_format="dummy"``; the HF path
builds the same shapes with random weights), for each keep ratio and each concurrency
(requests submitted together, distinct random images, ``--new-tokens`` generated each):

- vLLM: requests/s and output tokens/s (median wall time of ``--repeats`` runs after a
  warm-up at that concurrency), time to first token (median and p90 over the requests
  of those runs), KV blocks per request and how many such requests fit in the engine's KV budget
  (``VLLM_CPU_KVCACHE_SPACE``), the plugin's own time per image against the unpruned
  prefill;
- the analytic prefill FLOP bound (vision encoder + LM prefill, unpruned / pruned);
- the HF path (``HFPipeline.generate`` on the same batch, one warm-up call per keep
  ratio): requests/s.

Each engine runs in its own process (``--worker``), one after another: nothing else runs
while a number is taken. Writes ``{config}_d{depth}.json`` and ``vllm_cpu.md`` (quoted in
the README between the ``vllm-results`` markers); ``--render-only`` rebuilds the table.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

PROMPT = "What color is the car in this picture?"
FAMILY = {"llava": "llava", "qwen2_vl": "qwen2_vl"}


def prepare(name: str, depth_scale: float, folder: Path) -> dict:
    """Save the config and processor (no weights) where vLLM can load them as a model."""
    from vissparse.bench.model_configs import build_config
    from vissparse.testbed.portable import make_portable

    config, _, processor, shape = build_config(name, depth_scale)
    config.architectures = [
        "LlavaForConditionalGeneration" if shape.family == "llava"
        else "Qwen2VLForConditionalGeneration"
    ]  # fmt: skip
    config.save_pretrained(folder)
    processor.save_pretrained(folder)
    if shape.family == "qwen2_vl":
        make_portable(folder, "qwen2_vl")
    return {"family": shape.family, "image_size": list(shape.image_size),
            "reference": shape.reference}  # fmt: skip


def images(n: int, size: tuple[int, int], run: int = 0) -> list:
    """``n`` distinct random images; each ``run`` gets others, so no run finds the one
    before it in vLLM's prefix or encoder cache (a repeat would then skip the prefill)."""
    from vissparse.testing import random_image

    return [random_image(*size, seed=1000 + 100_000 * run + i) for i in range(n)]


def worker(args: argparse.Namespace) -> None:
    """One engine (one keep ratio) over every concurrency; prints one JSON line."""
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    from vllm import LLM, SamplingParams

    from vissparse.hf.inputs import Item, chat_text
    from vissparse.hf.loading import load_processor

    info = json.loads(args.info)
    folder = args.folder
    processor = load_processor(folder, info["family"])
    text = chat_text(processor, Item([images(1, tuple(info["image_size"]))[0]], PROMPT))[0]
    overrides = None
    if args.keep < 1.0:
        overrides = {"vissparse": {"keep_ratio": args.keep, "scorer": args.scorer}}
    llm = LLM(model=folder, load_format="dummy", dtype=args.dtype, enforce_eager=True,
              max_num_seqs=max(args.concurrency), seed=0, hf_overrides=overrides,
              disable_log_stats=False, max_model_len=4096)  # fmt: skip
    cache = llm.llm_engine.vllm_config.cache_config
    params = SamplingParams(temperature=0, max_tokens=args.new_tokens,
                            min_tokens=args.new_tokens, ignore_eos=True)  # fmt: skip
    size = tuple(info["image_size"])
    rows = []
    run = 0

    def prompts(c: int) -> list[dict]:
        nonlocal run
        run += 1  # fresh images every call
        return [{"prompt": text, "multi_modal_data": {"image": im}} for im in images(c, size, run)]

    llm.generate(prompts(1), params, use_tqdm=False)  # warm-up
    for c in args.concurrency:
        walls, ttft = [], []
        for _ in range(args.repeats):
            batch = prompts(c)
            start = time.perf_counter()
            outputs = llm.generate(batch, params, use_tqdm=False)
            walls.append(time.perf_counter() - start)
            ttft += [o.metrics.first_token_latency for o in outputs if o.metrics is not None]
        prompt_tokens = len(outputs[0].prompt_token_ids)
        blocks = math.ceil((prompt_tokens + args.new_tokens) / cache.block_size)
        wall = statistics.median(walls)
        rows.append({
            "concurrency": c, "wall_s": wall, "requests_per_s": c / wall,
            "output_tokens_per_s": c * args.new_tokens / wall,
            "ttft_ms_median": 1000 * statistics.median(ttft) if ttft else None,
            "ttft_ms_p90": 1000 * _quantile(ttft, 0.9) if ttft else None,
            "prompt_tokens": prompt_tokens, "kv_blocks_per_request": blocks,
            "requests_in_kv_budget": (cache.num_gpu_blocks or 0) // blocks,
        })  # fmt: skip
    out = {"keep_ratio": args.keep, "rows": rows, "block_size": cache.block_size,
           "kv_blocks": cache.num_gpu_blocks}  # fmt: skip
    if args.keep < 1.0:
        out["plugin_ms_per_image"] = plugin_ms(llm, args)
    print("RESULT " + json.dumps(out))


def plugin_ms(llm, args: argparse.Namespace) -> float:
    """The plugin's selection time per image, on the model's own embedding width."""
    import torch

    from vissparse.vllm.embedding import kept_embeddings
    from vissparse.vllm.settings import ServeSettings

    config = llm.llm_engine.vllm_config.model_config.hf_config
    d = config.text_config.hidden_size
    n = args.image_tokens
    core = ServeSettings.parse({"keep_ratio": args.keep, "scorer": args.scorer}).core()
    image, prompt = torch.randn(n, d), torch.randn(9, d)
    times = []
    for _ in range(args.repeats + 2):
        start = time.perf_counter()
        kept_embeddings(core, args.keep, [image], [prompt])
        times.append(1000 * (time.perf_counter() - start))
    return statistics.median(times[2:])


def hf_rows(name: str, depth_scale: float, keeps: list[float], concurrency: list[int],
            args: argparse.Namespace) -> list[dict]:  # fmt: skip
    """The HF path on the same batches: requests/s, pruned and unpruned side by side."""
    from vissparse.bench.model_configs import build_model
    from vissparse.config import PruningConfig
    from vissparse.hf.pipeline import HFPipeline

    model, processor, shape = build_model(name, depth_scale)
    rows = []
    for keep in keeps:
        pipe = HFPipeline(model, processor, PruningConfig(keep_ratio=keep, scorer=args.scorer))
        kwargs = dict(max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens)
        pipe.generate(images(1, shape.image_size), [PROMPT], **kwargs)  # warm-up
        for c in concurrency:
            batch = images(c, shape.image_size)
            walls = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                pipe.generate(batch, [PROMPT] * c, **kwargs)
                walls.append(time.perf_counter() - start)
            rows.append({"keep_ratio": keep, "concurrency": c,
                         "requests_per_s": c / statistics.median(walls)})  # fmt: skip
            print(f"hf keep {keep} c {c}: {rows[-1]['requests_per_s']:.3f} req/s", flush=True)
    return rows


def flop_bound(name: str, depth_scale: float, prompt_tokens: dict[float, int]) -> dict:
    """Unpruned / pruned analytic prefill FLOPs per keep ratio."""
    from vissparse.bench.flops import analytic_prefill_flops
    from vissparse.bench.model_configs import MODEL_CONFIGS, build_config

    config, _, _, shape = build_config(name, depth_scale)
    if shape.family == "llava":
        n_patches = (shape.vision["image_size"] // shape.vision["patch_size"]) ** 2
    else:
        h, w = shape.image_size
        n_patches = (h // 14) * (w // 14)
    assert name in MODEL_CONFIGS
    full = analytic_prefill_flops(config, prompt_tokens[1.0], n_patches)
    return {k: full / analytic_prefill_flops(config, n, n_patches)
            for k, n in prompt_tokens.items()}  # fmt: skip


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


def render(results: dict) -> str:
    from vissparse.bench.report import machine_name

    machine = results["machine"]
    lines = [
        f"**{results['config']}** (`--depth-scale {results['depth_scale']}`, random weights, "
        f"{results['dtype']}, scorer `{results['scorer']}`, {results['new_tokens']} new tokens "
        f"per request), measured on {machine_name(machine)} ({machine.get('cpu_count')} cores), "
        f"vLLM {results['vllm']} (CPU build), in {results['minutes']:.0f} minutes"
        + (
            f" (HF rows from an earlier run of the same command on this machine, "
            f"`--hf-from {results['hf_from']}`)"
            if results.get("hf_from")
            else ""
        )
        + ":",
        "",
        "| keep | requests | vLLM req/s | x unpruned | out tok/s | TTFT median ms | TTFT p90 ms "
        "| TTFT x | FLOP bound | KV blocks/req | fit in KV | HF req/s | HF x unpruned |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
        "| ---: |",
    ]
    runs = {r["keep_ratio"]: {row["concurrency"]: row for row in r["rows"]}
            for r in results["vllm_runs"]}  # fmt: skip
    hf = {(r["keep_ratio"], r["concurrency"]): r["requests_per_s"] for r in results["hf"]}
    for keep in sorted(runs, reverse=True):
        for c, row in sorted(runs[keep].items()):
            base = runs[1.0][c]
            hf_rate, hf_base = hf.get((keep, c)), hf.get((1.0, c))
            ttft_x = (base["ttft_ms_median"] / row["ttft_ms_median"]
                      if row["ttft_ms_median"] else None)  # fmt: skip
            lines.append(
                f"| {keep:g} | {c} | {row['requests_per_s']:.2f} | "
                f"{row['requests_per_s'] / base['requests_per_s']:.2f} | "
                f"{row['output_tokens_per_s']:.1f} | {_f(row['ttft_ms_median'], 0)} | "
                f"{_f(row['ttft_ms_p90'], 0)} | {_f(ttft_x, 2)} | "
                f"{results['flop_bound'][str(keep)]:.2f} | {row['kv_blocks_per_request']} | "
                f"{row['requests_in_kv_budget']} | {_f(hf_rate, 2)} | "
                f"{_f(hf_rate / hf_base if hf_rate and hf_base else None, 2)} |"
            )
    plugin = {r["keep_ratio"]: r.get("plugin_ms_per_image") for r in results["vllm_runs"]}
    base_ttft = runs[1.0][min(runs[1.0])]["ttft_ms_median"]
    notes = [f"keep {k:g}: {ms:.2f} ms ({100 * ms / base_ttft:.1f}% of the unpruned "
             f"prefill at 1 request)" for k, ms in sorted(plugin.items()) if ms]  # fmt: skip
    lines += ["", "The plugin's own time per image (selection core on one image's tokens): "
              + "; ".join(notes) + "."]  # fmt: skip
    return "\n".join(lines)


def _f(value: float | None, digits: int) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model-config", default="llava-1.5-7b")
    parser.add_argument("--depth-scale", type=float, default=8)
    parser.add_argument("--keep-ratio", type=float, nargs="+", default=[1.0, 0.25, 0.1])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--new-tokens", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--scorer", default="divprune")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--no-hf", action="store_true", help="skip the HF path's rows")
    parser.add_argument(
        "--hf-from", type=Path, help="take the HF rows from this earlier result JSON (same config)"
    )
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/vllm"))
    parser.add_argument("--readme", type=Path)
    parser.add_argument("--render-only", action="store_true")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--keep", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    parser.add_argument("--info", help=argparse.SUPPRESS)
    parser.add_argument("--image-tokens", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    if 1.0 not in args.keep_ratio:
        raise SystemExit("--keep-ratio must include 1.0 (the unpruned baseline)")
    args.out.mkdir(parents=True, exist_ok=True)
    depth = f"{args.depth_scale:g}"
    path = args.out / f"{args.model_config}_d{depth}.json"
    if not args.render_only:
        results = measure(args)
        path.write_text(json.dumps(results, indent=2) + "\n")
    results = json.loads(path.read_text())
    from mock_benchmark import publish

    text = render(results)
    publish(text, args.out / f"vllm_cpu_{args.model_config}.md", args.readme,
            f"vllm-results-{args.model_config}")  # fmt: skip


def measure(args: argparse.Namespace) -> dict:
    import vllm

    from vissparse.bench.report import machine_description

    start = time.perf_counter()
    folder = Path(tempfile.mkdtemp()) / args.model_config
    info = prepare(args.model_config, args.depth_scale, folder)
    runs = []
    image_tokens = None
    for keep in sorted(args.keep_ratio, reverse=True):  # 1.0 first: its counts size the rest
        command = [sys.executable, __file__, "--worker", "--keep", str(keep), "--folder",
                   str(folder), "--info", json.dumps(info), "--scorer", args.scorer,
                   "--dtype", args.dtype, "--new-tokens", str(args.new_tokens),
                   "--repeats", str(args.repeats), "--image-tokens", str(image_tokens or 0),
                   "--concurrency", *map(str, args.concurrency)]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True)
        lines = [ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")]
        if done.returncode or not lines:
            raise SystemExit(f"keep {keep} failed:\n{done.stderr[-4000:]}")
        run = json.loads(lines[-1][len("RESULT ") :])
        runs.append(run)
        if keep == 1.0:
            n_text = len(_text_ids(folder, info))
            image_tokens = run["rows"][0]["prompt_tokens"] - n_text
        print(f"vllm keep {keep}: " + ", ".join(
            f"c={r['concurrency']} {r['requests_per_s']:.2f} req/s" for r in run["rows"]),
            flush=True)  # fmt: skip
    tokens = {r["keep_ratio"]: r["rows"][0]["prompt_tokens"] for r in runs}
    if args.hf_from is not None:
        hf = json.loads(args.hf_from.read_text())["hf"]
    else:
        hf = [] if args.no_hf else hf_rows(args.model_config, args.depth_scale,
                                           sorted(args.keep_ratio, reverse=True),
                                           args.concurrency, args)  # fmt: skip
    return {
        "config": args.model_config, "depth_scale": args.depth_scale, "dtype": args.dtype,
        "scorer": args.scorer, "new_tokens": args.new_tokens, "repeats": args.repeats,
        "vllm": vllm.__version__, "machine": machine_description(), "vllm_runs": runs,
        "hf": hf, "flop_bound": {str(k): v for k, v in
                                 flop_bound(args.model_config, args.depth_scale, tokens).items()},
        "image_tokens": image_tokens, "minutes": (time.perf_counter() - start) / 60,
        "hf_from": None if args.hf_from is None else str(args.hf_from),
    }  # fmt: skip


def _text_ids(folder: Path, info: dict) -> list[int]:
    """The prompt's token ids without the image's run (one placeholder left)."""
    from vissparse.hf.inputs import Item, chat_text
    from vissparse.hf.loading import load_processor

    processor = load_processor(str(folder), info["family"])
    text = chat_text(processor, Item([images(1, tuple(info["image_size"]))[0]], PROMPT))[0]
    return processor.tokenizer.encode(text, add_special_tokens=False)


if __name__ == "__main__":
    main()
