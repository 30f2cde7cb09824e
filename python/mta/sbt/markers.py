"""The paper's 26 overthinking markers and where they occur in a text.

Matching rule (documented because the paper gives a word list, not an algorithm):

* a marker is the phrase as the paper lists it, its first letter in either case ("Wait",
  "wait"; not "WAIT"), its words separated by single spaces as written, matched at word
  boundaries (``(?<!\\w)`` / ``(?!\\w)``): "Butter" is not "But", "Hmmmm" is not "Hmm".
  These are the variants the braking automaton (``mk.MarkerTables.from_tokenizer``) compiles,
  so the κ built into training data is the κ the braking controller measures while decoding
  (a test runs both on the sample traces with the same tokenizer);
* ``anchor="anywhere"`` (default; the paper's Eq. 2 counts every occurrence) keeps every
  occurrence, mid-sentence ones included ("But maybe I misread", "let me recheck");
* ``anchor="sentence"`` (an option) keeps an occurrence only where a sentence or step
  starts: at the start of the text or of a line, after ``. ! ? : ;`` or ``…``, skipping
  opening quotes, brackets and markdown emphasis; and, chained, right after another kept
  marker and its punctuation ("Hmm, wait, let me check" is three markers; punctuation must
  separate them, so in "But maybe not" only "But" counts);
* overlapping or nested occurrences ("Let me just double-check" holds "Check") are merged,
  so a character -- and a token -- covered twice counts once, as in the braking op.

Where the two sides can still differ: a byte-level BPE may split a longer word so that its
first token spells a marker (SmolLM2 writes " mightily" as " might" + "ily"): the automaton,
which sees tokens and cannot look ahead, counts it; the text rule, with its word boundary,
does not.

Speed: the rule is defined by trying the marker regex at every position of the text
(:func:`_find_markers_every_position`, kept as the reference). :func:`marker_spans` with
``anchor="anywhere"`` finds each variant's first word with ``str.find`` (a C search) and
checks the variants there (:func:`_anywhere_spans`); with ``anchor="sentence"`` and markers
that start with a letter or digit,
:func:`find_markers` only tries the positions that can pass the rule -- after a sentence
end (one C-level regex scan), at the start of the text, and right after the punctuation
that follows a kept marker -- which gives the same list (proof in
:func:`_sentence_occurrences`).
"""

from __future__ import annotations

import heapq
import os
import re
from typing import NamedTuple

__all__ = ["SBT_MARKERS", "MarkerMatch", "find_markers", "marker_spans", "merge_spans"]

#: The 26 overthinking markers of Self-Braking Tuning (arXiv 2505.14604). The same tuple is
#: mta_kernels.braking.SBT_MARKERS; it is spelled out here so that mta.sbt does not import
#: torch (fast CLI start, light process-pool workers). A test keeps the two equal.
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
    """The phrase as written, its first letter in either case (``[Ww]ait``)."""
    first = phrase[0]
    if first.upper() != first.lower():
        return f"[{re.escape(first.upper())}{re.escape(first.lower())}]" + re.escape(phrase[1:])
    return re.escape(phrase)


class _Compiled(NamedTuple):
    pat: re.Pattern            # zero-width: one (the longest) occurrence at a position
    alts: list[str]            # marker of group ``m{i}``
    # the fast path (None: a marker starts with an opener or punctuation): ``pat`` with the
    # occurrence as group "mk" and the chain-punctuation run after it as group "chain",
    # at a position (``at``) or after a sentence end and openers (``sentence``)
    at: re.Pattern | None
    sentence: re.Pattern | None
    # anywhere: per lower-cased first word, the lower-cased markers starting with it, longest
    # first, and each lower-cased marker as listed
    heads: tuple[tuple[str, tuple[str, ...]], ...]
    spellings: dict[str, frozenset]   # lower-cased marker -> its spellings (first letter in either case)


_CACHE: dict[tuple[str, ...], _Compiled] = {}
_CHAIN_CHARS = re.escape(_CHAIN_PUNCT + _OPENERS)
_OPENER_RUN = re.compile(f"[{re.escape(_OPENERS)}]*")


def _first_chars(markers) -> str:
    """Both cases of every marker's first character, for a quick-reject character class."""
    return "".join(sorted({re.escape(c) for m in markers for c in (m[0].upper(), m[0].lower())}))


