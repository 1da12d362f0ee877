"""Applying a keep mask to a batch: drop mode and mask mode, with position bookkeeping.

Pure tensor code. Both modes keep every token's ORIGINAL position id (computed on the
unpruned sequence), so decoding continues right after the unpruned prompt and drop mode
gives the same greedy tokens as mask mode.
"""

from __future__ import annotations

import torch
from torch import Tensor


def gather_images(
    inputs_embeds: Tensor,
    image_sample: list[int],
    image_positions: list[Tensor],
    scorable: list[Tensor],
) -> tuple[Tensor, Tensor]:
    """Stack each image's tokens into ``[n_images, N_max, D]`` with a ``valid`` mask.

    ``valid`` is ``False`` for padding and for tokens that must not be scored.

    Example:
        >>> emb = torch.arange(12.0).view(1, 6, 2)
        >>> tokens, valid = gather_images(emb, [0, 0], [torch.tensor([1, 2]),
        ...     torch.tensor([4])], [torch.tensor([True, True]), torch.tensor([True])])
        >>> tokens.shape, valid.tolist()
        (torch.Size([2, 2, 2]), [[True, True], [True, False]])
    """
    n_max = max((p.numel() for p in image_positions), default=0)
    d = inputs_embeds.shape[-1]
    tokens = inputs_embeds.new_zeros(len(image_positions), n_max, d)
    valid = torch.zeros(len(image_positions), n_max, dtype=torch.bool, device=inputs_embeds.device)
    for i, (row, pos, ok) in enumerate(zip(image_sample, image_positions, scorable, strict=True)):
        tokens[i, : pos.numel()] = inputs_embeds[row, pos]
        valid[i, : pos.numel()] = ok
    return tokens, valid


def scatter_images(
    inputs_embeds: Tensor, image_sample: list[int], image_positions: list[Tensor], tokens: Tensor
) -> Tensor:
    """The inverse of :func:`gather_images`: image tokens written back into a copy.

    Row ``i`` of ``tokens`` (padding ignored) goes to image ``i``'s positions.

    Example:
        >>> emb = torch.zeros(1, 4, 1)
        >>> out = scatter_images(emb, [0], [torch.tensor([1, 3])], torch.tensor([[[5.0], [7.0]]]))
        >>> out.flatten().tolist(), emb.flatten().tolist()
        ([0.0, 5.0, 0.0, 7.0], [0.0, 0.0, 0.0, 0.0])
    """
    out = inputs_embeds.clone()
    for i, (row, pos) in enumerate(zip(image_sample, image_positions, strict=True)):
        out[row, pos] = tokens[i, : pos.numel()].to(out.dtype)
    return out


def sequence_keep_mask(
    shape: tuple[int, int],
    image_sample: list[int],
    image_positions: list[Tensor],
    image_keep: list[Tensor],
    device: torch.device | None = None,
) -> Tensor:
    """``[B, L]`` bool: ``True`` except where an image token was pruned.

    Example:
        >>> sequence_keep_mask((1, 4), [0], [torch.tensor([1, 2])], [torch.tensor([True, False])])
        tensor([[ True,  True, False,  True]])
    """
    keep = torch.ones(shape, dtype=torch.bool, device=device)
    for row, pos, kept in zip(image_sample, image_positions, image_keep, strict=True):
        keep[row, pos.to(keep.device)] = kept.to(keep.device)
    return keep


def image_token_mask(
    shape: tuple[int, int],
    image_sample: list[int],
    image_positions: list[Tensor],
    device: torch.device | None = None,
) -> Tensor:
    """``[B, L]`` bool: ``True`` at every image token of the batch.

    Example:
        >>> image_token_mask((1, 4), [0], [torch.tensor([1, 2])])
        tensor([[False,  True,  True, False]])
    """
    out = torch.zeros(shape, dtype=torch.bool, device=device)
    for row, pos in zip(image_sample, image_positions, strict=True):
        out[row, pos.to(out.device)] = True
    return out


def image_counts(
    n_rows: int, image_sample: list[int], image_keep: list[Tensor]
) -> tuple[list[int], list[int]]:
    """Per prompt row: its image tokens, and how many of them ``image_keep`` keeps.

    Example:
        >>> image_counts(2, [0, 0], [torch.tensor([True, False]), torch.tensor([True])])
        ([3, 0], [2, 0])
    """
    n_image, n_kept = [0] * n_rows, [0] * n_rows
    for row, kept in zip(image_sample, image_keep, strict=True):
        n_image[row] += kept.numel()
        n_kept[row] += int(kept.sum())
    return n_image, n_kept


