"""Applying a keep mask to a batch: drop mode and mask mode, with position bookkeeping.

Pure tensor code. Both modes keep every token's ORIGINAL position id (computed on the
unpruned sequence), so decoding continues right after the unpruned prompt and drop mode
gives the same greedy tokens as mask mode.
"""

from __future__ import annotations

import torch
from torch import Tensor

from vissparse.host_sync import to_device


def image_index(
    image_sample: list[int], image_positions: list[Tensor], device: torch.device
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Flat indices of every image token: sequence ``(row, column)``, stacked ``(image, slot)``.

    Built where ``image_positions`` live (the host, from the processor's ids) and copied
    to ``device`` without waiting, so the gathers and scatters that use them are fixed-
    shape kernels with no host synchronisation.

    Example:
        >>> [t.tolist() for t in image_index([1, 1], [torch.tensor([3, 4]), torch.tensor([7])],
        ...                                  torch.device("cpu"))]
        [[1, 1, 1], [3, 4, 7], [0, 0, 1], [0, 1, 0]]
    """
    if not image_positions:
        empty = torch.zeros(0, dtype=torch.long, device=device)
        return empty, empty, empty, empty
    where = image_positions[0].device
    sizes = [p.numel() for p in image_positions]
    rows = torch.cat([torch.full((n,), r, dtype=torch.long, device=where)
                      for r, n in zip(image_sample, sizes, strict=True)])  # fmt: skip
    cols = torch.cat([p.to(where, torch.long) for p in image_positions])
    images = torch.cat([torch.full((n,), i, dtype=torch.long, device=where)
                        for i, n in enumerate(sizes)])  # fmt: skip
    slots = torch.cat([torch.arange(n, device=where) for n in sizes])
    return tuple(to_device(t, device) for t in (rows, cols, images, slots))  # type: ignore[return-value]


def gather_images(
    inputs_embeds: Tensor,
    image_sample: list[int],
    image_positions: list[Tensor],
    scorable: list[Tensor],
) -> tuple[Tensor, Tensor]:
    """Stack each image's tokens into ``[n_images, N_max, D]`` with a ``valid`` mask.

    ``valid`` is ``False`` for padding and for tokens that must not be scored. One gather,
    no host synchronisation.

    Example:
        >>> emb = torch.arange(12.0).view(1, 6, 2)
        >>> tokens, valid = gather_images(emb, [0, 0], [torch.tensor([1, 2]),
        ...     torch.tensor([4])], [torch.tensor([True, True]), torch.tensor([True])])
        >>> tokens.shape, valid.tolist()
        (torch.Size([2, 2, 2]), [[True, True], [True, False]])
    """
    n_max = max((p.numel() for p in image_positions), default=0)
    d, device = inputs_embeds.shape[-1], inputs_embeds.device
    tokens = inputs_embeds.new_zeros(len(image_positions), n_max, d)
    valid = torch.zeros(len(image_positions), n_max, dtype=torch.bool, device=device)
    if image_positions:
        rows, cols, images, slots = image_index(image_sample, image_positions, device)
        tokens[images, slots] = inputs_embeds[rows, cols]
        valid[images, slots] = torch.cat([ok.to(device, non_blocking=True) for ok in scorable])
    return tokens, valid


def image_slots(image_positions: list[Tensor], n_max: int, device: torch.device) -> Tensor:
    """``[n_images, n_max]`` bool: ``True`` on each image's real token slots (not padding).

    Example:
        >>> image_slots([torch.tensor([4, 5]), torch.tensor([9])], 2, torch.device("cpu"))
        tensor([[ True,  True],
                [ True, False]])
    """
    sizes = torch.tensor([p.numel() for p in image_positions], dtype=torch.long)
    slots = torch.arange(n_max).unsqueeze(0) < sizes.unsqueeze(1)
    return to_device(slots, device)


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
    if image_positions:
        rows, cols, images, slots = image_index(image_sample, image_positions, out.device)
        out[rows, cols] = tokens.to(out.device)[images, slots].to(out.dtype)
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
    if image_positions:
        rows, cols, _, _ = image_index(image_sample, image_positions, keep.device)
        keep[rows, cols] = torch.cat([k.to(keep.device, non_blocking=True) for k in image_keep])
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
    if image_positions:
        rows, cols, _, _ = image_index(image_sample, image_positions, out.device)
        out[rows, cols] = True
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
    inputs_embeds: Tensor,
    position_ids: Tensor,
    attention_mask: Tensor,
    keep: Tensor,
    length: int | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Remove pruned tokens and re-pad on the left to the longest remaining row.

    ``position_ids`` may be ``[B, L]`` or ``[3, B, L]`` (M-RoPE); kept tokens keep their
    original ids. Padding gets zero embeddings, position 0 and attention 0. ``length``,
    the longest row's kept tokens, known on the host (from the processor's ids and the
    budget), makes it free of host synchronisation; without it, it is read from the
    device (a synchronisation).

    Example:
        >>> emb = torch.arange(4.0).view(1, 4, 1)
        >>> pos = torch.arange(4).view(1, 4)
        >>> e, p, a = drop_tokens(emb, pos, torch.ones(1, 4), torch.tensor([[1, 0, 1, 1]]).bool())
        >>> p.tolist(), a.tolist()
        ([[0, 2, 3]], [[1.0, 1.0, 1.0]])
    """
    order, present = packing(attention_mask, keep, length)
    d = inputs_embeds.shape[-1]
    gathered = inputs_embeds.gather(1, order.unsqueeze(-1).expand(*order.shape, d))
    embeds = torch.where(present.unsqueeze(-1), gathered, torch.zeros_like(gathered))
    mask = present.to(attention_mask.dtype)
    return embeds, pack_left(position_ids, attention_mask, keep, length=length), mask


def packing(
    attention_mask: Tensor, keep: Tensor, length: int | None = None
) -> tuple[Tensor, Tensor]:
    """``[B, length]`` source columns of the kept tokens, left-padded, and which are real.

    A stable sort puts each row's dropped and padding tokens first and its kept tokens
    last, in their order; the last ``length`` columns are the packed row. Fixed shapes:
    no host synchronisation when ``length`` is given (it must be at least the longest
    row's kept count, which the pipeline knows on the host).

    Example:
        >>> order, real = packing(torch.ones(1, 4), torch.tensor([[True, False, True, True]]), 3)
        >>> order.tolist(), real.tolist()
        ([[0, 2, 3]], [[True, True, True]])
    """
    real = attention_mask.bool() & keep.to(attention_mask.device)
    if length is None:
        length = int(real.sum(dim=1).max()) if real.shape[0] else 0
    total = real.shape[1]
    if not 0 <= length <= total:
        raise ValueError(f"`length` must be in [0, {total}], got {length}")
    order = torch.sort(real.to(torch.int8), dim=1, stable=True).indices[:, total - length :]
    return order, real.gather(1, order)


def pack_left(
    values: Tensor, attention_mask: Tensor, keep: Tensor, fill: int = 0, length: int | None = None
) -> Tensor:
    """Per-token ``values`` ``[..., B, L]`` of the kept tokens, re-padded on the left.

    The same packing as :func:`drop_tokens` (position ids, token type ids, token ids);
    padding gets ``fill`` (the pad token for token ids). ``length`` as in
    :func:`drop_tokens`.

    Example:
        >>> pack_left(torch.tensor([[7, 8, 9]]), torch.ones(1, 3), torch.tensor([[1, 0, 1]]).bool())
        tensor([[7, 9]])
        >>> pack_left(torch.tensor([[7, 8], [5, 6]]), torch.ones(2, 2),
        ...           torch.tensor([[1, 1], [0, 1]]).bool(), fill=-1).tolist()
        [[7, 8], [-1, 6]]
    """
    order, present = packing(attention_mask, keep, length)
    index = order.expand(*values.shape[:-2], *order.shape)
    gathered = values.gather(-1, index)
    return torch.where(present.expand_as(gathered), gathered, torch.full_like(gathered, fill))


def kept_ids(
    input_ids: Tensor,
    attention_mask: Tensor,
    image_sample: list[int],
    image_positions: list[Tensor],
    image_keep: list[Tensor],
    pad: int = 0,
    length: int | None = None,
) -> Tensor:
    """Drop mode's token ids: the prompt's ids without the pruned image tokens.

    Packed as :func:`drop_tokens` packs the embeddings (``length`` as there), padded on
    the left with ``pad``.

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
    rows, columns = input_ids.shape
    keep = sequence_keep_mask((rows, columns), image_sample, image_positions, image_keep,
                              device=input_ids.device)  # fmt: skip
    return pack_left(input_ids, attention_mask, keep, fill=pad, length=length)


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
