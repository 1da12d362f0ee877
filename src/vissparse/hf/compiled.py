"""The compiled path (``compile=True``): a static KV cache, ``torch.compile``, length buckets.

With ``PruningConfig(compile=True)`` the language model runs through transformers' own
compiled generation: ``cache_implementation="static"`` and a ``CompileConfig`` (on a GPU
``mode="reduce-overhead"``, i.e. CUDA graphs; on a CPU inductor without them). The
prefill is compiled too: it runs as one chunk of ``prefill_chunk_size`` columns, which
transformers feeds to the same compiled forward as the decode steps.

A compiled graph is specialised to its shapes, so every shape is rounded up to a few
buckets (:func:`bucket_length`): the pruned prompt is left-padded with masked columns
(zero embeddings, position 0, attention 0: left padding as the processor already pads a
batch) to its bucket, and the static cache holds the bucket of that length plus the new
tokens (transformers keeps the largest static cache of earlier calls). A new keep ratio
or prompt length inside a bucket reuses the graphs; a new batch size compiles its own
(batches are not padded). Shapes are static (``dynamic=False``) except on sliding-window
families (Gemma 3, see :func:`compile_config`). Both sides of a paired measurement run
this way: the baseline embeds the full prompt with the same adapter and generates from the
embeddings through the same compiled model, so they compare like with like.

Families whose cache is not a plain static cache (hybrid linear attention: Qwen3.5) and
``stage="llm"`` (its hooks change the sequence inside the model) refuse ``compile=True``.
"""

from __future__ import annotations

import copy
from dataclasses import replace
from typing import Any

import torch
import transformers
from torch import Tensor
from transformers import CompileConfig, GenerationConfig

from vissparse.hf.generation_options import lengths_from_call, option, option_source
from vissparse.hf.results import PrunedBatch, generated_ids

# the generate options a compiled call sets
COMPILED_OPTIONS = ("cache_implementation", "prefill_chunk_size", "compile_config", "max_cache_len")
MIN_BUCKET = 64  # the finest step of a bucket, in tokens
MIN_TRANSFORMERS = "5.13"  # the first release whose GenerationConfig has max_cache_len
STEPS_PER_OCTAVE = 8  # buckets between n and 2n: padding adds at most 1/8 beyond MIN_BUCKET


