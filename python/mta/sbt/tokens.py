"""Token offsets of the thinking, and the tokens that overlap character spans.

κ counts tokens, so the thinking is tokenised once into ``(start, end)`` character offsets;
marker tokens are then counted by bisection over the offsets (vectorised for an offsets
array). The tokenizer dominates the cost of scoring: pass offsets from the generator to
skip it.
"""

from __future__ import annotations

from bisect import bisect_right
from operator import itemgetter

__all__ = ["token_offsets", "batch_token_offsets", "covered_token_starts", "count_covered_tokens"]

def _fast_tokenizer(tokenizer):
    """The ``tokenizers.Tokenizer`` behind ``tokenizer``, or None (a slow tokenizer)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None and hasattr(tokenizer, "encode") and hasattr(tokenizer, "encode_batch"):
        backend = tokenizer  # a tokenizers.Tokenizer
    return backend


def token_offsets(tokenizer, text: str) -> list[tuple[int, int]]:
    """``(start, end)`` character offsets of ``text``'s tokens (no special tokens added).

    Accepts a transformers fast tokenizer or a ``tokenizers.Tokenizer``.
    """
    backend = _fast_tokenizer(tokenizer)
    if backend is not None:
        return backend.encode(text, add_special_tokens=False).offsets
    if callable(tokenizer):
        try:
            return list(tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"])
        except (NotImplementedError, KeyError, TypeError) as exc:
            raise TypeError("tokenizer must be a fast tokenizer (it must return offsets)") from exc
    raise TypeError(f"tokenizer must be a transformers fast tokenizer or a tokenizers.Tokenizer, "
                    f"got {type(tokenizer).__name__}")


def batch_token_offsets(tokenizer, texts: list[str]) -> list[list[tuple[int, int]]]:
    """:func:`token_offsets` of every text, in one ``encode_batch`` call (the Rust tokenizer
    spreads a batch over its thread pool; same offsets as one call per text)."""
    backend = _fast_tokenizer(tokenizer)
    if backend is None:
        return [token_offsets(tokenizer, t) for t in texts]
    return [enc.offsets for enc in backend.encode_batch(list(texts), add_special_tokens=False)]


_END = itemgetter(1)  # key of bisection over (start, end) offsets


def _covered_token_range(offsets, spans):
    """``(i0, i1)`` index ranges of the tokens overlapping the disjoint sorted ``spans``.

    Offsets are sorted by start and by end. The first token ending after a span's start is
    found by bisection on the offsets themselves (no per-token list is built), the tokens
    starting before its end by a walk (a marker covers a few tokens).
    """
    last, n = 0, len(offsets)
    for a, b in spans:
        i0 = bisect_right(offsets, a, last, key=_END)
        i1 = i0
        while i1 < n and offsets[i1][0] < b:
            i1 += 1
        if i1 > i0:
            yield i0, i1
            last = i1


def covered_token_starts(offsets, spans) -> list[int]:
    """Sorted start offsets of the tokens overlapping any of the disjoint sorted ``spans``."""
    return [offsets[i][0] for i0, i1 in _covered_token_range(offsets, spans) for i in range(i0, i1)]


def count_covered_tokens(offsets, spans) -> int:
    """``len(covered_token_starts(offsets, spans))``, without the lists; vectorised when the
    offsets are an array (``np.searchsorted`` for all spans at once)."""
    if not isinstance(offsets, (list, tuple)):
        import numpy as np

        arr = np.asarray(offsets)
        if arr.size == 0 or not spans:
            return 0
        if arr.ndim != 2 or arr.shape[1] != 2:
            raise ValueError(f"offsets: expected (start, end) pairs, got an array of shape {arr.shape}")
        sp = np.asarray(spans)
        i0 = np.searchsorted(arr[:, 1], sp[:, 0], side="right")  # first token ending after a
        i1 = np.searchsorted(arr[:, 0], sp[:, 1], side="left")   # first token starting at/after b
        # the union of the index ranges [i0, i1): ranges are sorted, so each one only adds
        # what lies past the largest end before it
        before = np.maximum.accumulate(np.concatenate(([0], i1[:-1])))
        return int(np.maximum(0, i1 - np.maximum(i0, before)).sum())
    return sum(i1 - i0 for i0, i1 in _covered_token_range(offsets, spans))
