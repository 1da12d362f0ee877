"""The query a scorer compares image tokens with, derived from the prompt.

One rule for mock and real models alike: the query is the mean of the input embeddings
of the user's prompt tokens (no system prompt, chat-template or special tokens), in the
language model's input-embedding space, computed in float32.
"""

from __future__ import annotations

import torch
from torch import Tensor

from vissparse.host_sync import values_on_host


def query_from_embeddings(embeddings: Tensor, prompt_mask: Tensor) -> Tensor:
    """Mean of ``embeddings[b, t]`` over the ``t`` where ``prompt_mask[b, t]``, float32.

    A row with no prompt token gives a ``ValueError`` (there is nothing to score against)
    where the mask's values can be read for free (:func:`~vissparse.host_sync.values_on_host`);
    on an accelerator the check is left out (the pipeline builds the mask on the host) and
    such a row's query is zero. Nothing here waits for the device.

    Example:
        >>> emb = torch.tensor([[[1.0, 0.0], [3.0, 2.0], [9.0, 9.0]]])
        >>> query_from_embeddings(emb, torch.tensor([[True, True, False]]))
        tensor([[2., 1.]])
    """
    if embeddings.dim() != 3 or prompt_mask.shape != embeddings.shape[:2]:
        raise ValueError(
            "`embeddings` must be [B, L, D] and `prompt_mask` [B, L], got "
            f"{tuple(embeddings.shape)} and {tuple(prompt_mask.shape)}"
        )
    counts = prompt_mask.sum(dim=1)
    if values_on_host(counts) and bool((counts == 0).any()):
        rows = (counts == 0).nonzero().flatten().tolist()
        raise ValueError(f"prompt rows {rows} have no prompt tokens to derive a query from")
    weights = prompt_mask.to(torch.float32).unsqueeze(-1)
    summed = (embeddings.float() * weights).sum(dim=1)
    return summed / counts.clamp(min=1).unsqueeze(-1).to(torch.float32)


def pack_words(
    embeddings: Tensor, prompt_mask: Tensor, width: int, content_mask: Tensor | None = None
) -> tuple[Tensor, Tensor, Tensor | None]:
    """The prompt's words first, in order, in ``width`` columns: what word scorers read.

    ``embeddings`` ``[B, L, D]`` hold the whole sequence (image tokens, template, padding);
    a scorer comparing every image token with every word needs only the user's words.
    ``width`` is a host-side bound on any row's word count (the HF pipeline's: ``L`` less
    the fewest image tokens of a row), so the shapes are fixed and nothing waits for the
    device. Returns ``[B, W, D]`` embeddings, the ``[B, W]`` mask (and content mask) of the
    same columns, ``W = min(max(width, 1), L)``; a row's words keep their order.

    Example:
        >>> emb = torch.arange(5.0)[None, :, None]
        >>> words, mask, _ = pack_words(emb, torch.tensor([[False, True, False, True, False]]), 3)
        >>> words[0, :, 0].tolist(), mask.tolist()
        ([1.0, 3.0, 0.0], [[True, True, False]])
    """
    width = min(max(width, 1), prompt_mask.shape[1])
    order = torch.argsort((~prompt_mask.bool()).to(torch.uint8), dim=1, stable=True)[:, :width]
    packed = embeddings.gather(1, order.unsqueeze(-1).expand(-1, -1, embeddings.shape[-1]))
    content = None if content_mask is None else content_mask.gather(1, order)
    return packed, prompt_mask.gather(1, order), content
