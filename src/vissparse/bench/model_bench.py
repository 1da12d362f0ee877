"""``vissparse bench --model-config``: paired phase timings against the FLOP bound."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from typing import Any

import torch
import torch._dynamo
from torch import Tensor
from torch._dynamo.utils import counters
from tqdm.auto import tqdm

from vissparse.bench.checks import check_count
from vissparse.bench.compiled_timing import timed_compiled_call
from vissparse.bench.flops import analytic_prefill_flops, equal_flops_keep
from vissparse.bench.measure import CallTiming, prefill_flops, timed_call
from vissparse.bench.model_configs import build_model
from vissparse.config import PruningConfig
from vissparse.hf.downsample import downsampled_size
from vissparse.hf.pipeline import HFPipeline
from vissparse.keep_ratio import validate_keep_ratio
from vissparse.testing import random_image

PROMPT = "What color is the car in this picture?"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
ATTENTION = ("sdpa", "eager")


def _stats(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def _summary(calls: list[CallTiming], batch_size: int, new_tokens: int) -> dict[str, Any]:
    """Medians of one side's calls; throughput from the median end-to-end time."""
    per_token = [statistics.median(c.decode_ms) for c in calls if c.decode_ms]
    e2e_s = statistics.median(c.e2e_ms for c in calls) / 1e3
    out = {
        "vision_ms": _stats([c.vision_ms for c in calls]),
        "overhead_ms": _stats([c.overhead_ms for c in calls]),
        "signal_ms": _stats([c.signal_ms for c in calls]),
        "prefill_ms": _stats([c.ttft_ms for c in calls]),
        "lm_prefill_ms": _stats([c.prefill_ms for c in calls]),
        "e2e_ms": _stats([c.e2e_ms for c in calls]),
        "kv_cache_bytes": calls[0].kv_cache_bytes,
        "sequence_length": calls[0].sequence_length,
        **({"padded_length": calls[0].padded_length} if calls[0].padded_length else {}),
        "peak_memory_bytes": calls[0].peak_memory_bytes,
        "sequences_per_s": batch_size / e2e_s,
        "tokens_per_s": batch_size * new_tokens / e2e_s,
    }
    if per_token:
        out["decode_ms_per_token"] = _stats(per_token)
    return out


def _ratio(base: dict[str, Any], pruned: dict[str, Any], key: str) -> float | None:
    if key not in base or key not in pruned:
        return None
    return base[key]["median"] / pruned[key]["median"]


