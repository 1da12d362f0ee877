"""Shared test set-up: Hypothesis profiles and tiny-model fixtures."""

import os
from collections.abc import Iterator

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach a hub; set before HF imports

import pytest
import torch
from hypothesis import HealthCheck, settings

# "ci" keeps the property suite well under a minute on 2 cores; "dev" searches harder.
settings.register_profile(
    "ci", max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "dev", max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))

torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture
def fresh_dynamo() -> Iterator[None]:
    """A test of the compiled path starts and ends with dynamo's caches and counters empty."""
    import torch._dynamo
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    yield
    torch._dynamo.reset()
