"""The user's prompt inside a vLLM prompt: the token ids a text-conditioned method reads.

vLLM hands the multimodal processor the whole prompt as token ids, chat template and all.
The HF path's query is the mean embedding of the user's prompt tokens only (no template
or special tokens, :mod:`vissparse.query`). Here they are the tokens after the prompt's
last image placeholder, less what the model's chat template writes between an image and
the user's text (LLaVA's newline) and after it (the assistant turn), less special tokens.
For a prompt built with the model's chat template (``LLM.chat``, ``vllm serve``'s chat
endpoint, or ``apply_chat_template``) these are the HF path's prompt tokens. Pure Python.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

_SENTINEL = "VISSPARSEQUERYSENTINEL"


@dataclass(frozen=True)
class TemplateParts:
    """Token ids the chat template puts between an image and the prompt, and after it.

    Example:
        >>> parts = TemplateParts(between=(9,), suffix=(7, 8))
        >>> query_ids([1, 5, 9, 20, 21, 7, 8], image_token_id=5, parts=parts, special=())
        [20, 21]
    """

    between: tuple[int, ...] = ()
    suffix: tuple[int, ...] = ()

    @classmethod
    def from_template(cls, owner: Any, tokenizer: Any, image_placeholder: str) -> TemplateParts:
        """Render ``owner``'s chat template around one image and a sentinel, and split it.

        ``owner`` is whatever holds the chat template (the HF processor or the
        tokenizer). Without a template (or where it does not put the image before the
        prompt) both parts are empty: the query is every text token after the last image.
        """
        if not getattr(owner, "chat_template", None):
            return cls()
        messages = [{"role": "user", "content": [{"type": "image"},
                                                 {"type": "text", "text": _SENTINEL}]}]  # fmt: skip
        try:
            text = owner.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        except Exception:  # a template that refuses structured content: use the fallback
            return cls()
        if text.count(_SENTINEL) != 1 or image_placeholder not in text.split(_SENTINEL)[0]:
            return cls()
        before, after = text.split(_SENTINEL)
        between = before.rsplit(image_placeholder, 1)[1]
        return cls(_encode(tokenizer, between), _encode(tokenizer, after))


def query_ids(
    prompt_ids: Sequence[int], image_token_id: int, parts: TemplateParts, special: Sequence[int]
) -> list[int]:
    """The user's prompt tokens of ``prompt_ids`` (see the module docstring).

    Returns an empty list when the prompt has no image or no text after its last image.

    Example:
        >>> query_ids([3, 4, 5, 6], image_token_id=4, parts=TemplateParts(), special=(6,))
        [5]
    """
    ids = list(prompt_ids)
    if image_token_id not in ids:
        return []
    rest = ids[len(ids) - ids[::-1].index(image_token_id) :]
    between = list(parts.between)
    if between and rest[: len(between)] == between:
        rest = rest[len(between) :]
    suffix = list(parts.suffix)
    if suffix and rest[-len(suffix) :] == suffix:
        rest = rest[: -len(suffix)]
    banned = set(special) | {image_token_id}
    return [token for token in rest if token not in banned]


def _encode(tokenizer: Any, text: str) -> tuple[int, ...]:
    return tuple(tokenizer.encode(text, add_special_tokens=False)) if text else ()
