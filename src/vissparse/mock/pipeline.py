"""Mock-mode pipeline: score, select and run the mock model on the kept tokens."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial

import torch
from torch import Tensor

from vissparse.bench.timing import timed
from vissparse.config import PruningConfig
from vissparse.content_words import content_or_prompt, content_word_flags
from vissparse.mock.model import MockModelConfig, MockVLM
from vissparse.mock.samples import MockSample, MockSampleConfig, make_samples, sample_at
from vissparse.mock.world import MockWorld, tokenize
from vissparse.records import BatchAnswers
from vissparse.strategies.base import required_signals, select_tokens
from vissparse.strategies.context import ImageLayout, PruningContext, merge_tokens
from vissparse.strategies.downsample import refuse_resizing
from vissparse.strategies.registry import build_scorer, build_strategy


@dataclass
class MockOutput:
    """What one mock call returns.

    Attributes:
        text: the answer (a colour word).
        keep_mask: ``[N]`` bool over the image tokens (all ``True`` for the baseline).
    """

    text: str
    keep_mask: Tensor

    @property
    def n_kept(self) -> int:
        """Number of image tokens the model saw."""
        return int(self.keep_mask.sum())

    @property
    def n_image_tokens(self) -> int:
        """Number of image tokens before pruning."""
        return int(self.keep_mask.numel())


class MockPipeline:
    """Prunes synthetic samples and answers them with :class:`MockVLM`.

    Example:
        >>> pipe = MockPipeline(PruningConfig(keep_ratio=0.25), dim=32, n_tokens=64)
        >>> sample = pipe.samples(1)[0]
        >>> pipe.run(sample.image_tokens, sample.prompt).n_kept
        16
    """

    def __init__(
        self,
        config: PruningConfig,
        dim: int = 128,
        n_tokens: int = 1024,
        seed: int = 0,
        model_config: MockModelConfig | None = None,
        sample_config: MockSampleConfig | None = None,
    ) -> None:
        self.config = config
        self.scorer = build_scorer(config.scorer)
        self.strategy = build_strategy(config.strategy)
        self.signals = required_signals(self.scorer)
        refuse_resizing(self.scorer, "the mock (it has no images, only token vectors)",
                        "use scorer='pool' or any method that chooses tokens")  # fmt: skip
        missing = sorted(self.signals - MOCK_SIGNALS)
        if missing:
            raise ValueError(
                f"`scorer` {self.scorer.name!r} needs {missing}, which the mock cannot provide "
                "(it has no vision encoder); use it on a HuggingFace model"
            )
        for name, value, kind in (("model_config", model_config, MockModelConfig),
                                  ("sample_config", sample_config, MockSampleConfig)):  # fmt: skip
            if value is not None and not isinstance(value, kind):
                raise TypeError(f"`{name}` must be a {kind.__name__}, got {value!r}")
        self.sample_config = sample_config or MockSampleConfig(n_tokens=n_tokens)
        self.world = MockWorld(dim=dim, seed=seed)
        self.model = MockVLM(self.world, model_config)

    def samples(self, n_samples: int, seed: int = 0) -> list[MockSample]:
        """Synthetic samples drawn in this pipeline's world."""
        return make_samples(n_samples, self.world, self.sample_config, seed=seed)

    def sample(self, index: int, seed: int = 0) -> MockSample:
        """``samples(index + 1, seed)[index]``, built alone, in constant time.

        ``index`` must be in ``[0, MAX_INDEX]`` (``vissparse.mock.samples``).
        """
        return sample_at(index, self.world, self.sample_config, seed=seed)

    def run(self, image_tokens: Tensor, prompt: str, prune: bool = True) -> MockOutput:
        """Answer ``prompt`` about ``image_tokens`` ``[N, D]``, pruned or not."""
        self.check_inputs(image_tokens, prompt)
        text, prompt_mask = self.model.embed_text(prompt)
        query = self.model.query(text, prompt_mask)
        if prune:
            words = "prompt_embeddings" in self.signals  # the content mask only when read
            ctx = PruningContext(
                image_tokens.unsqueeze(0), query.unsqueeze(0),
                prompt_embeddings=text.unsqueeze(0), prompt_mask=prompt_mask.unsqueeze(0),
                content_mask=mock_content_mask(prompt, prompt_mask).unsqueeze(0) if words else None,
                layouts=[mock_layout(image_tokens.shape[0])] if "layouts" in self.signals else None,
            )  # fmt: skip
            selection = select_tokens(self.scorer, self.strategy, ctx, self.config.keep_ratio)
            keep = selection.keep[0]
            tokens = merge_tokens(ctx.image_tokens, selection)[0]
            # gathering copies; with nothing pruned the tokens are used as they are
            kept_tokens = tokens if bool(keep.all()) else tokens[keep]
        else:
            keep = torch.ones(image_tokens.shape[0], dtype=torch.bool)
            kept_tokens = image_tokens
        return MockOutput(text=self.model(text, kept_tokens, query), keep_mask=keep)

    def check_inputs(self, image_tokens: object, prompt: object) -> None:
        """One-line errors for what the mock cannot answer (it takes one sample per call).

        Example:
            >>> pipe = MockPipeline(PruningConfig(), dim=32, n_tokens=64)
            >>> pipe.check_inputs([[0.0] * 32], "What color?")
            Traceback (most recent call last):
            ...
            TypeError: `image` in mock mode must be a [N, 32] float tensor of mock image tokens (e.g. `pipeline.sample(0).image_tokens`), got list
        """  # noqa: E501
        dim = self.world.dim
        expected = f"a [N, {dim}] float tensor of mock image tokens"
        if not isinstance(image_tokens, Tensor):
            raise TypeError(
                f"`image` in mock mode must be {expected} (e.g. `pipeline.sample(0).image_tokens`)"
                f", got {type(image_tokens).__name__}"
            )
        shape = tuple(image_tokens.shape)
        if image_tokens.dim() != 2 or shape[1] != dim or shape[0] == 0:
            raise ValueError(f"`image` must be {expected} with N >= 1, got shape {shape}")
        if not image_tokens.is_floating_point():
            raise TypeError(f"`image` must be {expected}, got dtype {image_tokens.dtype}")
        if not isinstance(prompt, str):
            raise TypeError(
                f"`prompt` in mock mode must be one string, got {type(prompt).__name__}"
            )

    def answer_batch(
        self, images: list[Tensor], prompts: list[str], measure_baseline: bool = True
    ) -> BatchAnswers:
        """Answer a batch one sample at a time, pruned and (optionally) unpruned."""
        pruned, baseline_calls = [], []
        for k, (image, prompt) in enumerate(zip(images, prompts, strict=True)):
            # paired per sample, alternating which side goes first
            if measure_baseline and k % 2:
                baseline_calls.append(timed(partial(self.run, image, prompt, prune=False)))
            pruned.append(timed(partial(self.run, image, prompt)))
            if measure_baseline and not k % 2:
                baseline_calls.append(timed(partial(self.run, image, prompt, prune=False)))
        baseline = baseline_calls if measure_baseline else None
        return BatchAnswers(
            texts=[out.text for out, _ in pruned],
            baseline_texts=None if baseline is None else [out.text for out, _ in baseline],
            keep_masks=[[out.keep_mask] for out, _ in pruned],
            n_image_tokens=[out.n_image_tokens for out, _ in pruned],
            n_kept=[out.n_kept for out, _ in pruned],
            latency_ms=sum(ms for _, ms in pruned),
            baseline_latency_ms=None if baseline is None else sum(ms for _, ms in baseline),
        )


