"""The prompts as typed, carried on the prompt mask from the input step to the pruning step.

Methods with a text tower of their own (``trim``: CLIP's) encode the user's prompt
again; the pipelines keep each row's prompt string on the ``[B, L]`` prompt mask, as the
content mask travels (:func:`vissparse.content_words.attach_content_mask`). Strings live
on the host: reading them never waits for a device.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor


def attach_prompt_texts(prompt_mask: Tensor, texts: Sequence[str]) -> Tensor:
    """Remember one prompt string per row of ``prompt_mask``; returns ``prompt_mask``.

    Example:
        >>> import torch
        >>> mask = attach_prompt_texts(torch.ones(2, 3, dtype=torch.bool), ["a?", "b?"])
        >>> prompt_texts_of(mask), prompt_texts_of(mask.clone())
        (('a?', 'b?'), None)
    """
    texts = tuple(texts)
    if len(texts) != prompt_mask.shape[0] or not all(isinstance(t, str) for t in texts):
        raise ValueError(
            f"`texts` must be {prompt_mask.shape[0]} strings, one per row of `prompt_mask`, "
            f"got {texts!r}"
        )
    prompt_mask._vissparse_texts = texts  # type: ignore[attr-defined]
    return prompt_mask


def prompt_texts_of(prompt_mask: Tensor) -> tuple[str, ...] | None:
    """The prompt strings remembered on ``prompt_mask`` (:func:`attach_prompt_texts`), or None.

    Example:
        >>> import torch
        >>> prompt_texts_of(torch.ones(1, 2, dtype=torch.bool)) is None
        True
    """
    texts = getattr(prompt_mask, "_vissparse_texts", None)
    if isinstance(texts, tuple) and len(texts) == prompt_mask.shape[0]:
        return texts
    return None
