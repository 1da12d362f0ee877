"""Synthetic CPU workload: planted image tokens, a mock VLM and its pipeline."""

from vissparse.mock.model import MockModelConfig, MockVLM, pooled_answer
from vissparse.mock.pipeline import MockOutput, MockPipeline
from vissparse.mock.samples import MockSample, MockSampleConfig, make_samples
from vissparse.mock.world import COLOURS, OBJECTS, MockWorld

__all__ = [
    "COLOURS",
    "OBJECTS",
    "MockModelConfig",
    "MockOutput",
    "MockPipeline",
    "MockSample",
    "MockSampleConfig",
    "MockVLM",
    "MockWorld",
    "make_samples",
    "pooled_answer",
]
