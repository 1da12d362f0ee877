"""Fixtures of the testbed tests."""

import pytest

from vissparse.testbed.models import build_model


@pytest.fixture(scope="session")
def saved_untrained(tmp_path_factory):
    """An untrained testbed LLaVA saved like a trained one (eval mechanics only)."""
    out = tmp_path_factory.mktemp("untrained")
    model, processor = build_model("llava", seed=5)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out