def run_model_bench(
    name: str,
    keep_ratios: list[float],
    device: str = "cpu",
    dtype: str = "float32",
    new_tokens: int = 8,
    repeats: int = 3,
    warmup: int = 1,
    depth_scale: float = 8,
    attn_implementation: str = "sdpa",
    seed: int = 0,
    progress: bool = True,
    scorer: str | list[str] = "cosine",
    strategy: str = "topk",
    stage: str = "input",
    layer: int | tuple[int, ...] | None = None,
    on_row: Callable[[dict[str, Any]], None] | None = None,
    batch_size: int = 1,
    compile: bool = False,
    compile_backend: str | None = None,
) -> dict[str, Any]:
    """Benchmark a named config at each keep ratio, paired with the unpruned baseline.

    Each call answers ``batch_size`` prompts at once, each about its own random image
    (seeds ``seed``, ``seed + 1``, ...; one size, so rows differ in length only where the
    family's processor makes them differ, and then they are left-padded). Token counts,
    KV-cache bytes, peak memory and FLOPs are the whole batch's; each side's throughput
    (sequences and new tokens per second) follows from its median end-to-end time.

    ``scorer`` may be a list: the model is built once and every scorer runs at every
    keep ratio (each row names its scorer). For each keep ratio, ``repeats`` baseline
    and pruned calls run interleaved on the same inputs after ``warmup`` untimed pairs.
    The prefill speedup compares times to first token (vision encoder included on both
    sides); the bound is the ratio of prefill FLOPs counted by ``FlopCounterMode``
    (cross-checked against the analytic formula).

    ``scorer="downsample"`` (Qwen) feeds the pruned side the images downsampled before
    the processor (:mod:`vissparse.hf.downsample`): its vision phase, time to first token
    (so its prefill speedup) and both FLOP bounds count the smaller encoder run; the row
    adds ``downsampled_to`` (height, width); ``n_image_tokens`` is the full-size count.

    ``stage="llm"`` prunes inside the language model from ``layer`` on (several layers:
    PyramidDrop-style stages). Each row then reports the image tokens a layer sees on
    average (``avg_image_tokens``, the fair count) and ``input_keep_at_equal_flops``, the
    input-stage keep ratio with the same analytic prefill FLOPs.

    ``compile=True`` runs both sides' language model compiled, as ``VisSparse(compile=True)``
    does: a static KV cache and ``torch.compile`` at bucketed prompt lengths (phases timed as
    :mod:`vissparse.bench.compiled_timing` says). Dynamo starts afresh for the run; the
    warm-up pairs (at least one) compile each side's bucket, so no timed call compiles:
    each row records the graphs compiled during its timed calls (``compiled_graphs_timed``,
    0 when none did). ``compile_backend`` replaces torch.compile's backend (tests use
    ``"aot_eager"``).

    Every setting is checked before the model is built (:func:`check_model_bench`).
    ``on_row`` is called with the report after each finished row (to save it: an
    interrupted run keeps what it saved).
    """
    scorers = [scorer] if isinstance(scorer, str) else list(scorer)
    cases = check_model_bench(name, keep_ratios, dtype, new_tokens, repeats, warmup, depth_scale,
                              attn_implementation, scorers, strategy, stage, layer,
                              batch_size, compile)  # fmt: skip
    if compile:  # a fresh dynamo: graphs of an earlier run must not count against its limit
        torch._dynamo.reset()
    model, processor, shape = build_model(name, depth_scale, DTYPES[dtype], device,
                                          attn_implementation, seed)  # fmt: skip
    base_pipe = HFPipeline(model, processor, PruningConfig(keep_ratio=1.0))
    inputs, prompt_mask = bench_inputs(base_pipe, shape.image_size, batch_size, seed)
    n_image = int((inputs["input_ids"] == base_pipe.adapter.image_token_id).sum())
    n_patches = patches_per_image(inputs, shape.vision, batch_size)
    seq = int(inputs["input_ids"].shape[1])  # each row's length (left-padded to the longest)
    base_flops = prefill_flops(base_pipe, inputs, prompt_mask, prune=False)
    base_analytic = batch_size * analytic_prefill_flops(model.config, seq, n_patches)
    vision_layers, text_layers = shape.depths(depth_scale)
    rows: list[dict[str, Any]] = []
    report = {"config": {
        "name": name, "reference": shape.reference, "family": shape.family,
        "depth_scale": depth_scale, "vision_layers": vision_layers,
        "text_layers": text_layers, "real_vision_layers": shape.vision_layers,
        "real_text_layers": shape.text_layers, "image_size": list(shape.image_size),
        "batch_size": batch_size, "n_image_tokens": n_image, "sequence_length": seq,
        "device": device, "dtype": dtype, "attn_implementation": attn_implementation,
        "new_tokens": new_tokens, "repeats": repeats, "warmup": warmup,
        "scorer": scorer, "strategy": strategy, "stage": stage,
        "layer": list(layer) if isinstance(layer, tuple | list) else layer,
        "flop_counter_vs_analytic": base_flops / base_analytic, "prompt": PROMPT,
        "compile": compile,
    }, "results": rows}  # fmt: skip
    bar = tqdm(total=len(cases) * (warmup + repeats), desc=name, disable=not progress)
    # every side's bucket is a graph of one forward: dynamo's default limit (8) would
    # silently run the rest eagerly
    limit = torch._dynamo.config.patch(recompile_limit=64) if compile else nullcontext()
    try:
        with limit:
            for case_scorer, config in cases:
                rows.append(_row(model, processor, config, case_scorer, inputs, prompt_mask,
                                 new_tokens, warmup, repeats, bar, n_image, n_patches, seq,
                                 base_flops, base_analytic, batch_size,
                                 compile_backend, (shape.image_size, seed)))  # fmt: skip
                if on_row is not None:
                    on_row(report)
    finally:
        bar.close()
    return report


