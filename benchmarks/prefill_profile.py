"""Where a pruned prefill falls short of the FLOP bound: a diagnostic, not a recorded result.

    python benchmarks/prefill_profile.py --model-config llava-1.5-7b --depth-scale 16 \\
        --keep-ratio 0.1

Three language-model prefills of one image and prompt run interleaved: the full
sequence, the pruned one exactly as the pipeline feeds it (the kept tokens at their
original positions), and an unpruned prefix of the pruned length (contiguous positions).
When the pruned prefill costs what the same-length prefix costs, the pruning path adds
nothing inside the language model, and a shortfall against the FLOP bound is the model's
own cost per token at a short sequence (small matrix products run at a lower rate).
The vision encoder runs with them: its share of the time against its share of the
FLOPs splits the shortfall into the encoder's part (a lower FLOP rate than the language
model's makes it a larger fixed cost than the bound assumes) and the short prefill's.
Then ``torch.profiler``'s share of each op in the full and the pruned prefill.

Everything printed is relative (ratios, shares) so that it can be compared on a busy
machine; no number from it goes into a results table.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile

from vissparse import PruningConfig
from vissparse.bench.flops import count_flops
from vissparse.bench.measure import _lm_inputs
from vissparse.bench.model_bench import bench_inputs
from vissparse.bench.model_configs import MODEL_CONFIGS, build_model
from vissparse.cli_support import keep_ratio, positive_float, positive_int
from vissparse.hf.pipeline import HFPipeline

GEMM = ("aten::mm", "aten::addmm", "aten::bmm", "aten::matmul", "aten::linear")


@torch.inference_mode()
def prefill_cases(pipe: HFPipeline, inputs: Any, prompt_mask: torch.Tensor) -> dict[str, Any]:
    """The language model's keyword arguments: full, pruned, unpruned prefix of that length."""
    pipe.adapter.reset_state()
    emb, vision = pipe.embed(inputs, True)
    pruned = _lm_inputs(pipe, inputs, emb, prompt_mask, True, vision)[0].model_inputs()
    full = _lm_inputs(pipe, inputs, emb, prompt_mask, False, vision)[0].model_inputs()
    n = pruned["inputs_embeds"].shape[1]
    prefix = {
        "inputs_embeds": full["inputs_embeds"][:, :n].contiguous(),
        "attention_mask": full["attention_mask"][:, :n],
        "position_ids": full["position_ids"][..., :n],
    }
    return {"full": full, "pruned": pruned, "same-length prefix": prefix}


@torch.inference_mode()
def prefill(model: Any, kwargs: dict[str, Any]) -> None:
    """One language-model prefill (the logits of the last position)."""
    model(**kwargs, use_cache=True, logits_to_keep=1)


