"""The plugin's engine settings: what `hf_overrides={"vissparse": ...}` accepts, and refuses."""

import pytest

from vissparse.strategies.base import TokenScorer
from vissparse.vllm.settings import ServeSettings, settings_of


class _Config:
    def __init__(self, **kw):
        self.__dict__.update(kw)


class Middle(TokenScorer):
    """A user's scorer: keeps the tokens nearest the middle of the row."""

    name = "middle-test"

    def score(self, image_tokens, query, valid=None):
        n = image_tokens.shape[1]
        import torch

        return (
            -(torch.arange(n, dtype=torch.float32) - n / 2).abs().expand(image_tokens.shape[0], n)
        )


def test_no_settings_means_the_plugin_stays_out():
    assert settings_of(_Config()) is None


def test_settings_parse_and_build_the_same_core_as_the_hf_path():
    settings = ServeSettings.parse({"keep_ratio": 0.25, "scorer": "divprune"})
    assert (settings.keep_ratio, settings.scorer, settings.strategy) == (0.25, "divprune", "topk")
    assert settings.core().name == "divprune"
    assert ServeSettings.parse({"keep_ratio": 1}).scorer == "cosine"


def test_user_scorer_by_import_path():
    core = ServeSettings.parse({"keep_ratio": 0.5, "scorer": f"{__name__}:Middle"}).core()
    assert isinstance(core.scorer, Middle)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"keep_ratio": 0.01}, "`vissparse.keep_ratio` must be a real number in [0.05, 1.0]"),
        ({"scorer": "cosine"}, "`vissparse.keep_ratio` is required"),
        ({"keep_ratio": 0.1, "scorer": "nope"}, "`vissparse.scorer`"),
        ({"keep_ratio": 0.1, "scorer": "visionzip"}, "inside the vision encoder"),
        ({"keep_ratio": 0.1, "scorer": "prumerge+"}, "inside the vision encoder"),
        ({"keep_ratio": 0.1, "scorer": "random"}, "per-sample random keys"),
        ({"keep_ratio": 0.1, "scorer": "fastv"}, "`vissparse.scorer`"),
        ({"keep_ratio": 0.1, "scorer": "downsample"}, "resize the images before they reach"),
        ({"keep_ratio": 0.1, "stage": "llm"}, "`vissparse.stage` is not supported"),
        ({"keep_ratio": 0.1, "mode": "mask"}, "`vissparse.mode` is not supported"),
        ({"keep_ratio": 0.1, "kep": 1}, "`vissparse.kep` is not an option"),
        ({"keep_ratio": 0.1, "scorer": "no.such.module:X"}, "cannot be imported"),
        ({"keep_ratio": 0.1, "scorer": "builtins:dict"}, "is not a TokenScorer"),
    ],
)
def test_bad_settings_name_the_key(value, message):
    with pytest.raises((ValueError, TypeError)) as err:
        ServeSettings.parse(value)
    assert message in str(err.value)


def test_settings_must_be_a_dict():
    with pytest.raises(TypeError, match="`vissparse` in hf_overrides must be a dict"):
        ServeSettings.parse(0.1)