def _heads(markers) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """The scan of :func:`_anywhere_spans`: lower-cased markers grouped by first word, each
    group searched by the longest prefix its markers share ("let me " for the four "Let me
    ..." markers, "hmm" for "Hmm" and "Hmmm"), with the group's markers longest first."""
    groups: dict[str, set[str]] = {}
    for m in markers:
        low = m.lower()
        groups.setdefault(low.split(" ")[0], set()).add(low)
    merged: dict[str, set[str]] = {}
    for word in sorted(groups, key=len):  # a first word that extends a shorter one joins it ("hmmm")
        base = next((w for w in merged if word.startswith(w)), word)
        merged.setdefault(base, set()).update(groups[word])
    return tuple((os.path.commonprefix(sorted(vs)), tuple(sorted(vs, key=len, reverse=True)))
                 for _, vs in sorted(merged.items()))


def _spellings(markers) -> dict[str, frozenset]:
    out: dict[str, frozenset] = {}
    for m in markers:
        out[m.lower()] = out.get(m.lower(), frozenset()) | {m[0].upper() + m[1:], m[0].lower() + m[1:]}
    return out


def _compiled(markers: tuple[str, ...]) -> _Compiled:
    hit = _CACHE.get(markers)
    if hit is None:
        alts = sorted(markers, key=len, reverse=True)  # longest first: "Maybe I can consider" over "Maybe"
        body = "|".join(f"(?P<m{i}>{_phrase_regex(m)})" for i, m in enumerate(alts))
        plain = "|".join(_phrase_regex(m) for m in alts)  # same alternatives, same order
        # the lookahead finds one (the longest) occurrence at every start position, so
        # overlapping occurrences that start at different positions are all seen
        pat = re.compile(rf"(?<!\w)(?=(?:{body})(?!\w))")
        # the first-character class is only a quick reject before the alternatives
        firsts = _first_chars(markers)
        at = sentence = None
        if all(m.strip()[0].isalnum() for m in markers):  # see _sentence_occurrences
            look = rf"(?<!\w)(?=(?P<mk>{plain})(?!\w)(?P<chain>[{_CHAIN_CHARS}]*))"
            at = re.compile(look)
            sentence = re.compile(rf"[{re.escape(_SENTENCE_END)}][{re.escape(_OPENERS)}]*(?=[{firsts}]){look}")
        hit = _CACHE[markers] = _Compiled(pat, alts, at, sentence, _heads(markers), _spellings(markers))
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


def _check_args(text, markers, anchor) -> _Compiled:
    if anchor not in ("sentence", "anywhere"):
        raise ValueError(f"anchor must be 'sentence' or 'anywhere', got {anchor!r}")
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    if isinstance(markers, (tuple, list)):
        try:
            hit = _CACHE.get(tuple(markers))  # compiled before, so checked before
        except TypeError:  # unhashable items: not strings, rejected below
            hit = None
        if hit is not None:
            return hit
    if isinstance(markers, str) or not markers or not all(isinstance(m, str) and m.strip() for m in markers):
        raise ValueError("markers must be a non-empty sequence of non-empty strings")
    return _compiled(tuple(markers))


def _find_markers_every_position(text: str, c: _Compiled, anchor: str) -> list[MarkerMatch]:
    """The rule as defined: the marker regex at every position, the anchor rule on each hit.
    The reference the fast path is tested against, and the path for ``anchor="anywhere"``."""
    out: list[MarkerMatch] = []
    prev_end = -1
    for m in c.pat.finditer(text):
        group = m.lastgroup
        start, end = m.span(group)
        name = c.alts[int(group[1:])]
        if anchor == "sentence":
            if not _at_sentence_start(text, start, prev_end):
                continue
        out.append(MarkerMatch(start, end, name))
        prev_end = max(prev_end, end)
    return out


