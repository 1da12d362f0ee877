"""The ``VisSparse`` facade: composes a pruning pipeline, then generates or benchmarks."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from vissparse.bench.paired import paired_benchmark
from vissparse.config import Mode, PruningConfig
from vissparse.mock.pipeline import MockPipeline
from vissparse.records import CallRecord
from vissparse.strategies.base import MaskStrategy, TokenScorer

MOCK_NAME = "mock"
_MOCK_OPTIONS = {"dim", "n_tokens", "model_config", "sample_config", "seed"}


class VisSparse:
    """Prune the image tokens of a vision-language model, and measure what it costs.

    Args:
        base_model: ``"mock"`` (with ``mock=True``) for the CPU mock model.
        keep_ratio: fraction of each image's tokens to keep, in [0.05, 1.0].
        scorer: registered scorer name or :class:`TokenScorer` instance.
        strategy: registered strategy name or :class:`MaskStrategy` instance.
        mode: ``"drop"`` (remove pruned tokens) or ``"mask"`` (zero them in attention).
        mock: run the synthetic CPU workload (see ``vissparse.mock``).
        **options: in mock mode ``dim``, ``n_tokens``, ``seed``, ``model_config``,
            ``sample_config``.

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
        scorer: str | TokenScorer = "cosine",
        strategy: str | MaskStrategy = "topk",
        mode: Mode = "drop",
        mock: bool = False,
        **options: Any,
    ) -> None:
        self.config = PruningConfig(
            keep_ratio=keep_ratio, scorer=scorer, strategy=strategy, mode=mode
        )
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
        if mock:
            unknown = set(options) - _MOCK_OPTIONS
            if unknown:
                raise TypeError(
                    f"unknown mock options {sorted(unknown)}; expected some of "
                    f"{sorted(_MOCK_OPTIONS)}"
                )
            self.pipeline = MockPipeline(self.config, **options)
        else:
            raise NotImplementedError(
                "HuggingFace models are not supported yet; use base_model='mock', mock=True"
            )

    @property
    def keep_ratio(self) -> float:
        """The fraction of image tokens kept."""
        return self.config.keep_ratio

    def generate(self, image: Tensor, prompt: str, prune: bool = True) -> str:
        """Answer ``prompt`` about ``image``; in mock mode ``image`` is ``[N, D]`` tokens.

        Example:
            >>> model = VisSparse("mock", mock=True, dim=32, n_tokens=64)
            >>> sample = model.pipeline.samples(1)[0]
            >>> model.generate(image=sample.image_tokens, prompt=sample.prompt) in (
            ...     "red", "green", "blue", "yellow", "black", "white", "orange", "purple")
            True
        """
        return self.pipeline.run(image, prompt, prune=prune).text

    def benchmark(
        self, n_samples: int = 100, seed: int = 0, warmup: int = 3, progress: bool = True
    ) -> dict[str, Any]:
        """Paired baseline-vs-pruned run over ``n_samples`` samples.

        Returns a dict with ``speedup``, ``accuracy_delta``, ``accuracy``,
        ``baseline_accuracy``, ``latency_ms``, ``baseline_latency_ms``, ``keep_ratio``,
        ``n_samples``, ``scorer``, ``strategy``, ``mode`` and ``records`` (one dict per
        call). The records are also kept on ``self.records``.
        """
        if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 1:
            raise ValueError(f"`n_samples` must be an int >= 1, got {n_samples!r}")
        pipe = self.pipeline
        samples = pipe.samples(n_samples, seed=seed)
        summary, records = paired_benchmark(
            samples,
            run_baseline=lambda s: pipe.run(s.image_tokens, s.prompt, prune=False),
            run_pruned=lambda s: pipe.run(s.image_tokens, s.prompt, prune=True),
            reference=lambda s: s.answer,
            n_image_tokens=lambda s: int(s.image_tokens.shape[0]),
            keep_ratio=self.keep_ratio,
            warmup=warmup,
            progress=progress,
            desc=f"mock keep={self.keep_ratio:g}",
        )
        self.records.extend(records)
        return {
            **summary,
            "scorer": _describe(pipe.scorer),
            "strategy": _describe(pipe.strategy),
            "mode": self.config.mode,
            "model": MOCK_NAME,
            "records": [r.to_dict() for r in records],
        }

    def __repr__(self) -> str:
        return (
            f"VisSparse(base_model={self.base_model!r}, keep_ratio={self.keep_ratio}, "
            f"scorer={self.config.scorer!r}, strategy={self.config.strategy!r}, "
            f"mode={self.config.mode!r}, mock={self.mock})"
        )


def _describe(obj: TokenScorer | MaskStrategy) -> str:
    name = getattr(obj, "name", type(obj).__name__)
    return name if name != "custom" else type(obj).__name__
