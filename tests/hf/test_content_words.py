"""The content-word mask: function words and punctuation out, sub-words with their word."""

import pytest
import torch

from vissparse.content_words import (
    FUNCTION_WORDS,
    attach_content_mask,
    content_mask_of,
    content_or_prompt,
    content_spans,
    content_token_flags,
    content_word_flags,
)
from vissparse.hf.inputs import prompt_token_flags
from vissparse.testing import (
    gemma_tokenizer,
    internvl_tokenizer,
    llava_tokenizer,
    qwen3_5_tokenizer,
    qwen_tokenizer,
    random_image,
    tiny_model,
)

PROMPT = "What's the colour of the big red car, left of the tree?"
CONTENT = ["colour", "big", "red", "car", "left", "tree"]


def test_words_spans_and_function_words():
    assert [PROMPT[a:b] for a, b in content_spans(PROMPT)] == CONTENT
    text = "USER: <image>\nIs there a dog? ASSISTANT:"
    start = text.index("Is")
    assert [text[a:b] for a, b in content_spans(text, (start, start + 15))] == ["dog"]
    assert {"the", "of", "what", "is", "s", "there"} <= FUNCTION_WORDS
    assert not {"colour", "left", "car", "red"} & FUNCTION_WORDS
    assert content_word_flags(["What", "DOG", "?", "(cat)", "the"]) == [
        False, True, False, True, False,
    ]  # fmt: skip


def test_token_flags_keep_sub_words_and_drop_punctuation():
    # "ca" + "r" are one word; "," and a lone space overlap no word; (9, 9) is special
    offsets = [(0, 2), (2, 3), (3, 4), (4, 5), (5, 8), (9, 9)]
    assert content_token_flags(offsets, [(0, 3), (5, 8)]) == [True, True, False, False,
                                                               True, False]  # fmt: skip


TOKENIZERS = {"llava": llava_tokenizer, "qwen": qwen_tokenizer, "qwen3_5": qwen3_5_tokenizer,
              "gemma3": gemma_tokenizer, "internvl": internvl_tokenizer}  # fmt: skip


def _content_text(tok, text, span):
    ids = tok(text)["input_ids"]
    prompt, content = prompt_token_flags(tok, text, span, ids, image_token_id=-1)
    assert all(p for p, c in zip(prompt, content, strict=True) if c)  # content within prompt
    return tok.decode([i for i, c in zip(ids, content, strict=True) if c])


@pytest.mark.parametrize("name", sorted(TOKENIZERS))
def test_every_tiny_tokenizer_marks_the_content_words(name):
    """The tiny families' tokenizers are character-level: every piece of a word counts."""
    tok = TOKENIZERS[name]()
    text = f"SYSTEM the red car. USER: {PROMPT} ASSISTANT:"
    start = text.index(PROMPT)
    got = _content_text(tok, text, (start, start + len(PROMPT)))
    assert got.replace(" ", "") == "".join(CONTENT)  # the template's "red car" is not prompt


def test_the_testbed_word_tokenizer():
    from vissparse.testbed.models import LLAVA_CHAT_TEMPLATE, LLAVA_SPECIALS, word_tokenizer

    tok = word_tokenizer(LLAVA_SPECIALS, LLAVA_CHAT_TEMPLATE, unk_token="<unk>")
    question = "What color is the object left of the red square?"
    got = _content_text(tok, question, (0, len(question)))
    assert got.split() == ["color", "object", "left", "red", "square"]


def test_a_row_without_content_words_keeps_its_prompt():
    prompt = torch.tensor([[False, True, True], [True, True, False]])
    content = torch.tensor([[False, False, True], [False, False, False]])
    assert content_or_prompt(content, prompt).tolist() == [[False, False, True],
                                                           [True, True, False]]  # fmt: skip
    with pytest.raises(ValueError, match="`content_mask` must have the shape"):
        content_or_prompt(torch.zeros(1, 2, dtype=torch.bool), prompt)


