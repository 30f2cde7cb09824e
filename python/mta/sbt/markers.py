"""The paper's 26 overthinking markers and where they occur in a text.

Matching rule (documented because the paper gives a word list, not an algorithm):

* a marker is the phrase itself, matched case-insensitively at word boundaries
  (``(?<!\\w)`` / ``(?!\\w)``): "Butter" is not "But", "Hmmm" is not "Hmm" (it is "Hmmm");
  words of a multi-word marker are separated by spaces or tabs (never a step break), and
  "double-check" also matches "double check";
* ``anchor="sentence"`` (default, what the paper's markers are: discourse markers that
  open a reflection) keeps an occurrence only where a sentence or step starts: at the start
  of the text or of a line, after ``. ! ? : ;`` or ``…``, skipping opening quotes, brackets
  and markdown emphasis; and, chained, right after another kept marker and its punctuation
  ("Hmm, wait, let me check" is three markers; punctuation must separate them, so in
  "But maybe not" only "But" counts). "so, but" or "it might be" mid-sentence are
  ordinary words, not overthinking;
* ``anchor="anywhere"`` keeps every word-boundary occurrence, case-insensitively — what the
  braking kernel (``mk.MarkerTables.from_tokenizer``) counts online;
* overlapping or nested occurrences ("Let me just double-check" holds "Check") are merged,
  so a character — and a token — covered twice counts once.
"""

from __future__ import annotations

import re
from typing import NamedTuple

__all__ = ["SBT_MARKERS", "MarkerMatch", "find_markers", "marker_spans", "merge_spans"]

SBT_MARKERS: tuple[str, ...] = (
    "Another", "Backtrack", "But", "Check", "Going back", "Hmm", "Hmmm", "However", "Hold on",
    "Instead of", "Just to be thorough", "Just to make sure", "Let me check",
    "Let me just double-check", "Let me try another", "Let me verify", "Maybe",
    "Maybe I can consider", "Maybe I should consider", "Might", "Not sure", "Perhaps",
    "Recheck", "Retry", "Trace back", "Wait",
)

_OPENERS = " \t\"'*_([{“‘`"
_SENTENCE_END = ".!?:;…\n"
_CHAIN_PUNCT = ",.!?;:…—–- \t"


class MarkerMatch(NamedTuple):
    start: int
    end: int
    marker: str


def _phrase_regex(phrase: str) -> str:
    words = phrase.split()
    parts = [re.escape(w).replace(r"\-", "[- ]") for w in words]
    return r"[ \t]+".join(parts)


_CACHE: dict[tuple[str, ...], tuple[re.Pattern, list[str]]] = {}


def _compiled(markers: tuple[str, ...]) -> tuple[re.Pattern, list[str]]:
    hit = _CACHE.get(markers)
    if hit is None:
        alts = sorted(markers, key=len, reverse=True)  # longest first: "Maybe I can consider" over "Maybe"
        body = "|".join(f"(?P<m{i}>{_phrase_regex(m)})" for i, m in enumerate(alts))
        # the lookahead finds one (the longest) occurrence at every start position, so
        # overlapping occurrences that start at different positions are all seen
        pat = re.compile(rf"(?<!\w)(?=(?:{body})(?!\w))", re.IGNORECASE)
        hit = _CACHE[markers] = (pat, alts)
    return hit


def _at_sentence_start(text: str, pos: int, prev_end: int) -> bool:
    j = pos
    while j > 0 and text[j - 1] in _OPENERS:
        j -= 1
    if j == 0 or text[j - 1] in _SENTENCE_END:
        return True
    # chained after a kept marker: "Hmm, wait" / "Wait — maybe"
    if prev_end >= 0 and prev_end <= pos:
        between = text[prev_end:pos]
        return (all(c in _CHAIN_PUNCT + _OPENERS for c in between)
                and any(c in _CHAIN_PUNCT.strip() for c in between))
    return False


def find_markers(text: str, *, markers: tuple[str, ...] | list[str] = SBT_MARKERS,
                 anchor: str = "sentence") -> list[MarkerMatch]:
    """Every marker occurrence in ``text`` (see the module docstring for the rule).

    Parameters
    ----------
    text : str
        The text to search (usually a trace's thinking).
    markers : sequence of str
        Marker phrases; the paper's 26 by default.
    anchor : {"sentence", "anywhere"}
        Where an occurrence counts.

    Returns
    -------
    list of MarkerMatch
        ``(start, end, marker)`` character spans, in order of ``start``; may overlap.
    """
    if anchor not in ("sentence", "anywhere"):
        raise ValueError(f"anchor must be 'sentence' or 'anywhere', got {anchor!r}")
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    if isinstance(markers, str) or not markers or not all(isinstance(m, str) and m.strip() for m in markers):
        raise ValueError("markers must be a non-empty sequence of non-empty strings")
    pat, alts = _compiled(tuple(markers))
    out: list[MarkerMatch] = []
    prev_end = -1
    for m in pat.finditer(text):
        group = m.lastgroup
        start, end = m.span(group)
        name = alts[int(group[1:])]
        if anchor == "sentence":
            if not _at_sentence_start(text, start, prev_end):
                continue
        out.append(MarkerMatch(start, end, name))
        prev_end = max(prev_end, end)
    return out


def merge_spans(spans) -> list[tuple[int, int]]:
    """Union of ``(start, end)`` spans as sorted, disjoint spans."""
    merged: list[list[int]] = []
    for s, e in sorted((int(s), int(e)) for s, e, *_ in spans):
        if merged and s <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], e)
        else:
            merged.append([s, e])
    return [(s, e) for s, e in merged]


def marker_spans(text: str, **kwargs) -> list[tuple[int, int]]:
    """Disjoint character spans covered by at least one marker occurrence."""
    return merge_spans(find_markers(text, **kwargs))
