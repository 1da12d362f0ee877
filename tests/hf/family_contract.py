"""One contract, run on every model family (PEFT-style shared test mixin)."""

import pytest
import torch

from vissparse import PruningConfig
from vissparse.hf.pipeline import HFPipeline
from vissparse.strategies import kept_count
from vissparse.testing import random_image, tiny_model

GEN = {"max_new_tokens": 6, "min_new_tokens": 6, "do_sample": False}
SCORERS = [
    "cosine",
    "random",
    "divprune",
    "cosine-max",
    "pool",
    "uniform",
    "dart",
    "cdpruner",
    "visionzip",
    "prumerge+",
    "mmtok",
    "scope",
    "vispruner",
]
# not "downsample": it picks no tokens (each image is resized before the encoder, every
# token it emits kept), so the token-level contracts do not apply: tests/hf/test_downsample.py
# keep sets that can depend on the grid alone: pool and uniform always; prumerge+ when no
# token's [CLS] attention is an outlier (tiny random towers), then only its merging differs
GEOMETRIC = ("pool", "uniform", "prumerge+")
PROMPTS = ["What color is the car?", "Describe this picture in detail please.", "Count it."]


# generate options whose logits processors or stopping criteria read the prompt's ids
GENERATION_OPTIONS = ["repetition_penalty", "no_repeat_ngram_size", "bad_words_ids",
                      "min_length", "stop_strings", "sampling"]  # fmt: skip


def generation_options(option, greedy, processor, prompt_length):
    """``generate`` keywords that change ``greedy`` (the first tokens of a plain run)."""
    return {
        "repetition_penalty": {"repetition_penalty": 3.0},
        "no_repeat_ngram_size": {"no_repeat_ngram_size": 1},
        "bad_words_ids": {"bad_words_ids": [[greedy[0]], [greedy[1]]]},
        # stops at the second token without it; runs on to 5 tokens with it
        "min_length": {"eos_token_id": greedy[1], "min_length": prompt_length + 5},
        "stop_strings": {"stop_strings": [processor.tokenizer.decode(greedy[2])],
                         "tokenizer": processor.tokenizer},
        "sampling": {"do_sample": True, "top_k": 0, "temperature": 1.5},
    }[option]  # fmt: skip


def pipeline(model, processor, keep_ratio=0.25, mode="drop", scorer="cosine"):
    return HFPipeline(model, processor, PruningConfig(keep_ratio, scorer=scorer, mode=mode))


def hf_generate(model, inputs, **kwargs):
    out = model.generate(**inputs, **kwargs)
    model.model.__dict__.pop("rope_deltas", None)
    if hasattr(model.model, "rope_deltas"):
        model.model.rope_deltas = None
    return out[:, inputs["input_ids"].shape[1] :]


@torch.no_grad()
def first_logits(pipe, inputs, prompt_mask):
    """The next-token logits of the pruned prompt, fed as the pipeline feeds it."""
    pruned = pipe.prune(inputs, prompt_mask)
    with pipe.feeding(pruned):
        return pipe.model(**pruned.model_inputs()).logits[:, -1]


@pytest.fixture(scope="class")
def tiny(request):
    """One tiny model per test class (family), shared by its tests."""
    return tiny_model(request.cls.family, seed=request.cls.seed)


