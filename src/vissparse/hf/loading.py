"""Loading a model and its processor from a hub id, a local directory or objects."""

from __future__ import annotations

import inspect
import json
import os
from pathlib import Path
from typing import Any

from vissparse.adapters import family_of

# Options that AutoConfig / AutoProcessor understand too (where to look, which version).
_LOOKUP_OPTIONS = ("cache_dir", "local_files_only", "revision", "token", "trust_remote_code")


class ModelNotFoundError(OSError):
    """The weights are neither in a local directory nor reachable on the hub."""


def not_found_error(
    base_model: str, err: Exception, argument: str = "base_model", usage: str = ""
) -> ModelNotFoundError:
    """The error for weights that are neither local nor on a reachable hub.

    ``argument`` names the argument at fault; ``usage`` shows passing the downloaded
    directory (``{path}`` is replaced by it).
    """
    from huggingface_hub import constants

    example = Path(base_model).name or "model"
    call = (usage or "VisSparse(base_model='{path}')").replace("{path}", f"./{example}")
    return ModelNotFoundError(
        f"could not load `{argument}`={base_model!r}: it is not a local directory, and the "
        f"HuggingFace hub has no such model or cannot be reached (looked in the hub cache "
        f"{constants.HF_HUB_CACHE}; HF_HUB_OFFLINE={int(constants.HF_HUB_OFFLINE)}). "
        f"Download it where the hub is reachable, e.g. `hf download {base_model} "
        f"--local-dir ./{example}`, then pass the directory: "
        f"{call}. Cause: {type(err).__name__}: {err}"
    )


def load_processor(source: str, model_type: str, **options: Any) -> Any:
    """The family's processor from ``source``, without needing torchvision.

    ``AutoProcessor`` is tried first; where it cannot build an image processor (Qwen's
    processors need torchvision for their video part) the processor is assembled from
    the PIL-backend image processor and the tokenizer.
    """
    import transformers as tf

    spec, _ = family_of(model_type)
    try:
        processor = tf.AutoProcessor.from_pretrained(source, **options)
        if getattr(processor, "image_processor", None) is not None:
            return processor
    except (ImportError, AttributeError, TypeError, ValueError, OSError):
        pass
    image_processor = getattr(tf, spec.image_processor_class).from_pretrained(source, **options)
    tokenizer = tf.AutoTokenizer.from_pretrained(source, **options)
    processor_cls = getattr(tf, spec.processor_class)
    params = inspect.signature(processor_cls.__init__).parameters
    if "video_processor" in params:  # its video part needs torchvision
        from vissparse.adapters.qwen2_vl import image_only_processor_class

        processor_cls = image_only_processor_class(processor_cls)
    return processor_cls(
        image_processor=image_processor,
        tokenizer=tokenizer,
        chat_template=getattr(tokenizer, "chat_template", None),
        **_saved_options(source, params, options),
    )


def _saved_options(source: str, params: Any, options: dict[str, Any]) -> dict[str, Any]:
    """The processor's own options that ``processor_config.json`` saved and it takes.

    LLaVA-OneVision's ``num_image_tokens``, ``vision_feature_select_strategy``, ...
    """
    from transformers.utils import cached_file

    skip = {"self", "image_processor", "tokenizer", "video_processor", "chat_template"}
    try:
        path = cached_file(source, "processor_config.json", **options)
    except (OSError, ValueError):
        return {}
    if path is None:
        return {}
    saved = json.loads(Path(path).read_text())
    return {k: v for k, v in saved.items() if k in params and k not in skip}


