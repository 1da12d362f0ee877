"""Model-family adapters: the only code that reads HuggingFace model internals.

Example:
    >>> sorted(SUPPORTED_MODEL_TYPES)[:4]
    ['gemma3', 'internvl', 'llava', 'llava_next']
"""

from __future__ import annotations

from typing import Any

from vissparse.adapters.base import Embedded, FamilySpec, VLMAdapter
from vissparse.adapters.gemma3 import GEMMA3, Gemma3Adapter
from vissparse.adapters.internvl import INTERNVL, InternVLAdapter
from vissparse.adapters.llava import LLAVA, LlavaAdapter
from vissparse.adapters.llava_next import LLAVA_NEXT
from vissparse.adapters.llava_onevision import LLAVA_ONEVISION, LlavaOnevisionAdapter
from vissparse.adapters.qwen2_5_vl import QWEN2_5_VL
from vissparse.adapters.qwen2_vl import QWEN2_VL, QwenVLAdapter
from vissparse.adapters.qwen3_5 import QWEN3_5
from vissparse.adapters.qwen3_vl import QWEN3_VL, Qwen3VLAdapter

FAMILIES: dict[str, tuple[FamilySpec, type[VLMAdapter]]] = {
    spec.name: (spec, cls)
    for spec, cls in (
        (QWEN2_VL, QwenVLAdapter),
        (QWEN2_5_VL, QwenVLAdapter),
        (QWEN3_VL, Qwen3VLAdapter),
        (QWEN3_5, QwenVLAdapter),
        (LLAVA, LlavaAdapter),
        (LLAVA_NEXT, LlavaAdapter),
        (LLAVA_ONEVISION, LlavaOnevisionAdapter),
        (GEMMA3, Gemma3Adapter),
        (INTERNVL, InternVLAdapter),
    )
}
SUPPORTED_MODEL_TYPES = {t: name for name, (spec, _) in FAMILIES.items() for t in spec.model_types}


def family_of(model_type: str | None) -> tuple[FamilySpec, type[VLMAdapter]]:
    """The family spec and adapter class for a ``config.model_type``.

    Example:
        >>> family_of("llama")
        Traceback (most recent call last):
        ...
        ValueError: model type 'llama' is not supported; supported model types: gemma3, internvl, llava, llava_next, llava_onevision, qwen2_5_vl, qwen2_vl, qwen3_5, qwen3_5_moe, qwen3_vl, qwen3_vl_moe
    """  # noqa: E501
    name = SUPPORTED_MODEL_TYPES.get(model_type or "")
    if name is None:
        raise ValueError(
            f"model type {model_type!r} is not supported; supported model types: "
            f"{', '.join(sorted(SUPPORTED_MODEL_TYPES))}"
        )
    return FAMILIES[name]


def get_adapter(model: Any) -> VLMAdapter:
    """The adapter for a loaded HF model, or a ``ValueError`` listing supported types."""
    config = getattr(model, "config", None)
    spec, cls = family_of(getattr(config, "model_type", None))
    return cls(spec, model)


__all__ = [
    "FAMILIES",
    "SUPPORTED_MODEL_TYPES",
    "Embedded",
    "FamilySpec",
    "VLMAdapter",
    "family_of",
    "get_adapter",
]
