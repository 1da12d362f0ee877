"""The lmms-eval model plugin: ``lmms-eval --model vissparse --model_args ...``.

``pip install "vissparse[lmms]"`` registers it through lmms-eval's ``lmms_eval.models``
entry point (lmms-eval 0.6 and later read model manifests there); nothing else is
needed. The model class (:mod:`vissparse.lmms.model`) imports lmms-eval, this module
does not.

Example:
    >>> MODEL_ID, CLASS_PATH
    ('vissparse', 'vissparse.lmms.model.VisSparseLMM')
"""

from __future__ import annotations

from typing import Any

MODEL_ID = "vissparse"
CLASS_PATH = "vissparse.lmms.model.VisSparseLMM"


def manifest() -> Any:
    """lmms-eval's ``ModelManifest`` of ``--model vissparse`` (the entry point's payload)."""
    from lmms_eval.models.registry_v2 import ModelManifest

    return ModelManifest(model_id=MODEL_ID, simple_class_path=CLASS_PATH)
