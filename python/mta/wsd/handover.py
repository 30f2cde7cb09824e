"""The hand-over between two tokenizers: the draft travels as text.

The drafter and the base model may split text differently (SmolLM2's 49k BPE, Gemma's 262k
vocabulary), so draft token ids mean nothing to the base model. The draft is decoded to
text, re-encoded by the base tokenizer (what the base model scores and continues), and the
switch point, counted in base tokens, is mapped back to text and to drafter tokens.
"""

from __future__ import annotations

from collections.abc import Sequence

from mta.generation.stops import trim_text

__all__ = ["drafter_tokens_covering", "encode_drafts", "join_texts"]


def encode_drafts(base_tokenizer, draft_texts: Sequence[str]) -> list[list[int]]:
    """Each draft text in the base model's tokens, without special tokens (the prompt
    already carries BOS); one batched tokenizer call."""
    if not draft_texts:
        return []
    encoded = base_tokenizer(list(draft_texts), add_special_tokens=False)["input_ids"]
    return [list(ids) for ids in encoded]


def join_texts(
    base_tokenizer, kept_ids: Sequence[int], base_ids: Sequence[int], stop: Sequence[str] = ()
) -> tuple[str, str, str]:
    """``(text, kept_text, base_text)``: the response decoded in one piece, the kept prefix,
    and the continuation as the part of ``text`` after that prefix, cut before the first of
    the ``stop`` strings it holds (as :func:`mta.generate` cuts its texts).

    Decoding the two pieces together keeps what a tokenizer does at the seam (a continuation
    token's leading space, a UTF-8 character split across the two) as the base model meant it.
    """
    kept_text = base_tokenizer.decode(list(kept_ids), skip_special_tokens=True)
    if not base_ids:
        return kept_text, kept_text, ""
    text = base_tokenizer.decode(list(kept_ids) + list(base_ids), skip_special_tokens=True)
    if text.startswith(kept_text):
        head = len(kept_text)
    else:  # the seam changed the prefix's last character: the continuation is the tail
        head = max(len(text) - len(base_tokenizer.decode(list(base_ids), skip_special_tokens=True)), 0)
    base_text = trim_text(text[head:], list(stop))
    return text[:head] + base_text, kept_text, base_text


def drafter_tokens_covering(drafter_tokenizer, draft_ids: Sequence[int], kept_text: str) -> int:
    """The largest ``k`` such that the first ``k`` drafter tokens decode to a prefix of
    ``kept_text``: how much of the drafter's own output the kept text holds.

    A bisection (about ``log2(len(draft_ids))`` decodes): decoded prefixes of a draft grow
    with ``k``, so the test is monotone except where a prefix ends inside a multi-byte
    character, which can only make the answer a token short.
    """
    lo, hi = 0, len(draft_ids)  # invariant: prefix lo fits; answer in [lo, hi]
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if kept_text.startswith(drafter_tokenizer.decode(list(draft_ids[:mid]), skip_special_tokens=True)):
            lo = mid
        else:
            hi = mid - 1
    return lo
