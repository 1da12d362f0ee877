"""Lets the registry's torchvision import beside the CPU build of torch (``.venv-vllm`` only).

The registry's torchvision wheels are CUDA builds: their C++ ops (``_C.so``) cannot load
beside ``torch==2.13.0+cpu``, which torchvision tolerates everywhere but in one line,
``register_fake`` of ``torchvision::nms`` and ``torchvision::qnms``, which fails when the
operators were never defined. This module, imported at interpreter start by a ``.pth``
file that ``make test-vllm`` writes, defines their schemas (no kernel) when the ops did
not load, so
``import torchvision`` succeeds. Its pure-PyTorch transforms (resize, normalize: what
transformers' image and video processors use) then work; calling ``nms`` or ``qnms`` raises
"no kernel registered". Nothing in the main environment uses this.
"""

from __future__ import annotations

import importlib.util

_LIB = None

if importlib.util.find_spec("torchvision") is not None:
    import torch

    try:
        torch.ops.torchvision.nms  # noqa: B018  (defined when the C++ ops loaded)
    except (AttributeError, RuntimeError):
        _LIB = torch.library.Library("torchvision", "FRAGMENT")
        _LIB.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        _LIB.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
