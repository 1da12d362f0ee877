"""The plugin's embedding step: each image's tokens through the selection core.

Pure tensor code, no vLLM import: the model classes of :mod:`vissparse.vllm.models` hand
it the image embeddings vLLM computed (one ``[n, D]`` tensor per image), the user's
prompt embedded by the language model, and each image's token grid.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from vissparse.selection import SelectionCore, query_from_embeddings
from vissparse.strategies.context import ImageLayout
from vissparse.strategies.topk import kept_count


def prune_images(
    core: SelectionCore, keep_ratio: float, images: Sequence[Tensor], prompts: Sequence[Tensor],
    layouts: Sequence[ImageLayout] | None = None,
) -> list[Tensor]:  # fmt: skip
    """Each image's kept token indices (ascending), ``ceil(keep_ratio * n)`` of its ``n``.

    ``prompts[i]`` is image ``i``'s prompt, ``[L, D]`` input embeddings of the user's
    prompt tokens (``L`` may be 0: then the query is zero). Merging methods change the
    kept tokens' values: read them with :func:`kept_embeddings`.

    Example:
        >>> core = SelectionCore("cosine-mean", "topk")
        >>> image = torch.eye(4)
        >>> prune_images(core, 0.5, [image], [torch.tensor([[0.0, 1.0, 1.0, 0.0]])])
        [tensor([1, 2])]
    """
    return [idx for idx, _ in _choose(core, keep_ratio, images, prompts, layouts)]


def kept_embeddings(
    core: SelectionCore, keep_ratio: float, images: Sequence[Tensor], prompts: Sequence[Tensor],
    layouts: Sequence[ImageLayout] | None = None,
) -> list[tuple[Tensor, Tensor]]:  # fmt: skip
    """Per image ``(kept indices, kept embeddings)``: what the language model is fed."""
    return _choose(core, keep_ratio, images, prompts, layouts)


def _choose(
    core: SelectionCore, keep_ratio: float, images: Sequence[Tensor], prompts: Sequence[Tensor],
    layouts: Sequence[ImageLayout] | None,
) -> list[tuple[Tensor, Tensor]]:  # fmt: skip
    if not images:
        return []
    device, dtype, d = images[0].device, images[0].dtype, images[0].shape[-1]
    sizes = [int(image.shape[0]) for image in images]
    tokens = torch.zeros(len(images), max(sizes), d, dtype=dtype, device=device)
    valid = torch.zeros(len(images), max(sizes), dtype=torch.bool, device=device)
    for i, image in enumerate(images):
        tokens[i, : sizes[i]] = image
        valid[i, : sizes[i]] = True
    length = max(int(p.shape[0]) for p in prompts)
    words = torch.zeros(len(images), max(length, 1), d, dtype=dtype, device=device)
    mask = torch.zeros(len(images), max(length, 1), dtype=torch.bool, device=device)
    for i, prompt in enumerate(prompts):
        words[i, : prompt.shape[0]] = prompt.to(device, dtype)
        mask[i, : prompt.shape[0]] = True
    # the HF path's rule (vissparse.query); an image with no prompt text gets a zero query
    query = torch.zeros(len(images), d, dtype=torch.float32, device=device)
    has = mask.any(dim=1)
    if bool(has.any()):
        query[has] = query_from_embeddings(words[has], mask[has])
    ctx = core.context(tokens, query, valid, prompt_embeddings=words, prompt_mask=mask,
                       layouts=layouts)  # fmt: skip
    choice = core.choose(ctx, keep_ratio)
    out = []
    for i, n in enumerate(sizes):
        keep = choice.keep[i, :n]
        expected = kept_count(keep_ratio, n)
        if int(keep.sum()) != expected:
            raise ValueError(
                f"`vissparse.scorer` {core.name!r} kept {int(keep.sum())} of image {i}'s {n} "
                f"tokens; vLLM reserved {expected} (ceil(keep_ratio * n)) before the model ran, "
                "so a method whose count adapts to the content cannot serve in vLLM"
            )
        out.append((keep.nonzero().flatten(), choice.kept_tokens(tokens, i, n)))
    return out


def mrope_channels(rows: int, cols: int, kept: Tensor) -> Tensor:
    """``[k, 4]`` M-RoPE channels of an image's kept tokens, as if the image started at 0.

    ``(t, h, w)`` of each kept token of a ``rows x cols`` merged grid (one frame), and in
    the fourth channel ``max(rows, cols)``: the text after the image starts that far after
    the image's first position, as in the unpruned sequence. vLLM's
    ``recompute_mrope_positions`` reads these channels (the layout EVS uses).

    Example:
        >>> mrope_channels(2, 3, torch.tensor([1, 5])).tolist()
        [[0, 0, 1, 3], [0, 1, 2, 3]]
    """
    kept = kept.long()
    extent = torch.full_like(kept, max(rows, cols))
    return torch.stack([torch.zeros_like(kept), kept // cols, kept % cols, extent], dim=1)


def video_channels(frames: int, rows: int, cols: int, t_factor: float = 1.0) -> Tensor:
    """``[frames * rows * cols, 4]`` M-RoPE channels of a whole video, as if it started at 0.

    ``(t, h, w)`` with ``t`` the frame index times ``t_factor`` (seconds per grid step
    times tokens per second, truncated, as vLLM's Qwen models do), and in the fourth
    channel how far after the video's first position the text after it starts (its
    largest position plus one), so an engine that recomputes positions for pruned images
    leaves a video's positions as they were.

    Example:
        >>> video_channels(2, 1, 2, t_factor=2.0).tolist()
        [[0, 0, 0, 3], [0, 0, 1, 3], [2, 0, 0, 3], [2, 0, 1, 3]]
    """
    t = (torch.arange(frames) * t_factor).long()
    grid = torch.stack(torch.meshgrid(t, torch.arange(rows), torch.arange(cols), indexing="ij"))
    flat = grid.reshape(3, -1).T
    extent = int(flat.max()) + 1
    return torch.cat([flat, torch.full((flat.shape[0], 1), extent, dtype=torch.long)], dim=1)
