"""VisSparse inside vLLM: image-token pruning in the offline engine and in ``vllm serve``.

Installed, the plugin registers thin subclasses of vLLM's LLaVA, Qwen2-VL and Qwen2.5-VL
models (:mod:`vissparse.vllm.models`) through the ``vllm.general_plugins`` entry point.
They behave as vLLM's own until an engine asks for pruning in its HF config overrides::

    LLM(model=..., hf_overrides={"vissparse": {"keep_ratio": 0.1, "scorer": "divprune"}})
    vllm serve MODEL --hf-overrides '{"vissparse": {"keep_ratio": 0.1, "scorer": "divprune"}}'

Options: ``keep_ratio`` (required), ``scorer`` and ``strategy`` (registered names, or
``"package.module:Name"`` for a user's :class:`~vissparse.strategies.base.TokenScorer`
importable in every vLLM process). Nothing here imports vLLM until :func:`register` runs.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

logger = logging.getLogger(__name__)

# vLLM architecture name -> the plugin's class ("module:Class", imported lazily by vLLM)
ARCHITECTURES = {
    "LlavaForConditionalGeneration": "vissparse.vllm.models:VisSparseLlava",
    "Qwen2VLForConditionalGeneration": "vissparse.vllm.models:VisSparseQwen2VL",
    "Qwen2_5_VLForConditionalGeneration": "vissparse.vllm.models:VisSparseQwen2_5VL",
}


def register() -> None:
    """The ``vllm.general_plugins`` entry point: run by vLLM in each of its processes."""
    from vllm import ModelRegistry

    for architecture, target in ARCHITECTURES.items():
        ModelRegistry.register_model(architecture, target)
    _hook_runners()


def check_served(hf_config: Any, model: Any) -> None:
    """Refuse an engine whose config asks for VisSparse on a model the plugin does not serve.

    Example:
        >>> from types import SimpleNamespace as NS
        >>> check_served(NS(vissparse={"keep_ratio": 0.1}), NS())
        Traceback (most recent call last):
        ...
        ValueError: `vissparse` is set in hf_overrides, but SimpleNamespace is not served by the VisSparse vLLM plugin; it serves LlavaForConditionalGeneration, Qwen2VLForConditionalGeneration, Qwen2_5_VLForConditionalGeneration
    """  # noqa: E501
    if getattr(hf_config, "vissparse", None) is None or hasattr(model, "vissparse_settings"):
        return
    raise ValueError(
        f"`vissparse` is set in hf_overrides, but {type(model).__name__} is not served by the "
        f"VisSparse vLLM plugin; it serves {', '.join(ARCHITECTURES)}"
    )


def _hook_runners() -> None:
    """Let vLLM's model runners recompute M-RoPE positions for a pruning Qwen model.

    vLLM's runner recomputes positions (``recompute_mrope_positions``) only where its
    ``is_multimodal_pruning_enabled`` is set, which vLLM 0.32 derives from video pruning
    alone on a GPU and never sets on the CPU. After the model loads, the wrapped
    ``load_model`` sets it when the model asks (``vissparse_recomputes_positions``), and
    refuses ``vissparse`` settings on a model the plugin does not serve
    (:func:`check_served`); for every other model it does nothing.
    """
    runners = []
    for module, name in (("vllm.v1.worker.gpu_model_runner", "GPUModelRunner"),
                         ("vllm.v1.worker.cpu_model_runner", "CPUModelRunner")):  # fmt: skip
        try:
            runners.append(getattr(__import__(module, fromlist=[name]), name))
        except Exception as err:  # a platform without this runner
            logger.debug("vissparse: no %s (%s)", name, err)
    for runner in runners:
        original = runner.__dict__.get("load_model")
        if original is None or getattr(original, "_vissparse", False):
            continue
        runner.load_model = _after_load(original)


def _after_load(original: Any) -> Any:
    @functools.wraps(original)
    def load_model(self: Any, *args: Any, **kwargs: Any) -> Any:
        out = original(self, *args, **kwargs)
        model = self.get_model()
        check_served(getattr(self.model_config, "hf_config", None), model)
        if getattr(model, "vissparse_recomputes_positions", False):
            self.is_multimodal_pruning_enabled = True
        return out

    load_model._vissparse = True  # type: ignore[attr-defined]
    return load_model