# what the mock can fill: it has prompt words and a token grid, but no vision encoder
MOCK_SIGNALS = frozenset({"prompt_embeddings", "layouts", "sample_keys"})


def mock_content_mask(prompt: str, prompt_mask: Tensor) -> Tensor:
    """``[T]`` bool: the content words among the user's words (``prompt_mask``).

    By :mod:`vissparse.content_words`; the whole prompt if it has no content word.

    Example:
        >>> mock_content_mask("What color is the car?", torch.tensor([False] + [True] * 5))
        tensor([False, False,  True, False, False,  True])
    """
    content = torch.zeros_like(prompt_mask)
    flags = torch.tensor(content_word_flags(tokenize(prompt)), dtype=torch.bool)
    content[prompt_mask.nonzero().flatten()] = flags
    return content_or_prompt(content, prompt_mask)


def mock_layout(n_tokens: int) -> ImageLayout:
    """A mock image's layout: a square grid when ``n_tokens`` is a square, else a row.

    Example:
        >>> mock_layout(16).segments[0].shape, mock_layout(10).segments[0].shape
        ((4, 4), (1, 10))
    """
    side = math.isqrt(n_tokens)
    if side * side == n_tokens:
        return ImageLayout.grid(side, side)
    return ImageLayout.sequence(n_tokens)
