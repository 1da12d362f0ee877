"""``compile=True`` on a transformers too old to size a static cache: one line, up front."""

import pytest
import transformers

from vissparse import PruningConfig
from vissparse.hf import compiled
from vissparse.hf.pipeline import HFPipeline
from vissparse.testing import tiny_model


def test_compile_refuses_a_transformers_without_max_cache_len(monkeypatch) -> None:
    monkeypatch.setattr(compiled, "static_cache_sizable", lambda: False)
    model, processor = tiny_model("llava")
    with pytest.raises(ValueError, match=r"^`compile=True` needs transformers >= 5\.13 "):
        HFPipeline(model, processor, PruningConfig(keep_ratio=0.5, compile=True))
    HFPipeline(model, processor, PruningConfig(keep_ratio=0.5))  # compile=False still runs


def test_static_cache_sizable_follows_the_installed_transformers() -> None:
    major, minor = (int(x) for x in transformers.__version__.split(".")[:2])
    assert compiled.static_cache_sizable() == ((major, minor) >= (5, 13))