def median_times(runs: dict[str, Callable[[], Any]], repeats: int) -> dict[str, float]:
    """Median milliseconds of each run, the runs interleaved (order alternating)."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    for i in range(repeats + 1):  # the first round warms up
        order = list(runs) if i % 2 else list(reversed(runs))
        for name in order:
            start = time.perf_counter()
            runs[name]()
            if i:
                times[name].append((time.perf_counter() - start) * 1e3)
    return {name: statistics.median(ms) for name, ms in times.items()}


@torch.inference_mode()
def encode(pipe: HFPipeline, inputs: Any) -> None:
    """The vision encoder and projector's pass (the pipeline's ``embed``)."""
    pipe.adapter.reset_state()
    pipe.embed(inputs, True)


def shortfall(ms: dict[str, float], flops: dict[str, int]) -> list[str]:
    """The prefill speedup (vision encoder + LM, no pruning overhead) against the FLOP bound.

    Also the speedup the pruned call would reach if its LM prefill ran at the full one's
    FLOP rate: what is left below the bound then is the vision encoder's part.

    Example:
        >>> ms = {"vision": 20.0, "full": 90.0, "pruned": 18.0}  # a slower encoder
        >>> flops = {"vision": 10, "full": 90, "pruned": 9}
        >>> print(shortfall(ms, flops)[1])
        measured 2.89x = 55% of the bound; at the full prefill's LM FLOP rate 3.79x = 72%
    """
    vision, full, pruned = ms["vision"], ms["full"], ms["pruned"]
    bound = (flops["vision"] + flops["full"]) / (flops["vision"] + flops["pruned"])
    measured = (vision + full) / (vision + pruned)
    same_rate = (vision + full) / (vision + full * flops["pruned"] / flops["full"])
    time_share = vision / (vision + full)
    flop_share = flops["vision"] / (flops["vision"] + flops["full"])
    return [
        f"vision encoder: {time_share:.1%} of the unpruned prefill's time, {flop_share:.1%} of "
        f"its FLOPs; FLOP bound {bound:.2f}x",
        f"measured {measured:.2f}x = {measured / bound:.0%} of the bound; at the full "
        f"prefill's LM FLOP rate {same_rate:.2f}x = {same_rate / bound:.0%}",
    ]


def op_shares(model: Any, kwargs: dict[str, Any]) -> tuple[dict[str, float], float]:
    """Each op's share of one prefill's self CPU time (by op and input shapes), and the total."""
    prefill(model, kwargs)
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        prefill(model, kwargs)
    events = prof.key_averages(group_by_input_shape=True)
    total = sum(e.self_cpu_time_total for e in events)
    shares: dict[str, float] = {}
    for e in events:
        key = f"{e.key} {e.input_shapes}"
        shares[key] = shares.get(key, 0.0) + e.self_cpu_time_total / total
    return shares, total / 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-config", default="llava-1.5-7b", choices=sorted(MODEL_CONFIGS))
    parser.add_argument("--depth-scale", type=positive_float, default=16)
    parser.add_argument("--keep-ratio", type=keep_ratio, default=0.1)
    parser.add_argument("--repeats", type=positive_int, default=3)
    parser.add_argument("--top", type=positive_int, default=12)
    args = parser.parse_args()
    model, processor, shape = build_model(args.model_config, args.depth_scale, torch.float32,
                                          "cpu", "sdpa", 0)  # fmt: skip
    pipe = HFPipeline(model, processor, PruningConfig(keep_ratio=args.keep_ratio))
    inputs, prompt_mask = bench_inputs(pipe, shape.image_size, 1, 0)
    cases = prefill_cases(pipe, inputs, prompt_mask)
    lengths = {name: int(kw["inputs_embeds"].shape[1]) for name, kw in cases.items()}
    runs = {name: partial(prefill, model, kw) for name, kw in cases.items()}
    runs["vision"] = partial(encode, pipe, inputs)
    flops = {name: count_flops(run) for name, run in runs.items()}
    ms = median_times(runs, args.repeats)
    # the two short prefills once more, by themselves: a short run right after the full
    # prefill is slowed by what the long one left in the caches and the allocator
    pair = median_times({k: runs[k] for k in ("pruned", "same-length prefix")}, args.repeats)
    print(f"{args.model_config} at depth/{args.depth_scale:g}, keep {args.keep_ratio:g}, "
          f"{torch.get_num_threads()} torch threads; relative to the full prefill:")  # fmt: skip
    for name in cases:
        rate = (flops[name] / ms[name]) / (flops["full"] / ms["full"])
        print(f"  {name:20s} {lengths[name]:5d} tokens  time x{ms[name] / ms['full']:.3f}  "
              f"FLOPs x{flops[name] / flops['full']:.3f}  FLOP rate x{rate:.3f}")  # fmt: skip
    same = pair["pruned"] / pair["same-length prefix"]
    print(f"pruned / same-length prefix time, interleaved by themselves: {same:.3f} "
          "(1 = pruning adds nothing in the LM)")  # fmt: skip
    for line in shortfall(ms, flops):
        print(line)
    for name in ("full", "pruned"):
        shares, _ = op_shares(model, cases[name])
        gemm = sum(s for k, s in shares.items() if k.split(" ")[0] in GEMM)
        print(f"\n{name} prefill ({lengths[name]} tokens): matrix products {gemm:.1%} of the "
              f"time, the rest {1 - gemm:.1%}; top ops by share:")  # fmt: skip
        for key, share in sorted(shares.items(), key=lambda kv: -kv[1])[: args.top]:
            print(f"  {share:6.1%}  {key[:110]}")


if __name__ == "__main__":
    main()
