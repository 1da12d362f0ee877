"""Length limits mean the same for the pruned call and the baseline, wherever they are set."""

import copy

import pytest
import torch
from transformers import GenerationConfig

from vissparse import VisSparse
from vissparse.testing import random_image, tiny_model

PROMPT = "What is it?"


@pytest.fixture(scope="module", params=["llava", "qwen2_vl"])
def tiny(request):
    return tiny_model(request.param)


@pytest.fixture
def setup(tiny):
    """The pruning facade, an image, the unpruned prompt length; the model's config restored."""
    model, processor = tiny
    saved = copy.deepcopy(model.generation_config)
    vs = VisSparse(base_model=model, processor=processor, keep_ratio=0.25)
    image = random_image(112, 112)
    length = vs.prepare_inputs(image=image, prompt=PROMPT)["input_ids"].shape[1]
    yield vs, image, length
    model.generation_config = saved


def _pass(vs, where, options):
    """``options`` set as keywords, in a ``generation_config=``, or on the model's config."""
    if where == "keyword":
        return dict(options)
    if where == "generation_config":
        return {"generation_config": GenerationConfig(**options)}
    for key, value in options.items():
        setattr(vs.model.generation_config, key, value)
    return {}


def _new_tokens(vs, monkeypatch, image, **kwargs):
    """New tokens of the pruned call and of its baseline, in one measured call."""
    pipe, baselines = vs.pipeline, []
    original = pipe._generate_baseline

    def baseline(*args, **options):
        baselines.append(original(*args, **options))
        return baselines[-1]

    monkeypatch.setattr(pipe, "_generate_baseline", baseline)
    monkeypatch.setattr(pipe, "_warm", True)  # no untimed warm-up calls
    details = vs.generate(image=image, prompt=PROMPT, measure_baseline=True, **kwargs)
    return details.sequences.shape[1], baselines[-1].shape[1]


@pytest.mark.parametrize("where", ["keyword", "generation_config", "model"])
@pytest.mark.parametrize(
    ("options", "expected"),
    [({"max_length": 5, "min_length": 5}, 5),  # totals, on top of the prompt
     ({"max_new_tokens": 3, "min_new_tokens": 3, "max_length": 9}, 3),  # max_new_tokens wins
     ({"min_new_tokens": 4, "max_length": 4}, 4)],
)  # fmt: skip
def test_length_limits_mean_the_same_on_both_sides(setup, monkeypatch, where, options, expected):
    vs, image, length = setup
    options = {k: v + length if k in ("max_length", "min_length") else v
               for k, v in options.items()}  # fmt: skip
    own = copy.deepcopy(vs.model.generation_config)
    kwargs = _pass(vs, where, options)
    given = copy.deepcopy(kwargs.get("generation_config"))
    inputs = vs.prepare_inputs(image=image, prompt=PROMPT)
    with torch.inference_mode():  # what the model's own generate makes of the limits
        assert vs.model.generate(**inputs, **kwargs).shape[1] == length + expected
    vs.pipeline.adapter.reset_state()
    assert _new_tokens(vs, monkeypatch, image, **kwargs) == (expected, expected)
    if given is not None:  # a generation_config passed in is not changed
        assert kwargs["generation_config"].to_dict() == given.to_dict()
    if where != "model":  # nor is the model's own (set here for the "model" case)
        assert vs.model.generation_config.to_dict() == own.to_dict()


def test_model_generation_config_is_back_after_the_call_and_after_an_error(setup):
    vs, image, length = setup
    vs.model.generation_config.max_length = length + 3
    vs.model.generation_config.min_length = length + 3
    before = vs.model.generation_config.to_dict()
    assert vs.generate(image=image, prompt=PROMPT, return_details=True).sequences.shape[1] == 3
    assert vs.model.generation_config.to_dict() == before
    with pytest.raises(ValueError, match="strictly positive"):  # from HF, mid-call
        vs.generate(image=image, prompt=PROMPT, repetition_penalty=-1.0)
    assert vs.model.generation_config.to_dict() == before


def test_max_length_none_is_as_if_not_given(setup, monkeypatch):
    vs, image, length = setup
    out = vs.generate(image=image, prompt=PROMPT, max_length=None, max_new_tokens=2,
                      min_new_tokens=2, return_details=True)  # fmt: skip
    assert out.sequences.shape[1] == 2
    vs.model.generation_config.min_length = length + 20
    assert _new_tokens(vs, monkeypatch, image, max_length=None) == (20, 20)  # HF's default
    vs.model.generation_config.max_length = length + 4
    assert _new_tokens(vs, monkeypatch, image, max_length=None) == (4, 4)