def test_the_mask_travels_with_the_prompt_mask_only():
    mask = torch.ones(1, 3, dtype=torch.bool)
    content = torch.tensor([[True, False, False]])
    assert content_mask_of(attach_content_mask(mask, content)) is content
    assert content_mask_of(mask[:, :2]) is None
    with pytest.raises(ValueError, match="`content_mask`"):
        attach_content_mask(mask, content[:, :2])


def _spy_on_packing(monkeypatch):
    """The masks the pipeline packs, in the sequence's columns, and what the scorer gets."""
    import vissparse.hf.pipeline as hf_pipeline
    from vissparse.query import pack_words

    seen, packed = [], []

    def spy(hidden, prompt_mask, width, content_mask=None):
        seen.append((prompt_mask.clone(), content_mask))
        packed.append(pack_words(hidden, prompt_mask, width, content_mask))
        return packed[-1]

    monkeypatch.setattr(hf_pipeline, "pack_words", spy)
    return seen, packed


@pytest.mark.parametrize("family", ["llava", "qwen2_vl"])
def test_the_hf_pipeline_fills_the_context(family, monkeypatch):
    """Regression: the HF pipeline left ``PruningContext.content_mask`` empty."""
    from vissparse.config import PruningConfig
    from vissparse.hf.pipeline import HFPipeline
    from vissparse.strategies.cosine import CosineScorer

    seen, packed = _spy_on_packing(monkeypatch)
    given = []

    class Spy(CosineScorer):
        def score_context(self, ctx):
            given.append((ctx.prompt_embeddings, ctx.prompt_mask, ctx.content_mask))
            return super().score_context(ctx)

    model, processor = tiny_model(family)
    scorer = Spy(words="content", aggregate="max")
    pipe = HFPipeline(model, processor, PruningConfig(keep_ratio=0.5, scorer=scorer))
    prompts = ["Is the dog red?", "What is it?"]  # the second has no content word
    inputs, prompt_mask, _, _ = pipe._encode([random_image(), random_image(seed=1)], prompts)
    pipe.prune(inputs, prompt_mask)
    (prompt, content), tok = seen[0], processor.tokenizer
    ids = inputs["input_ids"]
    assert tok.decode(ids[0][content[0]]).replace(" ", "") == "dogred"
    assert torch.equal(content[1], prompt[1])  # no content word: the whole prompt
    assert tok.decode(ids[1][prompt[1]]) == "What is it?"
    # the scorer gets the words alone, packed into the fewest columns the shapes allow
    words, word_mask, word_content = given[0]
    assert words.shape[1] < ids.shape[1] and torch.equal(word_mask.sum(1), prompt.sum(1))
    assert all(torch.equal(a, b) for a, b in zip(given[0], packed[0], strict=True))
    assert torch.equal(word_content.sum(1), content.sum(1))


def test_the_llm_stage_sees_the_content_words_in_its_columns(monkeypatch):
    """Regression: inside the language model the content mask was lost after a drop."""
    from vissparse.config import PruningConfig
    from vissparse.hf.pipeline import HFPipeline
    from vissparse.strategies.cosine import CosineScorer

    seen, _ = _spy_on_packing(monkeypatch)
    model, processor = tiny_model("llava")
    config = PruningConfig(keep_ratio=0.25, scorer=CosineScorer(words="content"), stage="llm",
                           layer=(0, 1))  # fmt: skip
    pipe = HFPipeline(model, processor, config)
    inputs, prompt_mask, _, _ = pipe._encode(random_image(), "Is the dog red?")
    pipe.prune(inputs, prompt_mask)
    (prompt, content), (later_prompt, later) = seen
    words = inputs["input_ids"][0][content[0].to(inputs["input_ids"].device)]
    assert processor.tokenizer.decode(words).replace(" ", "") == "dogred"
    assert not (content & ~prompt).any()
    # the second stage runs on fewer columns; the same words, among its prompt's
    assert later.shape[1] < content.shape[1]
    assert int(later.sum()) == int(content.sum()) and not (later & ~later_prompt).any()
