"""InternVL (HF-native InternVL3): 448 px tiles, pixel shuffle, a thumbnail last.

The processor cuts an image into up to ``max_patches`` tiles of 448 px (a grid chosen by
the aspect ratio) and, when there is more than one, appends a thumbnail of the whole
image. InternViT (with [CLS]) encodes each tile; pixel shuffle folds each 2 x 2 block of
patches into one token (32 x 32 patches -> 256 tokens a tile); an MLP projects them. An
image's tokens are its tiles' tokens in order, so one token grid per tile, the thumbnail
last.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from PIL import Image
from torch import Tensor

from vissparse.adapters.base import Embedded, FamilySpec, TokenGrid, VLMAdapter
from vissparse.adapters.vision_signals import clip_compute, layer_index
from vissparse.strategies.context import GridSegment, ImageLayout

INTERNVL = FamilySpec(
    name="internvl",
    model_types=("internvl",),
    positions="linear",
    feature_inputs=("pixel_values",),
    placeholders=("<IMG_CONTEXT>", "<img>", "</img>"),
    image_newline=False,
    processor_class="InternVLProcessor",
    image_processor_class="GotOcr2ImageProcessorPil",
    layout="tiles",
)


class InternVLAdapter(VLMAdapter):
    """Tiles of a square token grid each; [CLS] attention of InternViT, shuffled like tokens.

    Example:
        >>> from vissparse.testing import tiny_model
        >>> model, _ = tiny_model("internvl")
        >>> InternVLAdapter(INTERNVL, model).tile_side()
        4
    """

    def tile_side(self) -> int:
        """Tokens per side of one tile (patches per side times the downsample ratio)."""
        vc = self.model.config.vision_config
        size, patch = _pair(vc.image_size)[0], _pair(vc.patch_size)[0]
        return int(size // patch * float(self.model.config.downsample_ratio))

    def tiles(self, inputs: dict[str, Any]) -> list[int]:
        """Tiles per image (batch order), from the lengths of the image-token runs."""
        per_tile = self.tile_side() ** 2
        ids = inputs["input_ids"] == self.image_token_id
        out = []
        for row in ids:
            edges = torch.diff(row.long(), prepend=row.new_zeros(1).long(),
                               append=row.new_zeros(1).long())  # fmt: skip
            starts, ends = (edges == 1).nonzero().flatten(), (edges == -1).nonzero().flatten()
            for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
                if (end - start) % per_tile:
                    raise ValueError(
                        f"an image has {end - start} tokens, not a multiple of {per_tile} "
                        "per tile; the processor and model do not match"
                    )
                out.append((end - start) // per_tile)
        return out

    def image_features(self, inputs: dict[str, Any]) -> list[Tensor]:
        """One ``[tiles_i * 256, D]`` tensor per image (its tiles' tokens, in order)."""
        config = self.model.config
        output = self.model.model.get_image_features(
            pixel_values=inputs["pixel_values"],
            vision_feature_layer=config.vision_feature_layer,
            vision_feature_select_strategy=config.vision_feature_select_strategy,
        )
        tiles = output.pooler_output.split(self.tiles(inputs))
        return [t.reshape(-1, t.shape[-1]) for t in tiles]

    def token_grid(self, inputs: dict[str, Any], image_index: int) -> TokenGrid:
        """The thumbnail's grid (the last tile), over the image squashed to a square.

        An image of one tile has no thumbnail: its tile is the whole image, squashed.
        """
        tiles = self.tiles(inputs)
        if not 0 <= image_index < len(tiles):
            raise IndexError(f"image_index {image_index} out of range: {len(tiles)} images")
        side, n = self.tile_side(), tiles[image_index]
        label = "thumbnail" if n > 1 else ""
        return TokenGrid(rows=side, cols=side, start=(n - 1) * side * side, label=label)

    def layouts(self, inputs: dict[str, Any], emb: Embedded) -> list[ImageLayout]:
        """One square grid segment per tile, the thumbnail last: every token once."""
        side = self.tile_side()
        out = []
        for n in self.tiles(inputs):
            segments = []
            for k in range(n):
                index = torch.arange(k * side * side, (k + 1) * side * side).view(side, side)
                label = "thumbnail" if n > 1 and k == n - 1 else f"tile {k}"
                segments.append(GridSegment(index, label=label))
            out.append(ImageLayout(n * side * side, tuple(segments)))
        return out

    def grid_picture(self, image: Image.Image, image_processor: Any) -> Image.Image:
        """The thumbnail is the whole image resized to a square, ignoring its aspect ratio."""
        side = max(image.size)
        return image.resize((side, side), Image.Resampling.BICUBIC)

    def feature_layer(self) -> int:
        """The vision layer whose output feeds pixel shuffle and the projector."""
        return int(self.model.config.vision_feature_layer)

    def vision_attention(self, layer: int) -> tuple[Any, Any]:
        """InternViT's attention at ``layer``: the [CLS] row, as in CLIP (q/k norms kept)."""
        layers = self.model.model.vision_tower.encoder.layer
        return layers[layer_index(layer, len(layers))].attention, clip_compute

    def projector(self) -> Any:
        """The MLP projector: its input is the pixel-shuffled features."""
        return self.model.model.multi_modal_projector

    def align_rows(
        self, inputs: dict[str, Any], values: Tensor, encoder_rows: bool
    ) -> list[Tensor]:
        """Per-tile values as one ``[tiles_i * 256, d]`` tensor per image.

        Encoder rows ``[T, 1 + P, d]`` lose [CLS] and go through the model's own pixel
        shuffle, so each token gets the mean of its 2 x 2 patches; the projector's input
        ``[T, 256, 4d]`` is already aligned.
        """
        t = values.shape[0]
        if encoder_rows:
            d = values.shape[-1]
            patches = values[:, 1:]
            side = math.isqrt(patches.shape[1])
            grid = patches.reshape(t, side, side, d)
            ratio = float(self.model.config.downsample_ratio)
            shuffled = self.model.model.pixel_shuffle(grid, scale_factor=ratio)
            group = round(1 / ratio) ** 2
            values = shuffled.reshape(t, -1, group, d).mean(dim=2)
        per_image = values.split(self.tiles(inputs))
        return [v.reshape(-1, v.shape[-1]) for v in per_image]


def _pair(value: Any) -> tuple[int, int]:
    """``image_size`` / ``patch_size`` may be one int or ``[h, w]``."""
    if isinstance(value, int):
        return value, value
    return int(value[0]), int(value[1])