def check_load_kwargs(options: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    """``(from_pretrained options, device or None)``: the loading options, checked first.

    Checked before any weights are read, each error naming its argument: ``dtype`` must
    be a torch dtype, a name of one or ``"auto"``; ``torch_dtype`` (its older name) may
    come with it only when equal; ``device`` (a ``torch.device``, a name such as
    ``"cpu"`` or ``"cuda:0"``, or a CUDA index) must be usable here and not come with
    ``device_map``. ``device`` is taken out: the model is moved there after loading (no
    ``accelerate`` needed; ``device_map`` places it while loading, with ``accelerate``).

    Example:
        >>> check_load_kwargs({"torch_dtype": "bfloat16", "device": "cpu"})
        ({'dtype': torch.bfloat16}, device(type='cpu'))
        >>> check_load_kwargs({"dtype": "bogus"})
        Traceback (most recent call last):
        ...
        ValueError: `dtype` must be a torch dtype (e.g. torch.bfloat16), the name of one ('bfloat16', 'float16', 'float32') or 'auto', got 'bogus'
    """  # noqa: E501
    kwargs = dict(options)
    for name in ("dtype", "torch_dtype"):
        if name in kwargs:
            kwargs[name] = _as_dtypes(kwargs[name], name)
    if "torch_dtype" in kwargs:
        old = kwargs.pop("torch_dtype")
        if "dtype" in kwargs and kwargs["dtype"] != old:
            raise ValueError(
                f"`dtype`={kwargs['dtype']!r} and `torch_dtype`={old!r} disagree; pass only "
                "`dtype` (`torch_dtype` is its older name)"
            )
        kwargs["dtype"] = old
    device = kwargs.pop("device", None)
    if device is None:
        return kwargs, None
    if kwargs.get("device_map") is not None:
        raise ValueError(
            f"pass one of `device`={device!r} (moves the model after loading) and "
            f"`device_map`={kwargs['device_map']!r} (places it while loading), not both"
        )
    import torch

    try:
        where = torch.device(device)
        torch.empty(0, device=where)
    except (RuntimeError, AssertionError, TypeError, ValueError) as err:
        raise ValueError(
            f"`device`={device!r} is not a torch device usable here (e.g. 'cpu', 'cuda:0'): "
            f"{str(err).splitlines()[0] if str(err) else type(err).__name__}"
        ) from None
    return kwargs, where


def _as_dtypes(value: Any, name: str) -> Any:
    """``value`` with each dtype name as a ``torch.dtype`` (``"auto"``, ``None`` kept).

    A dict gives one dtype per sub-model (``{"text_config": ..., "vision_config": ...}``).
    Anything else is a ``ValueError`` naming ``name``.
    """
    import torch

    if isinstance(value, dict):
        return {key: _as_dtypes(v, name) for key, v in value.items()}
    if value is None or isinstance(value, torch.dtype) or value == "auto":
        return value
    if isinstance(value, str):
        found = getattr(torch, value.removeprefix("torch."), None)
        if isinstance(found, torch.dtype):
            return found
    raise ValueError(
        f"`{name}` must be a torch dtype (e.g. torch.bfloat16), the name of one ('bfloat16', "
        f"'float16', 'float32') or 'auto', got {value!r}"
    )


def load_model_and_processor(
    base_model: Any, processor: Any = None, **from_pretrained_kwargs: Any
) -> tuple[Any, Any]:
    """``(model, processor)`` from a hub id, a local directory, or a loaded model.

    ``torch_dtype`` is accepted as the older name of ``dtype``; ``device`` moves the
    model after loading. The options (:func:`check_load_kwargs`) and the model type are
    checked before any weights are read.
    """
    from transformers import AutoConfig, AutoModelForImageTextToText, PreTrainedModel

    if isinstance(base_model, PreTrainedModel):
        if from_pretrained_kwargs:
            raise TypeError(
                f"options {sorted(from_pretrained_kwargs)} go to from_pretrained and do not "
                "apply to an already-loaded `base_model`; load the model with them instead"
            )
        if processor is None:
            raise ValueError("`processor` is required when `base_model` is an already-loaded model")
        family_of(getattr(base_model.config, "model_type", None))
        if not base_model.can_generate():
            raise TypeError(
                f"`base_model` must be a model that generates (the ...ForConditionalGeneration "
                f"class), got the inner {type(base_model).__name__}; pass the full model"
            )
        return base_model, processor
    if not isinstance(base_model, str | os.PathLike):
        raise TypeError(
            "`base_model` must be a HuggingFace model id, a local directory or a loaded "
            f"PreTrainedModel, got {type(base_model).__name__}"
        )
    source = str(base_model)
    if not source.strip():
        raise ValueError(
            "`base_model` must name a HuggingFace model id or a local directory, got an "
            "empty string (for the current directory, pass '.')"
        )
    kwargs, device = check_load_kwargs(from_pretrained_kwargs)
    lookup = {k: kwargs[k] for k in _LOOKUP_OPTIONS if k in kwargs}
    local = Path(source).expanduser()
    if local.is_dir():
        source = str(local)
        if not (local / "config.json").is_file():
            raise ModelNotFoundError(
                f"`base_model` {source!r} is a directory without a config.json: expected a "
                "model saved with save_pretrained (or downloaded with `hf download`)"
            )
    elif source.startswith((".", "/", "~")) or local.exists():
        raise ModelNotFoundError(f"`base_model` {source!r} is not a directory")
    try:
        config = AutoConfig.from_pretrained(source, **lookup)
    except OSError as err:
        raise not_found_error(source, err) from err
    family_of(getattr(config, "model_type", None))
    try:
        model = AutoModelForImageTextToText.from_pretrained(source, **kwargs)
    except OSError as err:
        raise not_found_error(source, err) from err
    if device is not None:
        model.to(device)
    model.eval()
    if processor is None:
        processor = load_processor(source, config.model_type, **lookup)
    return model, processor
