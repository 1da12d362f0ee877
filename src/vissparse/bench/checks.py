"""A benchmark's arguments, checked before any work: its samples and generate options.

A benchmark over many samples must not fail at sample 3 after minutes of work, nor name
the wrong sample: every sample is checked first (its image probed, its prompt tokenized
as the pipeline will tokenize it), and every error names ``samples[i]``.

Example:
    >>> check_generate_options({"prune": False}, mock=True)
    Traceback (most recent call last):
    ...
    TypeError: `prune` is not an option of benchmark(): it runs every sample both unpruned and pruned
"""  # noqa: E501

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from PIL import Image

from vissparse.config import PruningConfig
from vissparse.keep_ratio import validate_keep_ratio

# VisSparse(...) settings: passed to benchmark() they would reach generate()
_SETTINGS = frozenset(f.name for f in fields(PruningConfig))
_PIXEL = Image.new("RGB", (1, 1))  # stands in for a sample's image when its prompt is checked


def check_generate_options(options: Mapping[str, Any], mock: bool) -> None:
    """Refuse keyword arguments of ``benchmark()`` that are no ``generate`` option.

    The mock takes no generate options at all; an HF model's are checked as its
    pipeline checks them on every call, once, up front.
    """
    for key in options:
        if key == "prune":
            raise TypeError(
                "`prune` is not an option of benchmark(): it runs every sample both unpruned "
                "and pruned"
            )
        if key == "generate_kwargs":
            raise TypeError(
                "`generate_kwargs` is not an argument of benchmark(): pass generate options "
                "as keywords, e.g. benchmark(samples=..., max_new_tokens=8)"
            )
        if key in _SETTINGS:
            raise TypeError(
                f"`{key}` is a setting of VisSparse(...), not an option of benchmark()"
                + ("; sweep() measures several keep ratios" if key == "keep_ratio" else "")
            )
    if mock and options:
        raise TypeError(
            f"mock mode takes no generate options, got {sorted(options)}; they apply to "
            "HuggingFace models"
        )
    if not mock:
        from vissparse.hf.generate_checks import check_generate_kwargs

        check_generate_kwargs(dict(options))


