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