def bench_inputs(
    pipe: HFPipeline, image_size: tuple[int, int], batch_size: int, seed: int,
    downsample: bool = False,
) -> tuple[Any, Tensor]:  # fmt: skip
    """One call's processed batch and its prompt mask: one random image per prompt.

    The images have seeds ``seed``, ``seed + 1``, ... and all of ``image_size``; every
    prompt is the benchmark's. ``downsample``: the images as ``scorer="downsample"``
    feeds them (resized before the processor).

    Example:
        >>> from vissparse.testing import tiny_model
        >>> model, processor = tiny_model("llava")
        >>> pipe = HFPipeline(model, processor, PruningConfig(keep_ratio=0.5))
        >>> inputs, prompt_mask = bench_inputs(pipe, (32, 32), 3, seed=0)
        >>> inputs["input_ids"].shape[0], prompt_mask.shape[0]
        (3, 3)
    """
    images = [random_image(*image_size, seed=seed + i) for i in range(batch_size)]
    if batch_size == 1:  # the single-prompt call, as recorded before batches
        inputs, prompt_mask, _, _ = pipe._encode(images[0], PROMPT, downsample)
    else:
        inputs, prompt_mask, _, _ = pipe._encode(images, [PROMPT] * batch_size, downsample)
    return inputs, prompt_mask