def drop_tokens(
    inputs_embeds: Tensor, position_ids: Tensor, attention_mask: Tensor, keep: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """Remove pruned tokens and re-pad on the left to the longest remaining row.

    ``position_ids`` may be ``[B, L]`` or ``[3, B, L]`` (M-RoPE); kept tokens keep their
    original ids. Padding gets zero embeddings, position 0 and attention 0.

    Example:
        >>> emb = torch.arange(4.0).view(1, 4, 1)
        >>> pos = torch.arange(4).view(1, 4)
        >>> e, p, a = drop_tokens(emb, pos, torch.ones(1, 4), torch.tensor([[1, 0, 1, 1]]).bool())
        >>> p.tolist(), a.tolist()
        ([[0, 2, 3]], [[1.0, 1.0, 1.0]])
    """
    b, _, d = inputs_embeds.shape
    kept = [(attention_mask[row].bool() & keep[row]).nonzero().flatten() for row in range(b)]
    length = max((k.numel() for k in kept), default=0)
    embeds = inputs_embeds.new_zeros(b, length, d)
    mask = attention_mask.new_zeros(b, length)
    for row, idx in enumerate(kept):
        start = length - idx.numel()
        embeds[row, start:] = inputs_embeds[row, idx]
        mask[row, start:] = 1
    return embeds, pack_left(position_ids, attention_mask, keep), mask


def pack_left(values: Tensor, attention_mask: Tensor, keep: Tensor, fill: int = 0) -> Tensor:
    """Per-token ``values`` ``[..., B, L]`` of the kept tokens, re-padded on the left.

    The same packing as :func:`drop_tokens` (position ids, token type ids, token ids);
    padding gets ``fill`` (the pad token for token ids).

    Example:
        >>> pack_left(torch.tensor([[7, 8, 9]]), torch.ones(1, 3), torch.tensor([[1, 0, 1]]).bool())
        tensor([[7, 9]])
        >>> pack_left(torch.tensor([[7, 8], [5, 6]]), torch.ones(2, 2),
        ...           torch.tensor([[1, 1], [0, 1]]).bool(), fill=-1).tolist()
        [[7, 8], [-1, 6]]
    """
    b = attention_mask.shape[0]
    kept = [(attention_mask[row].bool() & keep[row]).nonzero().flatten() for row in range(b)]
    length = max((k.numel() for k in kept), default=0)
    out = values.new_full((*values.shape[:-2], b, length), fill)
    for row, idx in enumerate(kept):
        out[..., row, length - idx.numel() :] = values[..., row, idx]
    return out


def kept_ids(
    input_ids: Tensor,
    attention_mask: Tensor,
    image_sample: list[int],
    image_positions: list[Tensor],
    image_keep: list[Tensor],
    pad: int = 0,
) -> Tensor:
    """Drop mode's token ids: the prompt's ids without the pruned image tokens.

    Packed as :func:`drop_tokens` packs the embeddings, padded on the left with ``pad``.

    Example:
        >>> ids = torch.tensor([[5, 9, 9, 6]])
        >>> kept_ids(ids, torch.ones(1, 4), [0], [torch.tensor([1, 2])],
        ...          [torch.tensor([False, True])]).tolist()
        [[5, 9, 6]]
    """
    if input_ids.shape != attention_mask.shape:
        raise ValueError(
            f"`input_ids` {tuple(input_ids.shape)} and `attention_mask` "
            f"{tuple(attention_mask.shape)} must have the same shape"
        )
    rows, length = input_ids.shape
    keep = sequence_keep_mask((rows, length), image_sample, image_positions, image_keep,
                              device=input_ids.device)  # fmt: skip
    return pack_left(input_ids, attention_mask, keep, fill=pad)


def mask_tokens(attention_mask: Tensor, keep: Tensor) -> Tensor:
    """The attention mask with pruned tokens zeroed (mask mode), same dtype.

    Example:
        >>> mask_tokens(torch.ones(1, 3, dtype=torch.long), torch.tensor([[True, False, True]]))
        tensor([[1, 0, 1]])
    """
    return (attention_mask.bool() & keep).to(attention_mask.dtype)


def compact_positions(attention_mask: Tensor) -> Tensor:
    """``[B, L]`` 1-D positions numbered 0, 1, ... over each row's real tokens.

    ``positions="compact"``: the kept tokens are renumbered contiguously, as vLLM numbers
    any sequence (pads, on the left, get 0).

    Example:
        >>> compact_positions(torch.tensor([[0, 1, 1, 1]]))
        tensor([[0, 0, 1, 2]])
    """
    return (attention_mask.long().cumsum(dim=-1) - 1).clamp(min=0)