@pytest.mark.parametrize("where", ["keyword", "generation_config", "model"])
def test_a_limit_that_leaves_no_room_is_named_with_its_source(setup, where):
    vs, image, length = setup
    kwargs = _pass(vs, where, {"max_length": length})
    source = {"keyword": "", "generation_config": " \\(from generation_config\\)",
              "model": " \\(from model.generation_config\\)"}[where]  # fmt: skip
    with pytest.raises(ValueError, match=f"^`max_length`{source}={length} leaves no room"):
        vs.generate(image=image, prompt=PROMPT, **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [({"generation_config": {"max_new_tokens": 2}}, TypeError, "`generation_config` must be"),
     ({"min_length": -1}, ValueError, "`min_length` must be an int >= 0"),
     ({"max_length": 2.5}, ValueError, "`max_length` must be an int >= 1"),
     ({"generation_config": GenerationConfig(num_return_sequences=2, do_sample=True)}, ValueError,
      r"`num_return_sequences` \(from generation_config\) must be 1"),
     ({"cache_implementation": "paged"}, ValueError, "`cache_implementation`='paged'")],
)  # fmt: skip
def test_options_vissparse_cannot_honour_are_named(setup, kwargs, error, match):
    vs, image, _ = setup
    with pytest.raises(error, match=match) as err:
        vs.generate(image=image, prompt=PROMPT, max_new_tokens=1, **kwargs)
    assert "\n" not in str(err.value)


def test_pruned_prompt_ids_reach_the_logits_processors(setup):
    """Drop mode hands generate the kept tokens' ids; mask mode the whole prompt's."""
    vs, image, _ = setup
    seen = []

    def record(batch_id, input_ids):
        seen.append(input_ids.clone())
        return list(range(vs.model.config.get_text_config().vocab_size))

    pipe = vs.pipeline
    inputs, prompt_mask, _, _ = pipe._encode(image, PROMPT)
    pruned = pipe.prune(inputs, prompt_mask)
    vs.generate(image=image, prompt=PROMPT, max_new_tokens=2, prefix_allowed_tokens_fn=record)
    ids = inputs["input_ids"][0]
    is_image = ids == pipe.adapter.image_token_id
    keep = torch.ones_like(ids, dtype=torch.bool)
    keep[is_image] = pruned.image_keep[0]
    assert torch.equal(seen[0], ids[keep])  # the prompt as the model is fed it
    assert int((seen[0] == pipe.adapter.image_token_id).sum()) == pruned.n_kept[0]


def test_drop_equals_mask_under_prompt_reading_options(tiny):
    """Drop mode's ids leave out only repeats of the image token: the same penalties."""
    model, processor = tiny
    image = random_image(112, 112)
    options = {"repetition_penalty": 3.0, "no_repeat_ngram_size": 2, "max_new_tokens": 6}
    out = {}
    for mode in ("drop", "mask"):
        vs = VisSparse(base_model=model, processor=processor, keep_ratio=0.25, mode=mode)
        out[mode] = vs.generate(image=image, prompt=PROMPT, return_details=True, **options)
    assert torch.equal(out["drop"].sequences, out["mask"].sequences)
    assert out["drop"].metrics["kv_cache_tokens"] < out["mask"].metrics["kv_cache_tokens"]


def test_llm_stage_refusals_read_every_source(tiny):
    model, processor = tiny
    vs = VisSparse(base_model=model, processor=processor, keep_ratio=0.25, stage="llm",
                   layer=1, scorer="fastv")  # fmt: skip
    image = random_image(112, 112)
    beams = GenerationConfig(num_beams=2, max_new_tokens=2)
    with pytest.raises(ValueError, match=r"^`num_beams` \(from generation_config\) must be 1"):
        vs.generate(image=image, prompt=PROMPT, generation_config=beams)
    saved = model.generation_config.use_cache
    model.generation_config.use_cache = False
    try:
        with pytest.raises(ValueError, match=r"^`use_cache` \(from model.generation_config\)"):
            vs.generate(image=image, prompt=PROMPT, max_new_tokens=2)
    finally:
        model.generation_config.use_cache = saved
