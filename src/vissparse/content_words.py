"""The user's content words: which prompt tokens name something a picture can show.

A prompt's function words ("what", "is", "the", "of") and punctuation point at no part
of an image, yet they enter the mean prompt embedding, where they pull the query towards
whatever all tokens share (published work agrees: EADP finds function words give a noise
floor, MMTok drops a stoplist before matching words to image tokens). This module marks
the content words of a prompt, for any tokenizer:

- a *word* is a maximal run of letters or digits, so punctuation is never
  a word and "what's" is the two words "what" and "s";
- a word is a *function word* if its lower case is in :data:`FUNCTION_WORDS`, a fixed
  English list (closed-class words plus the boilerplate of VQA prompts), else a content
  word;
- a token is a content token if its characters overlap a content word: every sub-word
  piece belongs to its word, a punctuation-only token overlaps no word.

:func:`content_or_prompt` gives a row with no content word its whole prompt back, so a
prompt such as "What is this?" still has a query. Pure Python and tensor code.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = [
    "FUNCTION_WORDS", "attach_content_mask", "content_mask_of", "content_or_prompt",
    "content_spans", "content_token_flags", "content_word_flags", "is_content_word",
]  # fmt: skip

# Closed-class English words (articles, determiners, quantifiers, pronouns, auxiliaries
# and modals, prepositions, conjunctions, wh-words, negation and degree adverbs), the
# contraction tails the word rule splits off, and the boilerplate of VQA prompts (the
# lmms-eval answer instructions MMTok strips, "image"/"picture" naming the whole input).
# Nouns and adjectives of place (left, right, top, side) are content words.
FUNCTION_WORDS = frozenset(
    """
    a an the this that these those there here some any each every all both either neither
    no none many much more most few fewer less least several other another such own same
    i me my mine myself you your yours yourself he him his himself she her hers herself
    it its itself we us our ours ourselves they them their theirs themselves one ones
    is am are was were be been being have has had having do does did doing done
    will would shall should can could may might must
    of in on at to for with by from into onto upon about over under above below
    between among through during before after behind near off out up down as than
    and or but nor so yet if then else because while although though whether
    what which who whom whose where when why how
    not very too also just only really quite please
    s t d ll m re ve
    question answer using use single word phrase option options letter given choice
    choices directly image picture photo photograph shown show tell describe look see
    """.split()
)

_WORD = re.compile(r"[^\W_]+")


def is_content_word(word: str) -> bool:
    """Whether ``word`` (one word, any case) is a content word.

    Example:
        >>> is_content_word("Car"), is_content_word("THE")
        (True, False)
    """
    return word.lower() not in FUNCTION_WORDS


def content_spans(text: str, span: tuple[int, int] | None = None) -> list[tuple[int, int]]:
    """Character ranges ``[start, end)`` of the content words of ``text[span]``.

    ``span`` (default: all of ``text``) is the user's prompt inside a templated text;
    the ranges are positions in ``text``.

    Example:
        >>> text = "What color is the red car?"
        >>> [text[a:b] for a, b in content_spans(text)]
        ['color', 'red', 'car']
    """
    start, end = (0, len(text)) if span is None else span
    return [(start + m.start(), start + m.end()) for m in _WORD.finditer(text[start:end])
            if is_content_word(m.group())]  # fmt: skip


def content_token_flags(
    offsets: Sequence[tuple[int, int]], spans: Sequence[tuple[int, int]]
) -> list[bool]:
    """Per token (character ``offsets`` from a tokenizer): does it overlap a content word?

    Sub-word pieces of a content word all overlap it; a token of spaces or punctuation
    overlaps none; a zero-width token (a special token) is never a content token.

    Example:
        >>> content_token_flags([(0, 4), (4, 7), (8, 11), (11, 12)], [(0, 7)])
        [True, True, False, False]
    """
    flags = []
    for s, e in offsets:
        flags.append(e > s and any(s < b and e > a for a, b in spans))
    return flags


def content_word_flags(words: Sequence[str]) -> list[bool]:
    """Per word of a word-level tokenizer's output: is it a content word?

    A "word" that holds no letter or digit (punctuation) is not.

    Example:
        >>> content_word_flags(["what", "color", "is", "the", "car", "?"])
        [False, True, False, False, True, False]
    """
    return [any(is_content_word(w) for w in _WORD.findall(word)) for word in words]


def content_or_prompt(content_mask: Tensor, prompt_mask: Tensor) -> Tensor:
    """``content_mask`` where its row marks a word, else that row's ``prompt_mask``.

    Fixed shapes, no host synchronisation.

    Example:
        >>> prompt = torch.tensor([[True, True], [True, True]])
        >>> content_or_prompt(torch.tensor([[False, True], [False, False]]), prompt).tolist()
        [[False, True], [True, True]]
    """
    if content_mask.shape != prompt_mask.shape:
        raise ValueError(
            f"`content_mask` must have the shape of `prompt_mask` {tuple(prompt_mask.shape)}, "
            f"got {tuple(content_mask.shape)}"
        )
    content = content_mask.to(prompt_mask.device).bool() & prompt_mask.bool()
    return torch.where(content.any(dim=-1, keepdim=True), content, prompt_mask.bool())


def attach_content_mask(prompt_mask: Tensor, content_mask: Tensor) -> Tensor:
    """Remember ``content_mask`` (same shape) on ``prompt_mask``; returns ``prompt_mask``.

    The pipelines hand a prompt mask from their input step to their pruning step through
    many callers (benchmarks, the facade); the content mask travels with it, as the host
    copies of :func:`vissparse.host_sync.keep_host_copy` do. A mask derived from it (a
    slice, a copy) does not carry it: :func:`content_mask_of` then gives ``None`` and a
    scorer uses the whole prompt.

    Example:
        >>> mask = attach_content_mask(torch.tensor([[True]]), torch.tensor([[False]]))
        >>> content_mask_of(mask).tolist(), content_mask_of(mask.clone())
        ([[False]], None)
    """
    if content_mask.shape != prompt_mask.shape:
        raise ValueError(
            f"`content_mask` must have the shape of `prompt_mask` {tuple(prompt_mask.shape)}, "
            f"got {tuple(content_mask.shape)}"
        )
    prompt_mask._vissparse_content = content_mask  # type: ignore[attr-defined]
    return prompt_mask


def content_mask_of(prompt_mask: Tensor) -> Tensor | None:
    """The content mask remembered on ``prompt_mask`` (:func:`attach_content_mask`), or None.

    Example:
        >>> content_mask_of(torch.tensor([[True]])) is None
        True
    """
    content = getattr(prompt_mask, "_vissparse_content", None)
    if isinstance(content, Tensor) and content.shape == prompt_mask.shape:
        return content
    return None