def check_count(value: object, name: str, least: int = 1) -> int:
    """``value`` if it is an int ``>= least``, else a ``ValueError`` naming ``name``.

    Example:
        >>> check_count(True, "n_samples")
        Traceback (most recent call last):
        ...
        ValueError: `n_samples` must be an int >= 1, got True
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < least:
        raise ValueError(f"`{name}` must be an int >= {least}, got {value!r}")
    return int(value)


def check_number(
    value: object, name: str, low: float, high: float = math.inf, include_low: bool = False
) -> float:
    """``value`` as a float if it is a finite real number above ``low`` and up to ``high``.

    Example:
        >>> check_number(True, "target_speedup", 0)
        Traceback (most recent call last):
        ...
        ValueError: `target_speedup` must be a number > 0, got True
        >>> check_number(0, "max_accuracy_drop", 0, 1, include_low=True)
        0.0
    """
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if ok:
        as_float = float(value)  # type: ignore[arg-type]
        above = as_float >= low if include_low else as_float > low
        ok = math.isfinite(as_float) and above and as_float <= high
    if not ok:
        if high == math.inf:
            bound = f"{'>=' if include_low else '>'} {low:g}"
        else:
            bound = f"in {'[' if include_low else '('}{low:g}, {high:g}]"
        raise ValueError(f"`{name}` must be a number {bound}, got {value!r}")
    return as_float


def check_callback(value: object, name: str = "on_row") -> None:
    """A ``TypeError`` naming ``name`` unless ``value`` is None or callable."""
    if value is not None and not callable(value):
        raise TypeError(f"`{name}` must be a function of a row, got {value!r}")


def check_keep_ratios(keep_ratios: object, config: PruningConfig) -> list[float]:
    """``keep_ratios`` as a list of floats, each a valid setting of ``config``.

    Example:
        >>> check_keep_ratios(0.5, PruningConfig())
        Traceback (most recent call last):
        ...
        TypeError: `keep_ratios` must be a list of keep ratios, got 0.5 (for one keep ratio, pass a list of one)
    """  # noqa: E501
    if isinstance(keep_ratios, str) or not isinstance(keep_ratios, Iterable):
        raise TypeError(
            f"`keep_ratios` must be a list of keep ratios, got {keep_ratios!r} (for one "
            "keep ratio, pass a list of one)"
        )
    ratios = [validate_keep_ratio(r, "keep_ratios") for r in keep_ratios]
    if not ratios:
        raise ValueError("`keep_ratios` must hold at least one keep ratio")
    for ratio in ratios:  # e.g. an explicit `schedule` fixes the keep ratio
        replace(config, keep_ratio=ratio)
    return ratios


@dataclass(frozen=True)
class BenchmarkOptions:
    """The checked arguments of a paired benchmark (see :func:`benchmark_options`)."""

    n_samples: int
    seed: int
    warmup: int
    progress: bool
    samples: list[Any] | None  # HF models: the checked samples; the mock draws its own
    generate: dict[str, Any]


def benchmark_options(
    pipeline: Any,
    mock: bool,
    n_samples: object = 100,
    seed: object = 0,
    warmup: object = 3,
    progress: object = True,
    samples: object = None,
    **generate: Any,
) -> BenchmarkOptions:
    """Every argument of ``VisSparse.benchmark`` checked before any work.

    Example:
        >>> benchmark_options(None, mock=True, samples=[{"image": 0}])
        Traceback (most recent call last):
        ...
        ValueError: `samples` is for HuggingFace models: the mock draws its own synthetic samples (set `n_samples` and `seed`)
    """  # noqa: E501
    n = check_count(n_samples, "n_samples")
    warm = check_count(warmup, "warmup", least=0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"`seed` must be an int, got {seed!r}")
    if not isinstance(progress, bool):
        raise TypeError(f"`progress` must be a bool, got {progress!r}")
    check_generate_options(generate, mock)
    items: list[Any] | None = None
    if mock and samples is not None:
        raise ValueError(
            "`samples` is for HuggingFace models: the mock draws its own synthetic samples "
            "(set `n_samples` and `seed`)"
        )
    if not mock:
        if samples is None:
            raise ValueError(
                "benchmarking a HuggingFace model needs `samples=`: dicts with `image`, "
                "`prompt` and `answer`"
            )
        items = sample_list(samples, n)
        check_samples(items, pipeline)
    return BenchmarkOptions(n, seed, warm, progress, items, generate)


def sample_list(samples: object, n_samples: int) -> list[Any]:
    """The first ``n_samples`` of ``samples`` (an iterable of dicts) as a list.

    Example:
        >>> sample_list({"image": "a.png"}, 2)
        Traceback (most recent call last):
        ...
        TypeError: `samples` must be a list of dicts with `image`, `prompt` and `answer`, got a dict
    """
    if isinstance(samples, Mapping | str | bytes) or not isinstance(samples, Iterable):
        raise TypeError(
            "`samples` must be a list of dicts with `image`, `prompt` and `answer`, got a "
            f"{type(samples).__name__}"
        )
    items: list[Any] = []
    for item in samples:
        if len(items) == n_samples:
            break
        items.append(item)
    return items


def _sample(i: int) -> str:
    return f"`samples[{i}]`"


def check_samples(items: list[Any], pipeline: Any, where: Callable[[int], str] = _sample) -> None:
    """Check every sample before the first call, naming ``samples[i]`` in each error.

    A sample is a dict with ``image`` (an image or a list of them), ``prompt`` and
    ``answer`` (strings). Images are probed without decoding their pixels; the prompt
    goes through the pipeline's own checks and chat template, and must keep a token of
    its own once the tokenizer's special tokens are set aside (``"</s>"`` alone has
    none): the query is built from those tokens. ``where(i)`` names sample ``i`` in an
    error (a file and line, where the samples come from one).
    """
    from vissparse.hf.inputs import probe_image

    if not items:
        raise ValueError("`samples` holds no samples")
    for i, item in enumerate(items):
        if not isinstance(item, Mapping) or any(
            k not in item for k in ("image", "prompt", "answer")
        ):
            raise ValueError(f"{where(i)} must be a dict with `image`, `prompt` and `answer`")
        if not isinstance(item["prompt"], str) or not isinstance(item["answer"], str):
            raise ValueError(f"{where(i)}: `prompt` and `answer` must be strings")
        images = item["image"] if isinstance(item["image"], list | tuple) else [item["image"]]
        try:
            if not images:
                raise ValueError("`image` is an empty list")
            for image in images:
                probe_image(image)
            _check_prompt(pipeline, item["prompt"], len(images))
        except (ValueError, TypeError) as err:
            raise type(err)(f"{where(i)}: {err}") from None


def _check_prompt(pipeline: Any, prompt: str, n_images: int) -> None:
    """The pipeline's prompt checks, and a token of the prompt's own after templating."""
    from vissparse.hf.inputs import chat_text, normalize_batch, prompt_token_mask

    images = [_PIXEL] * n_images
    items, _ = normalize_batch(images, prompt, pipeline.adapter.spec.placeholders)
    text, span = chat_text(pipeline.processor, items[0])
    tokenizer = pipeline.processor.tokenizer
    ids = tokenizer(text)["input_ids"]
    flags = prompt_token_mask(tokenizer, text, span, ids, pipeline.adapter.image_token_id)
    if not any(flags):
        raise ValueError(
            f"`prompt` {prompt!r} has no token of its own once the tokenizer's special tokens "
            "are set aside; the query is built from the prompt's tokens"
        )
