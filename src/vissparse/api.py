"""The ``VisSparse`` facade: composes a pruning pipeline, then generates or benchmarks."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from typing import Any

from vissparse.bench.checks import (
    BenchmarkOptions,
    benchmark_options,
    check_callback,
    check_keep_ratios,
    check_number,
)
from vissparse.bench.paired import paired_benchmark
from vissparse.bench.tune import TuneResult, explain, grid, search
from vissparse.config import Mode, Positions, PruningConfig, Stage
from vissparse.records import CallRecord
from vissparse.strategies.base import MaskStrategy, TokenScorer

MOCK_NAME = "mock"
# the mock's default scorer: its answer rule pools the tokens most similar to the prompt
MOCK_DEFAULT_SCORER = "cosine-mean"
_MOCK_OPTIONS = {"dim", "n_tokens", "model_config", "sample_config", "seed"}


class VisSparse:
    """Prune the image tokens of a vision-language model, and measure what it costs.

    Args:
        base_model: a HuggingFace model id or local directory (loaded with
            ``from_pretrained``), an already-loaded model (with ``processor=``), or
            ``"mock"`` (with ``mock=True``) for the synthetic CPU model.
        keep_ratio: fraction of each image's tokens to keep, in [0.05, 1.0].
        scorer: registered scorer name or :class:`TokenScorer` instance. Default:
            ``"cosine"`` (per-word softmax mass on the least similar centred tokens,
            chosen on the testbed); with ``mock=True``, ``"cosine-mean"``, the plain
            cosine the mock world's answer rule is built on (its answers sit in the tokens
            most similar to the prompt, so the least-similar default would drop them by
            construction).
        strategy: registered strategy name or :class:`MaskStrategy` instance.
        mode: ``"drop"`` (remove pruned tokens: real savings) or ``"mask"`` (zero them in
            the attention mask; the full sequence still runs).
        stage: ``"input"`` (prune before the language model) or ``"llm"`` (inside it:
            layers below ``layer`` see every image token, the layers from ``layer`` on
            only the kept ones; FastV / PyramidDrop). HF models only.
        layer: the layer K of ``stage="llm"`` (default 2), or several layers for
            PyramidDrop-style stages keeping ``keep_ratio ** (s / S)`` at stage ``s``.
        schedule: explicit ``[(layer, keep_ratio), ...]`` stages for ``stage="llm"``; the
            last ratio must equal ``keep_ratio``.
        mock: run the synthetic CPU workload (see ``vissparse.mock``).
        processor: the processor, required with an already-loaded model.
        positions: ``"keep"`` (kept tokens keep their original positions) or
            ``"compact"`` (1-D RoPE families: renumbered 0, 1, ... as vLLM does).
        compile: run the language model with transformers' static KV cache and
            ``torch.compile`` (CUDA graphs on a GPU), prompts left-padded to length buckets
            so a new keep ratio or prompt length reuses the compiled graphs; the baseline
            of ``measure_baseline`` / ``benchmark`` runs compiled the same way. HF models,
            ``stage="input"``; families with linear-attention layers (Qwen3.5) refuse it.
            See :mod:`vissparse.hf.compiled`.
        **options: for HF models, passed to ``from_pretrained`` (``dtype``/``torch_dtype``,
            ``device_map``, ``attn_implementation``, ...); in mock mode ``dim``,
            ``n_tokens``, ``seed``, ``model_config``, ``sample_config``.

    Example:
        >>> model = VisSparse(base_model="mock", keep_ratio=0.10, mock=True, dim=32, n_tokens=64)
        >>> results = model.benchmark(n_samples=2, progress=False)
        >>> sorted(k for k in ("speedup", "accuracy_delta") if k in results)
        ['accuracy_delta', 'speedup']
    """

    def __init__(
        self,
        base_model: Any,
        keep_ratio: float = 0.10,
        scorer: str | TokenScorer | None = None,
        strategy: str | MaskStrategy = "topk",
        mode: Mode = "drop",
        mock: bool = False,
        stage: Stage = "input",
        layer: int | tuple[int, ...] | None = None,
        schedule: Any = None,
        processor: Any = None,
        positions: Positions = "keep",
        compile: bool = False,
        **options: Any,
    ) -> None:
        if scorer is None:
            scorer = MOCK_DEFAULT_SCORER if mock is True else "cosine"
        self.config = PruningConfig(
            keep_ratio=keep_ratio, scorer=scorer, strategy=strategy, mode=mode, stage=stage,
            layer=layer, schedule=schedule, positions=positions, compile=compile,
        )  # fmt: skip
        if not isinstance(mock, bool):
            raise TypeError(f"`mock` must be a bool, got {mock!r}")
        is_mock_name = isinstance(base_model, str) and base_model == MOCK_NAME
        if is_mock_name and not mock:
            raise ValueError(
                "`base_model='mock'` selects the synthetic CPU model: pass `mock=True` too"
            )
        if mock and not is_mock_name:
            raise ValueError(
                f"`mock=True` needs `base_model='mock'`, got base_model={base_model!r}; "
                "drop `mock=True` to load a real model"
            )
        self.base_model = base_model
        self.mock = mock
        self.records: list[CallRecord] = []
        self.pipeline: Any
        if mock:
            unknown = set(options) - _MOCK_OPTIONS
            if unknown:
                raise TypeError(
                    f"unknown mock options {sorted(unknown)}; expected some of "
                    f"{sorted(_MOCK_OPTIONS)}"
                )
            if mode != "drop":
                raise ValueError("mock mode supports `mode='drop'` only")
            if compile:
                raise ValueError("mock mode supports `compile=False` only: no model to compile")
            if positions != "keep":
                raise ValueError("mock mode supports `positions='keep'` only: it has no positions")
            if stage != "input":
                raise ValueError(
                    "mock mode supports `stage='input'` only: the mock has no language-model "
                    "layers to prune inside"
                )
            from vissparse.mock.pipeline import MockPipeline

            self._mock_options = options
            self.pipeline = MockPipeline(self.config, **options)
        else:
            from vissparse.hf.loading import load_model_and_processor
            from vissparse.hf.pipeline import HFPipeline

            model, processor = load_model_and_processor(base_model, processor, **options)
            self.pipeline = HFPipeline(model, processor, self.config)

    @property
    def keep_ratio(self) -> float:
        """The fraction of image tokens kept."""
        return self.config.keep_ratio

    @property
    def model(self) -> Any:
        """The wrapped model (the HF model, or the mock model)."""
        return self.pipeline.model

    def prepare_inputs(self, image: Any, prompt: Any) -> Any:
        """The processor output exactly as it is fed to the model (HF models only)."""
        if self.mock:
            raise ValueError("`prepare_inputs` needs a HuggingFace model, not mock mode")
        return self.pipeline.prepare_inputs(image, prompt)

    def generate(self, image: Any, prompt: Any, **kwargs: Any) -> Any:
        """Answer ``prompt`` about ``image`` with pruned image tokens.

        HF models: ``image`` is a PIL image or path, or a list of them (several images in
        one prompt); ``prompt`` may be a list (a batch) with a list of images, one entry
        per prompt. Returns the answer text (a list for a batch), or with
        ``return_details=True`` an object with ``.text``, ``.sequences``, ``.keep_mask``
        and ``.metrics``; ``measure_baseline=True`` adds the unpruned model's latency and
        the speedup. Other keyword arguments go to ``model.generate``.

        Mock mode: ``image`` is a ``[N, D]`` tensor of mock image tokens.

        Example:
            >>> model = VisSparse("mock", mock=True, dim=32, n_tokens=64)
            >>> sample = model.pipeline.samples(1)[0]
            >>> model.generate(image=sample.image_tokens, prompt=sample.prompt) in (
            ...     "red", "green", "blue", "yellow", "black", "white", "orange", "purple")
            True
        """
        if self.mock:
            return self.pipeline.run(image, prompt, **kwargs).text
        return self.pipeline.generate(image, prompt, **kwargs)

    def benchmark(
        self,
        n_samples: int = 100,
        seed: int = 0,
        warmup: int = 3,
        progress: bool = True,
        samples: Iterable[Mapping[str, Any]] | None = None,
        **generate_kwargs: Any,
    ) -> dict[str, Any]:
        """Paired baseline-vs-pruned run over ``n_samples`` samples.

        Mock mode draws synthetic samples (``seed``). HF models take ``samples``: dicts
        with ``image``, ``prompt`` and ``answer``; ``generate_kwargs`` go to generate.
        Every argument and every sample is checked before the first call.

        Returns a dict with ``speedup``, ``accuracy_delta``, ``accuracy``,
        ``baseline_accuracy``, ``latency_ms``, ``baseline_latency_ms``, ``keep_ratio``,
        ``n_samples``, ``scorer``, ``strategy``, ``mode`` and ``records`` (one dict per
        call). The records are also kept on ``self.records``, each as soon as its call
        finishes: an interrupted benchmark (Ctrl-C) keeps the finished ones there.
        """
        opts = benchmark_options(self.pipeline, self.mock, n_samples, seed, warmup, progress,
                                 samples, **generate_kwargs)  # fmt: skip
        return self._benchmark(self.pipeline, opts)

    def _pipeline_for(self, keep_ratio: float) -> Any:
        """A pipeline like this one (same model, scorer, strategy) at another keep ratio."""
        config = replace(self.config, keep_ratio=keep_ratio)
        if self.mock:
            from vissparse.mock.pipeline import MockPipeline

            return MockPipeline(config, **self._mock_options)
        from vissparse.hf.pipeline import HFPipeline

        return HFPipeline(self.pipeline.model, self.pipeline.processor, config)

    def _benchmark(self, pipe: Any, opts: BenchmarkOptions) -> dict[str, Any]:
        items: list[Any] | None = opts.samples
        if items is None:  # the mock's own samples
            items = [{"image": s.image_tokens, "prompt": s.prompt, "answer": s.answer}
                     for s in pipe.samples(opts.n_samples, seed=opts.seed)]  # fmt: skip
        keep_ratio = pipe.config.keep_ratio
        kw = opts.generate
        summary, records = paired_benchmark(
            items,
            run_baseline=lambda s: pipe.run(s["image"], s["prompt"], prune=False, **kw),
            run_pruned=lambda s: pipe.run(s["image"], s["prompt"], prune=True, **kw),
            reference=lambda s: s["answer"],
            keep_ratio=keep_ratio,
            warmup=opts.warmup,
            progress=opts.progress,
            desc=f"{'mock' if self.mock else 'model'} keep={keep_ratio:g}",
            on_record=self.records.append,
        )
        return {
            **summary,
            "scorer": _describe(pipe.scorer),
            "strategy": _describe(pipe.strategy),
            "mode": self.config.mode,
            "model": MOCK_NAME if self.mock else _model_name(self.base_model),
            "records": [r.to_dict() for r in records],
        }

    def sweep(
        self,
        keep_ratios: Iterable[float] = (0.05, 0.1, 0.25, 0.5, 1.0),
        n_samples: int = 100,
        on_row: Callable[[dict[str, Any]], None] | None = None,
        **benchmark_kwargs: Any,
    ) -> list[dict[str, Any]]:
        """One paired benchmark per keep ratio, same samples; one row (dict) each.

        Each row holds at least ``keep_ratio``, ``speedup``, ``accuracy`` and
        ``accuracy_delta`` (everything :meth:`benchmark` returns, without records).
        Every keep ratio and sample is checked before the first row. ``on_row`` is
        called with each row as soon as it is measured (to save it: an interrupted sweep
        keeps what ``on_row`` saved, and the finished records on ``self.records``).

        Example:
            >>> vs = VisSparse("mock", mock=True, dim=32, n_tokens=64)
            >>> [row["keep_ratio"] for row in vs.sweep([0.25, 1.0], n_samples=2, progress=False)]
            [0.25, 1.0]
        """
        ratios = check_keep_ratios(keep_ratios, self.config)
        check_callback(on_row)
        opts = benchmark_options(self.pipeline, self.mock, n_samples, **benchmark_kwargs)
        rows = []
        for ratio in ratios:
            rows.append(self._measure(ratio, opts))
            if on_row is not None:
                on_row(rows[-1])
        return rows

    def _measure(self, keep_ratio: float, opts: BenchmarkOptions) -> dict[str, Any]:
        row = self._benchmark(self._pipeline_for(keep_ratio), opts)
        row.pop("records")
        return row

    def tune(
        self,
        target_speedup: float | None = None,
        max_accuracy_drop: float | None = None,
        n_samples: int = 100,
        step: float = 0.01,
        on_row: Callable[[dict[str, Any]], None] | None = None,
        **benchmark_kwargs: Any,
    ) -> TuneResult:
        """Choose ``keep_ratio`` from measurements.

        ``target_speedup=x``: the LARGEST keep ratio whose measured speedup is at least
        ``x`` (so the least accuracy is lost). ``max_accuracy_drop=d``: the SMALLEST keep
        ratio whose accuracy delta is at most ``d`` (so the most speed is gained). A binary
        search over a grid of ``step`` from 0.05 to 1.0, each point a paired benchmark on
        the same samples. The result has ``.keep_ratio``, ``.measurements`` and
        ``.reason``, which says why a target cannot be met when it cannot. ``on_row`` is
        called with each measurement as it is made, as in :meth:`sweep`.

        Example:
            >>> vs = VisSparse("mock", mock=True, dim=32, n_tokens=64)
            >>> result = vs.tune(max_accuracy_drop=1.0, n_samples=2, progress=False)
            >>> result.keep_ratio, result.met
            (0.05, True)
        """
        if (target_speedup is None) == (max_accuracy_drop is None):
            raise ValueError("give exactly one of `target_speedup` and `max_accuracy_drop`")
        speed = target_speedup is not None
        goal = (
            check_number(target_speedup, "target_speedup", 0)
            if speed
            else check_number(max_accuracy_drop, "max_accuracy_drop", 0, 1, include_low=True)
        )
        target = {"target_speedup" if speed else "max_accuracy_drop": goal}  # fmt: skip
        check_callback(on_row)
        check_keep_ratios(grid(step), self.config)  # `step` too, before the first row
        opts = benchmark_options(self.pipeline, self.mock, n_samples, **benchmark_kwargs)

        def measure(ratio: float) -> dict[str, Any]:
            row = self._measure(ratio, opts)
            if on_row is not None:
                on_row(row)
            return row

        if speed:
            choice, rows = search(measure, lambda r: r["speedup"] >= goal, True, step)
        else:
            choice, rows = search(measure, lambda r: r["accuracy_delta"] <= goal, False, step)
        bound = None
        if choice is None and speed and opts.samples is not None:
            bound = self._flop_bound(opts.samples[0], min(r["keep_ratio"] for r in rows))
        return TuneResult(choice, choice is not None, target, rows,
                          explain(target, choice, rows, self.mock, bound))  # fmt: skip

    def _flop_bound(self, sample: Mapping[str, Any], keep_ratio: float) -> float:
        """Prefill FLOPs of the unpruned call over the pruned one, for one sample."""
        from vissparse.bench.measure import prefill_flops

        pipe = self._pipeline_for(keep_ratio)
        inputs, prompt_mask, _, _ = pipe._encode(sample["image"], sample["prompt"])
        full = prefill_flops(pipe, inputs, prompt_mask, prune=False)
        # scorer="downsample": the pruned side runs on the downsampled image (else the same)
        inputs, prompt_mask, _, _ = pipe._encode(sample["image"], sample["prompt"], True)
        return full / prefill_flops(pipe, inputs, prompt_mask, prune=True)

    def __repr__(self) -> str:
        return (
            f"VisSparse(base_model={_model_name(self.base_model)!r}, "
            f"keep_ratio={self.keep_ratio}, scorer={self.config.scorer!r}, "
            f"strategy={self.config.strategy!r}, mode={self.config.mode!r}"
            + (
                f", stage='llm', layers={self.config.layer_schedule().stages}"
                if self.config.stage == "llm"
                else ""
            )
            + f", mock={self.mock})"
        )


def _model_name(base_model: Any) -> str:
    if isinstance(base_model, str):
        return base_model
    config = getattr(base_model, "config", None)
    return str(getattr(config, "_name_or_path", "") or type(base_model).__name__)


def _describe(obj: TokenScorer | MaskStrategy) -> str:
    name = getattr(obj, "name", type(obj).__name__)
    return name if name != "custom" else type(obj).__name__
