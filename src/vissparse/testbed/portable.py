"""Saved testbed checkpoints in the layout every engine loads (transformers and vLLM).

transformers 5.x saves two things other loaders do not take:

- LLaVA's CLIP tower without its ``vision_model.`` level (``vision_tower.embeddings...``);
  the llava-hf checkpoints, vLLM, and transformers itself read
  ``vision_tower.vision_model.embeddings...``;
- Qwen2-VL's processor as the project's image-only class (``Qwen2VLProcessorImageOnly``,
  which exists only inside VisSparse) and no video processor config, so
  ``AutoProcessor`` elsewhere (vLLM's) cannot build it.

:func:`make_portable` rewrites a saved folder in place: the same tensors under the usual
names, the standard processor class and a video processor config with the image
processor's settings. The weights, and so every answer, are unchanged.
"""

from __future__ import annotations

import json
from pathlib import Path

VISION_LEVEL = "vision_tower.vision_model."
QWEN_PROCESSORS = {"qwen2_vl": "Qwen2VLProcessor", "qwen2_5_vl": "Qwen2_5_VLProcessor"}
VIDEO_CONFIG = "video_preprocessor_config.json"
_VIDEO_KEYS = ("do_convert_rgb", "do_normalize", "do_rescale", "do_resize", "image_mean",
               "image_std", "merge_size", "patch_size", "temporal_patch_size", "size",
               "resample", "rescale_factor")  # fmt: skip


def make_portable(folder: str | Path, family: str) -> list[str]:
    """Rewrite the checkpoint in ``folder`` (``family`` "llava", "qwen2_vl" or "qwen2_5_vl").

    Returns what changed.

    Running it again changes nothing.

    Example:
        >>> import tempfile
        >>> make_portable(tempfile.mkdtemp(), "llava")  # nothing to rewrite
        []
    """
    folder = Path(folder)
    if family == "llava":
        return _llava_weights(folder)
    if family in QWEN_PROCESSORS:
        return _qwen_processor(folder, QWEN_PROCESSORS[family])
    raise ValueError(f"`family` must be one of {['llava', *QWEN_PROCESSORS]}, got {family!r}")


def _llava_weights(folder: Path) -> list[str]:
    from safetensors.torch import load_file, save_file

    path = folder / "model.safetensors"
    if not path.exists():
        return []
    tensors = load_file(path)
    flat = [k for k in tensors if k.startswith("vision_tower.") and not k.startswith(VISION_LEVEL)]
    if not flat:
        return []
    renamed = {(VISION_LEVEL + k[len("vision_tower.") :] if k in flat else k): v
               for k, v in tensors.items()}  # fmt: skip
    save_file(renamed, path, metadata={"format": "pt"})
    return [f"{path.name}: {len(flat)} vision-tower tensors under {VISION_LEVEL!r}"]


def _qwen_processor(folder: Path, processor_class: str) -> list[str]:
    changed = []
    for name in ("processor_config.json", "tokenizer_config.json"):
        path = folder / name
        if not path.exists():
            continue
        config = json.loads(path.read_text())
        if config.get("processor_class", processor_class) != processor_class:
            config["processor_class"] = processor_class
            path.write_text(json.dumps(config, indent=2) + "\n")
            changed.append(f"{name}: processor_class {processor_class!r}")
    processor = folder / "processor_config.json"
    video = folder / VIDEO_CONFIG
    if processor.exists() and not video.exists():
        image = json.loads(processor.read_text()).get("image_processor", {})
        config = {"video_processor_type": "Qwen2VLVideoProcessor",
                  **{k: image[k] for k in _VIDEO_KEYS if k in image}}  # fmt: skip
        video.write_text(json.dumps(config, indent=2) + "\n")
        changed.append(f"{VIDEO_CONFIG}: the image processor's settings")
    return changed