def _sentence_occurrences(text: str, c: _Compiled, merge: bool = False) -> list[tuple[int, int]]:
    """``anchor="sentence"`` without trying every position: ``(start, end)`` of every kept
    occurrence in order (``merge=False``) or their union as sorted disjoint spans
    (``merge=True``); the same as the reference.

    The reference keeps an occurrence at ``p`` when (1) only openers stand between ``p`` and
    the text start or a sentence end, or (2) only chain punctuation / openers stand between
    ``prev_end`` (the largest end of the occurrences kept so far) and ``p``. A marker starts
    with a letter or digit, which is neither an opener, a sentence end nor chain punctuation,
    so in (1) ``p`` is the end of the maximal opener run after the sentence end — exactly where
    ``c.sentence`` (sentence end, greedy openers, then the marker lookahead) puts the end of
    its match; its matches consume only sentence ends and openers, so none hides another — or
    after the text start (``first`` below); in (2) ``p`` is the end of the maximal
    chain-punctuation run after the kept occurrence that set ``prev_end``, which is queued when
    that occurrence is kept. Candidates are visited in increasing order and decided by the
    reference's own test with the same ``prev_end``, so the kept list is the same.
    """
    at = c.at.match
    out: list[tuple[int, int]] = []
    prev_end = -1
    queued: list[int] = []  # heap of positions to try with ``at``: text start, chain positions
    first = _OPENER_RUN.match(text).end()
    if at(text, first):
        queued.append(first)
    it = c.sentence.finditer(text)
    nxt = next(it, None)
    last = -1
    while queued or nxt is not None:
        if queued and (nxt is None or queued[0] <= nxt.end()):
            p = heapq.heappop(queued)
            m = at(text, p)
            if m is None or p <= last:
                continue
            last = p
            start, end = m.span(1)  # group 1: the occurrence ("mk"), group 2: the run after it
            if not _at_sentence_start(text, start, prev_end):
                continue
        else:  # after a sentence end: rule (1) holds by construction
            m = nxt
            p = m.end()
            nxt = next(it, None)
            if p <= last:  # already tried from the queue
                continue
            last = p
            start, end = m.span(1)
        if not merge:
            out.append((start, end))
        elif out and start <= out[-1][1]:
            if end > out[-1][1]:
                out[-1] = (out[-1][0], end)
        else:
            out.append((start, end))
        if end > prev_end:
            prev_end = end
            q = m.end(2)
            if text[end:q].strip(_OPENERS):  # rule (2) needs a punctuation mark in the run
                heapq.heappush(queued, q)
    return out


def find_markers(text: str, *, markers: tuple[str, ...] | list[str] = SBT_MARKERS,
                 anchor: str = "anywhere") -> list[MarkerMatch]:
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
    c = _check_args(text, markers, anchor)
    if anchor == "sentence" and c.sentence is not None:
        alts, pat = c.alts, c.pat
        return [MarkerMatch(s, e, alts[int(pat.match(text, s).lastgroup[1:])])
                for s, e in _sentence_occurrences(text, c)]
    return _find_markers_every_position(text, c, anchor)


def merge_spans(spans) -> list[tuple[int, int]]:
    """Union of ``(start, end)`` spans as sorted, disjoint spans."""
    merged: list[list[int]] = []
    for s, e in sorted((int(s), int(e)) for s, e, *_ in spans):
        if merged and s <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], e)
        else:
            merged.append([s, e])
    return [(s, e) for s, e in merged]


def _anywhere_spans(text: str, c: _Compiled) -> list[tuple[int, int]]:
    """``anchor="anywhere"`` without trying every position: in the lower-cased text,
    ``str.find`` (a C search) for each marker's first word, then the markers starting with
    it, longest first; an occurrence counts when the original text has the marker as listed
    (first letter in either case) between word boundaries (``\\w`` is ``str.isalnum`` or "_").
    Every occurrence is found -- the longest at each start -- so the union is the reference's."""
    low = text.lower()
    if len(low) != len(text):  # a character whose lower case is longer ("İ"): positions would shift
        return merge_spans(_find_markers_every_position(text, c, "anywhere"))
    found: list[tuple[int, int]] = []
    n, find = len(text), low.find
    for head, variants in c.heads:
        i = find(head)
        while i >= 0:
            if i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_"):
                for v in variants:
                    e = i + len(v)
                    if (low.startswith(v, i) and (e == n or not (text[e].isalnum() or text[e] == "_"))
                            and text[i:e] in c.spellings[v]):
                        found.append((i, e))
                        break
            i = find(head, i + 1)
    found.sort()
    out: list[tuple[int, int]] = []
    for s, e in found:
        if out and s <= out[-1][1]:  # touching spans merge, as in merge_spans
            if e > out[-1][1]:
                out[-1] = (out[-1][0], e)
        else:
            out.append((s, e))
    return out


def marker_spans(text: str, *, markers: tuple[str, ...] | list[str] = SBT_MARKERS,
                 anchor: str = "anywhere") -> list[tuple[int, int]]:
    """Disjoint character spans covered by at least one marker occurrence, sorted."""
    c = _check_args(text, markers, anchor)
    if anchor == "anywhere":
        return _anywhere_spans(text, c)
    if c.sentence is None:
        return merge_spans(_find_markers_every_position(text, c, anchor))
    return _sentence_occurrences(text, c, merge=True)