class FamilyContract:
    family: str
    seed = 0  # of the shared tiny model's weights
    # mask mode is the reference for drop mode (not on recurrent LMs: see test_qwen3_5)
    mask_reference = True
    # (height, width) of the test images; families differ in what sizes make sense
    sizes = ((112, 112), (84, 112), (56, 84))

    def images(self):
        return [random_image(h, w, seed=i) for i, (h, w) in enumerate(self.sizes)]

    def test_keep_ratio_one_matches_unwrapped_generate(self, tiny):
        model, processor = tiny
        pipe = pipeline(model, processor, keep_ratio=1.0)
        cases = [(img, p) for img, p in zip(self.images(), PROMPTS, strict=True)]
        cases.append((self.images()[:2], "Compare the two images."))
        for image, prompt in cases:
            inputs = pipe.prepare_inputs(image, prompt)
            expected = hf_generate(model, inputs, **GEN)
            details = pipe.generate(image, prompt, return_details=True, **GEN)
            assert torch.equal(details.sequences, expected)
            assert details.metrics["n_kept"] == details.metrics["n_image_tokens"]

    @pytest.mark.parametrize("option", GENERATION_OPTIONS)
    def test_keep_ratio_one_matches_unwrapped_generate_with_options(self, tiny, option):
        """Logits processors and stopping criteria see the prompt as without VisSparse."""
        model, processor = tiny
        image, prompt = self.images()[0], PROMPTS[0]
        inputs = pipeline(model, processor, keep_ratio=1.0).prepare_inputs(image, prompt)
        greedy = hf_generate(model, inputs, **GEN)[0].tolist()
        kwargs = generation_options(option, greedy, processor, inputs["input_ids"].shape[1])
        torch.manual_seed(0)
        expected = hf_generate(model, inputs, max_new_tokens=6, **kwargs)
        if option in ("bad_words_ids", "min_length", "stop_strings"):  # they must bite
            assert expected[0].tolist() != greedy
        for mode in ("drop", "mask") if self.mask_reference else ("drop",):
            pipe = pipeline(model, processor, keep_ratio=1.0, mode=mode)
            torch.manual_seed(0)
            details = pipe.generate(image, prompt, return_details=True, max_new_tokens=6,
                                    **kwargs)  # fmt: skip
            assert torch.equal(details.sequences, expected), mode
            assert details.metrics["n_kept"] == details.metrics["n_image_tokens"]

    @pytest.mark.parametrize("scorer", SCORERS)
    def test_drop_equals_mask(self, tiny, scorer):
        model, processor = tiny
        drop = pipeline(model, processor, 0.25, "drop", scorer=scorer)
        mask = pipeline(model, processor, 0.25, "mask", scorer=scorer)
        full = pipeline(model, processor, 1.0, "drop")
        for image, prompt in zip(self.images(), PROMPTS, strict=True):
            ids_drop = drop.generate(image, prompt, return_details=True, **GEN)
            ids_mask = mask.generate(image, prompt, return_details=True, **GEN)
            assert torch.equal(ids_drop.sequences, ids_mask.sequences)
            inputs, prompt_mask, _, _ = drop._encode(image, prompt)
            logits = {name: first_logits(p, inputs, prompt_mask)
                      for name, p in (("drop", drop), ("mask", mask), ("full", full))}  # fmt: skip
            torch.testing.assert_close(logits["drop"], logits["mask"], atol=1e-4, rtol=1e-4)
            # pruning does change the model's input: the equality above is not vacuous
            assert (logits["drop"] - logits["full"]).abs().max() > 1e-2

    def test_kv_cache_holds_text_and_kept_tokens(self, tiny):
        model, processor = tiny
        pipe = pipeline(model, processor, 0.25)
        image = self.images()[0]
        inputs, prompt_mask, _, _ = pipe._encode(image, PROMPTS[0])
        pruned = pipe.prune(inputs, prompt_mask)
        n_full = inputs["input_ids"].shape[1]
        n_text = n_full - pruned.n_image_tokens[0]
        with torch.no_grad(), pipe.feeding(pruned):
            cache = model(**pruned.model_inputs(), use_cache=True).past_key_values
        assert cache.get_seq_length() == n_text + pruned.n_kept[0] == pruned.kv_tokens[0]
        assert pruned.n_kept[0] < pruned.n_image_tokens[0]

    @pytest.mark.parametrize("scorer", SCORERS)
    def test_batch_matches_one_by_one(self, tiny, scorer):
        model, processor = tiny
        pipe = pipeline(model, processor, 0.25, scorer=scorer)
        images = self.images()
        batch = pipe.generate(images, PROMPTS, return_details=True, **GEN)
        assert len(batch.text) == 3 and len(batch.keep_mask) == 3
        for i, (image, prompt) in enumerate(zip(images, PROMPTS, strict=True)):
            alone = pipe.generate(image, prompt, return_details=True, **GEN)
            assert torch.equal(batch.sequences[i], alone.sequences[0])
            assert torch.equal(batch.keep_mask[i][0], alone.keep_mask[0])
        masks = {tuple(m[0].tolist()) for m in batch.keep_mask}
        if scorer not in GEOMETRIC:  # those depend on the grid only, which may be the same
            assert len(masks) == 3

    @pytest.mark.parametrize("keep_ratio", [0.05, 0.25])
    def test_every_image_token_counts_against_the_budget(self, tiny, keep_ratio):
        model, processor = tiny
        images = self.images()
        for scorer in SCORERS:
            pipe = pipeline(model, processor, keep_ratio, scorer=scorer)
            out = pipe.generate(images, PROMPTS, return_details=True, max_new_tokens=1)
            for masks in out.keep_mask:  # newline tokens included, merged tokens once
                assert int(masks[0].sum()) == kept_count(keep_ratio, masks[0].numel()), scorer
            metrics = out.metrics
            assert metrics["effective_keep_ratio"] == metrics["n_kept"] / metrics["n_image_tokens"]
            assert metrics["effective_keep_ratio"] <= keep_ratio + 1 / 16

    def test_layouts_cover_every_image_token_once(self, tiny):
        model, processor = tiny
        pipe = pipeline(model, processor, 0.25, scorer="pool")
        images = self.images()
        inputs = pipe.prepare_inputs(images, PROMPTS)
        emb = pipe.adapter.embed(inputs)
        for i, layout in enumerate(pipe.layouts(inputs, emb)):
            n = emb.image_positions[i].numel()
            count = torch.zeros(n, dtype=torch.long)
            for seg in layout.segments:
                count[seg.index.flatten()] += 1
            assert bool((count[layout.newline] == 0).all())
            assert torch.equal(layout.newline, ~emb.scorable[i].cpu())
            start = pipe.adapter.token_grid(inputs, i).start
            assert bool((count[start:][~layout.newline[start:]] == 1).all())

    def test_two_prompts_give_two_masks(self, tiny):
        model, processor = tiny
        pipe = pipeline(model, processor, 0.25)
        image = self.images()[0]
        a = pipe.generate(image, "What color is the car?", return_details=True, max_new_tokens=1)
        b = pipe.generate(image, "How many dogs?", return_details=True, max_new_tokens=1)
        assert not torch.equal(a.keep_mask[0], b.keep_mask[0])

    @pytest.mark.parametrize("attn", ["sdpa", "eager"])
    @pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
    def test_attention_implementations_and_dtypes(self, attn, dtype):
        model, processor = tiny_model(self.family, dtype=dtype, attn_implementation=attn)
        drop = pipeline(model, processor, 0.25, "drop")
        image = self.images()[0]
        out = drop.generate(image, PROMPTS[0], return_details=True, **GEN)
        assert out.sequences.shape == (1, 6)
        assert 0 < out.metrics["n_kept"] < out.metrics["n_image_tokens"]
        if dtype == torch.float32 and self.mask_reference:
            mask = pipeline(model, processor, 0.25, "mask")
            ref = mask.generate(image, PROMPTS[0], return_details=True, **GEN)
            assert torch.equal(out.sequences, ref.sequences)

    @pytest.mark.parametrize("scorer", ["cosine", "visionzip"])  # visionzip hooks the tower
    def test_no_state_leaks_between_calls(self, scorer):
        model, processor = tiny_model(self.family)
        pipe = pipeline(model, processor, 0.25, scorer=scorer)
        images = self.images()
        b_alone = pipe.generate(images[2], PROMPTS[2], return_details=True, **GEN).sequences
        model2, processor2 = tiny_model(self.family)
        pipe2 = pipeline(model2, processor2, 0.25, scorer=scorer)
        pipe2.generate(images[:2], PROMPTS[:2], **GEN)  # call A: a batch of two
        hf_generate(model2, pipe2.prepare_inputs(images[0], PROMPTS[0]), **GEN)  # unpruned too
        b_after = pipe2.generate(images[2], PROMPTS[2], return_details=True, **GEN).sequences
        assert torch.equal(b_alone, b_after)
        assert not any(m._forward_pre_hooks for m in model2.modules())  # signal hooks removed

    def test_generation_kwargs_pass_through(self, tiny):
        model, processor = tiny
        pipe = pipeline(model, processor, 0.25)
        image, prompt = self.images()[0], PROMPTS[0]
        short = pipe.generate(image, prompt, return_details=True, max_new_tokens=2)
        assert short.sequences.shape[1] <= 2
        sampled = []
        for _ in range(2):
            torch.manual_seed(7)
            sampled.append(pipe.generate(image, prompt, return_details=True, do_sample=True,
                                         max_new_tokens=5, min_new_tokens=5).sequences)  # fmt: skip
        assert torch.equal(sampled[0], sampled[1])
        first = int(pipe.generate(image, prompt, return_details=True, **GEN).sequences[0, 0])
        stopped = pipe.generate(image, prompt, return_details=True, max_new_tokens=6,
                                eos_token_id=first)  # fmt: skip
        assert stopped.sequences.shape[1] == 1
        full = pipeline(model, processor, 1.0)
        inputs = full.prepare_inputs(image, prompt)
        beams = {"num_beams": 2, "max_new_tokens": 4, "min_new_tokens": 4, "do_sample": False}
        expected = hf_generate(model, inputs, **beams)
        assert torch.equal(full.generate(image, prompt, return_details=True, **beams).sequences,
                           expected)  # fmt: skip

    def test_seeds_give_different_weights(self):
        a, _ = tiny_model(self.family, seed=0)
        b, _ = tiny_model(self.family, seed=1)
        wa, wb = a.get_input_embeddings().weight, b.get_input_embeddings().weight
        assert not torch.equal(wa, wb)