def patches_per_image(inputs: Any, vision: dict[str, Any], batch_size: int) -> int:
    """Vision-encoder patches of one image of the batch (its tiles and thumbnail included).

    The images of a benchmark batch share one size, so each has this many.
    """
    if "image_grid_thw" in inputs:  # Qwen: one (t, h, w) row per image
        return int(inputs["image_grid_thw"].prod(dim=-1).sum()) // batch_size
    n_patches = (vision["image_size"] // vision["patch_size"]) ** 2
    pixels = inputs["pixel_values"]
    if pixels.dim() == 5:  # anyres tiles (LLaVA-OneVision): every tile is encoded
        return n_patches * int(pixels.shape[1])
    return n_patches * int(pixels.shape[0]) // batch_size  # InternVL: tiles and thumbnail


def check_model_bench(
    name: str,
    keep_ratios: Sequence[float],
    dtype: str,
    new_tokens: int,
    repeats: int,
    warmup: int,
    depth_scale: float,
    attn_implementation: str,
    scorers: Sequence[str],
    strategy: str,
    stage: str,
    layer: int | tuple[int, ...] | None,
    batch_size: int = 1,
    compile: bool = False,
) -> list[tuple[str, PruningConfig]]:
    """Every setting of :func:`run_model_bench` checked before the model is built.

    Each case (scorer, keep ratio) is set up on a weightless copy of the model (on the
    ``meta`` device), so what a pipeline refuses (a layer beyond the model's depth, a
    method the family cannot run) fails in a second, not after the build. Returns the
    ``(scorer, config)`` cases in order. ``compile=True`` needs a warm-up pair (compilation
    must not land in a timed call) and the input stage; a family that refuses the compiled
    path refuses it here.

    Example:
        >>> check_model_bench("qwen2-vl-2b", [0.1], "float32", 1, 1, 0, 32, "sdpa",
        ...                   ["fastv"], "topk", "llm", 999)
        Traceback (most recent call last):
        ...
        ValueError: `layer` 999 is beyond the language model's 1 layers (0..0)
    """
    if dtype not in DTYPES:
        raise ValueError(f"`dtype` must be one of {sorted(DTYPES)}, got {dtype!r}")
    for key, value, least in (("new_tokens", new_tokens, 1), ("repeats", repeats, 1),
                              ("warmup", warmup, 0), ("batch_size", batch_size, 1)):  # fmt: skip
        check_count(value, key, least)
    if compile and warmup < 1:
        raise ValueError(f"`warmup` must be >= 1 with compile=True (the warm-up compiles), "
                         f"got {warmup}")  # fmt: skip
    if compile and stage != "input":
        raise ValueError(f"`compile=True` needs stage='input', got stage={stage!r}")
    if attn_implementation not in ATTENTION:
        raise ValueError(
            f"`attn_implementation` must be one of {ATTENTION}, got {attn_implementation!r}"
        )
    if not scorers:
        raise ValueError("`scorer` must name at least one scorer")
    ratios = [validate_keep_ratio(k, "keep_ratios") for k in keep_ratios]
    if not ratios:
        raise ValueError("`keep_ratios` must hold at least one keep ratio")
    model, processor, _ = build_model(name, depth_scale, DTYPES[dtype], "meta",
                                      attn_implementation)  # fmt: skip
    cases = []
    for case_scorer in scorers:
        for keep_ratio in ratios:
            config = PruningConfig(keep_ratio=keep_ratio, scorer=case_scorer, strategy=strategy,
                                   stage=stage,  # type: ignore[arg-type]
                                   layer=layer, compile=compile)  # fmt: skip
            HFPipeline(model, processor, config)  # its own checks, on the skeleton
            cases.append((case_scorer, config))
    return cases


def _row(
    model: Any, processor: Any, config: PruningConfig, case_scorer: str, inputs: Any,
    prompt_mask: Any, new_tokens: int, warmup: int, repeats: int, bar: Any, n_image: int,
    n_patches: int, seq: int, base_flops: float, base_analytic: float, batch_size: int,
    compile_backend: str | None = None, images: tuple[tuple[int, int], int] = ((0, 0), 0),
) -> dict[str, Any]:  # fmt: skip
    """One case's row: ``repeats`` interleaved baseline and pruned calls after warm-up.

    ``images``: image size and seed, for ``scorer="downsample"``'s pruned-side inputs.
    """
    keep_ratio, stage = config.keep_ratio, config.stage
    pipe = HFPipeline(model, processor, config)
    base_calls, pruned_calls = [], []
    graphs_warm = 0
    small, small_mask, small_patches = inputs, prompt_mask, n_patches  # the pruned side's
    resized: list[int] = []
    if pipe.downsampler is not None:  # the images downsampled: a smaller encoder run
        (height, width), facts = images[0], pipe.downsampler.facts
        resized = list(downsampled_size(width, height, keep_ratio, facts))[::-1]
        small, small_mask = bench_inputs(pipe, images[0], batch_size, images[1], downsample=True)
        small_patches = patches_per_image(small, {}, batch_size)  # Qwen: image_grid_thw

    def call(prune: bool) -> CallTiming:
        x, mask = (small, small_mask) if prune else (inputs, prompt_mask)
        if config.compile:
            return timed_compiled_call(pipe, x, mask, prune, new_tokens,
                                       compile_backend)  # fmt: skip
        return timed_call(pipe, x, mask, prune, new_tokens)

    for i in range(warmup + repeats):
        if i == warmup:
            graphs_warm = counters["stats"]["unique_graphs"]
        order = (False, True) if (i - warmup) % 2 == 0 else (True, False)
        if config.compile and i < warmup:  # the baseline's longest bucket sizes the static
            order = (False, True)  # cache first: the pruned side compiles against that size
        pair = {p: call(p) for p in order}
        if i >= warmup:
            base_calls.append(pair[False])
            pruned_calls.append(pair[True])
        bar.update()
    graphs_timed = counters["stats"]["unique_graphs"] - graphs_warm
    base = _summary(base_calls, batch_size, new_tokens)
    pruned = _summary(pruned_calls, batch_size, new_tokens)
    pruned_flops = prefill_flops(pipe, small, small_mask, prune=True)
    lengths = pruned_calls[0].layer_lengths
    analytic_pruned = batch_size * analytic_prefill_flops(model.config, lengths, small_patches)
    per_layer = pruned_calls[0].image_tokens_per_layer
    overhead = pruned["overhead_ms"]["median"]
    prefill_speedup = base["prefill_ms"]["median"] / pruned["prefill_ms"]["median"]
    return {
        "scorer": case_scorer,
        "keep_ratio": keep_ratio,
        "batch_size": batch_size,
        "compile": config.compile,
        "n_image_tokens": n_image,
        "stage": stage,
        "layers": list(config.layer_schedule().layers) if stage == "llm" else [],
        "n_kept": per_layer[-1],
        "avg_image_tokens": sum(per_layer) / len(per_layer),
        "input_keep_at_equal_flops": equal_flops_keep(model.config, seq, n_image // batch_size,
                                                      n_patches, analytic_pruned / batch_size),
        "prefill_speedup": prefill_speedup,
        "lm_prefill_speedup": _ratio(base, pruned, "lm_prefill_ms"),
        "decode_speedup": _ratio(base, pruned, "decode_ms_per_token"),
        "e2e_speedup": _ratio(base, pruned, "e2e_ms"),
        "baseline_sequences_per_s": base["sequences_per_s"],
        "pruned_sequences_per_s": pruned["sequences_per_s"],
        "baseline_tokens_per_s": base["tokens_per_s"],
        "pruned_tokens_per_s": pruned["tokens_per_s"],
        "throughput_gain": pruned["sequences_per_s"] / base["sequences_per_s"],
        "flop_speedup_bound": base_flops / pruned_flops,
        "analytic_flop_speedup_bound": base_analytic / analytic_pruned,
        "kv_cache_ratio": pruned["kv_cache_bytes"] / base["kv_cache_bytes"],
        "overhead_ms": overhead,
        "signal_ms": pruned["signal_ms"]["median"],
        "overhead_fraction": overhead / base["prefill_ms"]["median"],
        "prefill_vs_bound": prefill_speedup / (base_flops / pruned_flops),
        "flops_baseline": base_flops,
        "flops_pruned": pruned_flops,
        "baseline": base,
        "pruned": pruned,
        **({"compiled_graphs_timed": graphs_timed} if config.compile else {}),
        **({"downsampled_to": resized} if resized else {}),
    }  # fmt: skip


TARGETS = {
    "llava-1.5-7b": [
        ("prefill_speedup >= 0.85 x flop_speedup_bound at keep 0.10", 0.10,
         lambda r: r["prefill_vs_bound"] >= 0.85),
        ("prefill_speedup >= 0.85 x flop_speedup_bound at keep 0.25", 0.25,
         lambda r: r["prefill_vs_bound"] >= 0.85),
        ("KV cache <= 0.25 x baseline at keep 0.10", 0.10, lambda r: r["kv_cache_ratio"] <= 0.25),
    ],
}  # fmt: skip


# issue 33, on a GPU: (configs, when it applies, keep ratio, least prefill_vs_bound)
RUN_TARGETS = (
    (("llava-1.5-7b", "qwen2-vl-7b"), "batch >= 8", lambda c: c["batch_size"] >= 8, 0.10, 0.85),
    (("llava-1.5-7b", "qwen2-vl-7b"), "batch >= 8", lambda c: c["batch_size"] >= 8, 0.25, 0.85),
    (("llava-1.5-7b", "qwen2-vl-7b"), "compiled, batch 1",
     lambda c: c.get("compile", False) and c["batch_size"] == 1, 0.10, 0.6),
)  # fmt: skip


def check_targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Evaluate the issue's targets on a report (where its keep ratios were measured).

    Example:
        >>> row = {"keep_ratio": 0.1, "prefill_vs_bound": 0.7, "overhead_fraction": 0.01}
        >>> config = {"name": "qwen2-vl-7b", "batch_size": 1, "compile": True}
        >>> check_targets({"config": config, "results": [row]})[0]
        {'target': 'compiled, batch 1: prefill_speedup >= 0.6 x flop_speedup_bound at keep 0.10', 'met': True}
    """  # noqa: E501
    checks = []
    config = report["config"]
    rows = {r["keep_ratio"]: r for r in report["results"]}
    for text, keep, test in TARGETS.get(config["name"], []):
        if keep in rows:
            checks.append({"target": text, "met": bool(test(rows[keep]))})
    for names, when, applies, keep, least in RUN_TARGETS:
        if config["name"] in names and applies({"batch_size": 1, **config}) and keep in rows:
            checks.append({"target": f"{when}: prefill_speedup >= {least:g} x flop_speedup_bound "
                                     f"at keep {keep:.2f}",
                           "met": rows[keep]["prefill_vs_bound"] >= least})  # fmt: skip
    for r in report["results"]:
        if r["keep_ratio"] < 1.0:
            checks.append({"target": f"scoring + masking overhead <= 2% of baseline prefill "
                                     f"at keep {r['keep_ratio']:g}",
                           "met": r["overhead_fraction"] <= 0.02})  # fmt: skip
    return checks