def bucket_length(n: int) -> int:
    """``n`` rounded up to its bucket: a multiple of ``max(64, 2**floor(log2 n) / 8)``.

    Up to 512 tokens the buckets are multiples of 64; above, eight per doubling, so
    padding costs at most 1/8 of the length and a range of lengths maps to few buckets.

    Example:
        >>> [bucket_length(n) for n in (1, 64, 65, 500, 513, 1000, 1030)]
        [64, 64, 128, 512, 576, 1024, 1152]
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"`n` must be a positive int, got {n!r}")
    step = max(MIN_BUCKET, 2 ** (n.bit_length() - 1) // STEPS_PER_OCTAVE)
    return -(-n // step) * step


def pad_left(values: Tensor, length: int, dim: int, fill: float = 0) -> Tensor:
    """``values`` left-padded with ``fill`` to ``length`` along ``dim``.

    Example:
        >>> pad_left(torch.tensor([[7, 8]]), 4, dim=-1).tolist()
        [[0, 0, 7, 8]]
    """
    missing = length - values.shape[dim]
    if missing < 0:
        raise ValueError(f"`length` must be >= {values.shape[dim]} (the current), got {length}")
    if missing == 0:
        return values
    shape = list(values.shape)
    shape[dim] = missing
    return torch.cat([values.new_full(shape, fill), values], dim=dim)


def pad_batch(batch: PrunedBatch, length: int, pad_token_id: int = 0) -> PrunedBatch:
    """``batch`` with every per-token tensor left-padded to ``length`` masked columns.

    Pads get zero embeddings, position 0, attention 0, token type 0 and ``pad_token_id``
    as their id: the padding the processor gives a batch, so the answer is unchanged.

    Example:
        >>> b = PrunedBatch(torch.ones(1, 2, 3), torch.ones(1, 2), torch.tensor([[4, 5]]),
        ...                 [], [], [0], [0], [2.0], input_ids=torch.tensor([[1, 2]]))
        >>> p = pad_batch(b, 4, pad_token_id=9)
        >>> p.attention_mask.tolist(), p.position_ids.tolist(), p.input_ids.tolist()
        ([[0.0, 0.0, 1.0, 1.0]], [[0, 0, 4, 5]], [[9, 9, 1, 2]])
    """
    types = batch.token_type_ids
    return replace(
        batch,
        inputs_embeds=pad_left(batch.inputs_embeds, length, dim=-2),
        attention_mask=pad_left(batch.attention_mask, length, dim=-1),
        position_ids=pad_left(batch.position_ids, length, dim=-1),
        token_type_ids=None if types is None else pad_left(types, length, dim=-1),
        layer_additions=[pad_left(a, length, dim=-2) for a in batch.layer_additions],
        input_ids=None if batch.input_ids is None else pad_left(batch.input_ids, length, dim=-1,
                                                                fill=pad_token_id),
    )  # fmt: skip


def static_cache_sizable() -> bool:
    """Whether this transformers' ``generate`` takes ``max_cache_len`` (5.13 and later).

    Example:
        >>> isinstance(static_cache_sizable(), bool)
        True
    """
    return hasattr(GenerationConfig(), "max_cache_len")


def check_compilable(adapter: Any, compile: bool) -> None:
    """Refuse ``compile=True`` where the compiled static-cache path cannot run, in one line.

    Example:
        >>> from types import SimpleNamespace
        >>> family = SimpleNamespace(spec=SimpleNamespace(name="qwen3_5"),
        ...                          recurrent_layers=lambda: frozenset({0}))
        >>> check_compilable(family, True)
        Traceback (most recent call last):
        ...
        ValueError: `compile=True` is not supported on qwen3_5: its linear-attention layers keep a recurrent state, not a static KV cache; use compile=False
    """  # noqa: E501
    if compile and not static_cache_sizable():
        raise ValueError(
            f"`compile=True` needs transformers >= {MIN_TRANSFORMERS} (its `generate` sizes "
            f"the static cache with `max_cache_len`), this is {transformers.__version__}; "
            "upgrade transformers or use compile=False"
        )
    if compile and adapter.recurrent_layers():
        raise ValueError(
            f"`compile=True` is not supported on {adapter.spec.name}: its linear-attention "
            "layers keep a recurrent state, not a static KV cache; use compile=False"
        )


def sliding_layers(model: Any) -> bool:
    """Whether the language model has sliding-window attention layers (Gemma 3).

    Example:
        >>> from types import SimpleNamespace
        >>> text = SimpleNamespace(layer_types=["sliding_attention", "full_attention"])
        >>> sliding_layers(SimpleNamespace(config=SimpleNamespace(get_text_config=lambda: text)))
        True
    """
    config = getattr(model, "config", None)
    text = None if config is None else config.get_text_config()
    return "sliding_attention" in (getattr(text, "layer_types", None) or ())


def compile_config(model: Any, kwargs: dict[str, Any]) -> CompileConfig:
    """The ``CompileConfig`` of a compiled call: the caller's (copied) or the device's own.

    CUDA: ``mode="reduce-overhead"`` (CUDA graphs); other devices inductor's default mode,
    with transformers told to compile there too. Shapes are static (``dynamic=False``):
    the buckets bound them. With sliding-window layers ``dynamic=None``: transformers'
    sliding-window static cache counts its tokens in a Python int, which a static graph
    bakes in, so every decode step would compile anew (up to dynamo's recompile limit,
    then run eagerly); torch's automatic dynamic shapes make that int symbolic instead.
    """
    given = option(model, kwargs, "compile_config")
    cuda = torch.device(model.device).type == "cuda"
    if given is not None:
        config = copy.deepcopy(given)
    else:
        dynamic = None if sliding_layers(model) else False
        config = CompileConfig(dynamic=dynamic, mode="reduce-overhead" if cuda else "default")
    if not cuda:
        config._compile_all_devices = True
    return config


def check_compiled_kwargs(kwargs: dict[str, Any], model: Any = None) -> None:
    """Refuse ``generate`` options the compiled path cannot follow, naming where they were set.

    Example:
        >>> check_compiled_kwargs({"cache_implementation": "dynamic"})
        Traceback (most recent call last):
        ...
        ValueError: `cache_implementation` must be 'static' (or unset) with compile=True, got 'dynamic'
    """  # noqa: E501
    value, source = option_source(model, kwargs, "cache_implementation")
    if value not in (None, "static"):
        where = "" if source == "keyword" else f" (from {source})"
        raise ValueError(
            f"`cache_implementation`{where} must be 'static' (or unset) with compile=True, "
            f"got {value!r}"
        )
    if option(model, kwargs, "disable_compile"):
        raise ValueError("`disable_compile`=True contradicts compile=True; pass one of them")


def compiled_kwargs(model: Any, kwargs: dict[str, Any], prompt_length: int) -> dict[str, Any]:
    """``generate`` options of a compiled call whose (padded) prompt has ``prompt_length``.

    ``kwargs`` are :func:`vissparse.hf.generation_options.as_new_tokens`'s (new-token
    counts); a ``cache_implementation`` other than ``"static"`` is refused.

    Example:
        >>> from types import SimpleNamespace
        >>> from transformers import GenerationConfig
        >>> model = SimpleNamespace(generation_config=GenerationConfig(), device="cpu")
        >>> out = compiled_kwargs(model, {"max_new_tokens": 6}, 64)
        >>> out["max_cache_len"], out["prefill_chunk_size"], out["cache_implementation"]
        (128, 64, 'static')
    """
    check_compiled_kwargs(kwargs, model)
    max_new = option(model, kwargs, "max_new_tokens")
    out = dict(kwargs, cache_implementation="static", prefill_chunk_size=prompt_length,
               compile_config=compile_config(model, kwargs))  # fmt: skip
    out["max_cache_len"] = bucket_length(prompt_length + int(max_new))
    given = out.get("generation_config")
    if given is not None:  # generate reads them from the config it is given, not beside it
        config = copy.deepcopy(given)
        for key in COMPILED_OPTIONS:
            setattr(config, key, out.pop(key))
        out["generation_config"] = config
    return out


def full_batch(pipe: Any, inputs: Any) -> PrunedBatch:
    """The unpruned prompt as embeddings: the compiled baseline's input (keep ratio 1)."""
    pipe.adapter.reset_state()
    batch = pipe.unpruned(pipe.embed(inputs, prune=False)[0])
    batch.input_ids = inputs["input_ids"]
    return batch


def generate_from(pipe: Any, batch: PrunedBatch, kwargs: dict[str, Any]) -> Tensor:
    """The new token ids of ``pipe.model.generate`` fed with ``batch``.

    With ``pipe.config.compile`` the batch is padded to its bucket and generated with a
    static cache and the compiled model (:func:`compiled_kwargs`). ``kwargs`` as
    :func:`vissparse.hf.generation_options.as_new_tokens` gives them.
    """
    if pipe.config.compile:
        pad = getattr(getattr(pipe.processor, "tokenizer", None), "pad_token_id", None) or 0
        batch = pad_batch(batch, bucket_length(int(batch.inputs_embeds.shape[1])), pad)
        kwargs = compiled_kwargs(pipe.model, kwargs, int(batch.inputs_embeds.shape[1]))
    with torch.inference_mode(), pipe.feeding(batch), lengths_from_call(pipe.model):
        out = pipe.model.generate(**batch.generate_inputs(), **kwargs)
    pipe.adapter.reset_state()
    return generated_ids(out, batch.prompt_length())
