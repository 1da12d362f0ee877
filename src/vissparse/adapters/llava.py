"""LLaVA-1.5: CLIP vision tower, MLP projector, Llama-style LM, 1-D RoPE."""

from __future__ import annotations

from typing import Any

from PIL import Image
from torch import Tensor

from vissparse.adapters.base import FamilySpec, TokenGrid, VLMAdapter
from vissparse.adapters.vision_signals import clip_compute, encoder_layers, layer_index

LLAVA = FamilySpec(
    name="llava",
    model_types=("llava",),
    positions="linear",
    feature_inputs=("pixel_values",),
    placeholders=("<image>",),
    image_newline=False,
    processor_class="LlavaProcessor",
    image_processor_class="CLIPImageProcessorPil",
    layout="square_crop",
)


class LlavaAdapter(VLMAdapter):
    """Both LLaVA generations: the base adapter's defaults, plus their token geometry."""

    def token_grid(self, inputs: dict[str, Any], image_index: int) -> TokenGrid:
        """The CLIP patch grid ``s x s``, ``s = image_size // patch_size``.

        LLaVA-1.5: the image's tokens are that grid (after a CLS token with
        ``vision_feature_select_strategy="full"``). LLaVA-NeXT (``layout="base_tile"``):
        the grid is the base tile, the image's first tokens; the anyres tiles and their
        newline tokens follow and are not on it.
        """
        n_images = inputs["pixel_values"].shape[0]
        if not 0 <= image_index < n_images:
            raise IndexError(f"image_index {image_index} out of range: {n_images} images")
        config = self.model.config
        side = int(config.vision_config.image_size) // int(config.vision_config.patch_size)
        start = int(getattr(config, "vision_feature_select_strategy", "default") == "full")
        label = "base tile" if self.spec.layout == "base_tile" else ""
        return TokenGrid(rows=side, cols=side, start=start, label=label)

    def feature_layer(self) -> int:
        """``config.vision_feature_layer`` (-2 in LLaVA-1.5; the last of a list)."""
        layer = getattr(self.model.config, "vision_feature_layer", -2)
        return int(layer[-1] if isinstance(layer, (list, tuple)) else layer)

    def vision_attention(self, layer: int) -> tuple[Any, Any]:
        """The CLIP tower's ``self_attn`` at ``layer``; [CLS] attention is read from it."""
        layers = encoder_layers(self.model.model.vision_tower)
        return layers[layer_index(layer, len(layers))].self_attn, clip_compute

    def projector(self) -> Any:
        """The multi-modal projector: its input is the features the tokens come from."""
        return self.model.model.multi_modal_projector

    def align_rows(
        self, inputs: dict[str, Any], values: Tensor, encoder_rows: bool
    ) -> list[Tensor]:
        """Per-tile rows ``[T, S, d]`` as one ``[n_i, d]`` tensor per image, token-aligned.

        ``encoder_rows``: the rows come from inside the tower and start with [CLS], which
        ``"default"`` features drop (the projector's input has it dropped already).
        LLaVA-NeXT's tiles go through the model's own ``pack_image_features`` (unpadding,
        newline columns, base tile first), so each value lands on its token; newline
        tokens get 0.
        """
        config = self.model.config
        strategy = getattr(config, "vision_feature_select_strategy", "default")
        if encoder_rows and strategy == "default":
            values = values[:, 1:]
        if self.spec.name == "llava":
            return list(values)
        from transformers.models.llava_next.modeling_llava_next import image_size_to_num_patches

        tiles = [
            image_size_to_num_patches(size, config.image_grid_pinpoints,
                                      config.vision_config.image_size)
            for size in inputs["image_sizes"]
        ]  # fmt: skip
        out: list[Tensor] = []
        offset = 0
        for i, n_tiles in enumerate(tiles):
            rows = values[offset : offset + n_tiles]
            offset += n_tiles
            packed, _ = self.model.model.pack_image_features(
                [rows], inputs["image_sizes"][i : i + 1], strategy,
                image_newline=rows.new_zeros(rows.shape[-1]),
            )  # fmt: skip
            out.append(packed[0])
        return out

    def grid_picture(self, image: Image.Image, image_processor: Any) -> Image.Image:
        """LLaVA-1.5: the processor's square; LLaVA-NeXT: the image squashed to a square.

        LLaVA-1.5 pads to a square first when the processor has ``do_pad`` (with its mean
        colour), resizes the shortest edge and takes the centre crop: the result is that
        region of the original pixels. LLaVA-NeXT's base tile is the whole image resized
        to a square, ignoring the aspect ratio.
        """
        width, height = image.size
        if self.spec.layout == "base_tile":
            side = max(width, height)
            return image.resize((side, side), Image.Resampling.BICUBIC)
        if getattr(image_processor, "do_pad", False):
            mean = getattr(image_processor, "image_mean", None) or (0.0, 0.0, 0.0)
            side = max(width, height)
            padded = Image.new("RGB", (side, side), tuple(int(m * 255) for m in mean))
            padded.paste(image, ((side - width) // 2, (side - height) // 2))
            image, width, height = padded, side, side
        size = getattr(image_processor, "size", None)
        crop = getattr(image_processor, "crop_size", None)
        shortest = _field(size, "shortest_edge")
        crop_h, crop_w = _field(crop, "height"), _field(crop, "width")
        if shortest and crop_h and crop_w:
            scale = shortest / min(width, height)  # pixels of the resized image per original
            box_w, box_h = crop_w / scale, crop_h / scale
        else:  # no shortest-edge resize: the centre square of the original
            box_w = box_h = min(width, height)
        left, top = (width - box_w) / 2, (height - box_h) / 2
        box = (round(left), round(top), round(left + box_w), round(top + box_h))
        return image.crop(box)


def _field(obj: Any, name: str) -> Any:
    """``obj[name]`` or ``obj.name`` (processor sizes are dicts or ``SizeDict``s)."""
    if isinstance(obj, dict):
        return obj.get(name)
    return getattr(obj, name, None)
