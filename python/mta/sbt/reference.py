"""The overthinking score computed the straightforward way: the test oracle and the
benchmark baseline of :mod:`mta.sbt.scoring` (the SBT family of ``benchmarks/bench_sbt.py``).
"""

from __future__ import annotations

import re

from mta.answers import clear_caches
from mta.sbt import markers as mk
from mta.sbt.answers import AnswerChecker
from mta.sbt.markers import SBT_MARKERS
from mta.sbt.scoring import BETA, TraceScore, check_beta, score_from_counts
from mta.sbt.traces import split_trace

__all__ = ["score_trace_reference"]


def score_trace_reference(trace: str, gold, tokenizer=None, *, offsets=None, beta: float = BETA,
                          anchor: str = "anywhere", markers=SBT_MARKERS, problem: str | None = None) -> TraceScore:
    """The score computed the straightforward way: the test oracle and the benchmark baseline.

    What a user would write from the rules, no shortcuts: the tokenizer's ``__call__`` with
    ``return_offsets_mapping``; one regex per marker variant over the thinking, occurrences
    sorted and the anchor rule applied to each; a linear sweep over the tokens for the marker
    tokens; and every conclusion of every step checked against the gold in order (math-verify
    with its caches cleared first, no scan to skip steps) until one is equal. Same results as
    :func:`mta.sbt.score_trace` with the default (rule-based) judge.
    """
    check_beta(beta)
    t = split_trace(trace)
    clear_caches()
    checker = AnswerChecker(gold, problem)
    text = t.thinking
    if offsets is None:
        if tokenizer is None:
            raise ValueError("tokenizer: pass a tokenizer (or offsets) to count thinking tokens")
        if hasattr(tokenizer, "encode_batch"):  # a tokenizers.Tokenizer
            offsets = tokenizer.encode(text, add_special_tokens=False).offsets
        else:
            offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    if anchor not in ("sentence", "anywhere"):
        raise ValueError(f"anchor must be 'sentence' or 'anywhere', got {anchor!r}")
    # markers: one regex per marker, every occurrence, then the anchor rule in text order
    found = []
    for marker in markers:
        one = re.compile(rf"(?<!\w)(?=({mk._phrase_regex(marker)})(?!\w))")
        found += [(m.start(1), -m.end(1), m.end(1)) for m in one.finditer(text)]
    found.sort()
    spans, prev_end, start_seen = [], -1, -1
    for start, _, end in found:
        if start == start_seen:  # the longest occurrence at a position decides
            continue
        start_seen = start
        if anchor == "sentence" and not mk._at_sentence_start(text, start, prev_end):
            continue
        spans.append((start, end))
        prev_end = max(prev_end, end)
    spans = mk.merge_spans(spans)
    # marker tokens: one pass over the tokens
    n_marked, j = 0, 0
    for a, b in offsets:
        while j < len(spans) and spans[j][1] <= a:
            j += 1
        if j < len(spans) and spans[j][0] < b:
            n_marked += 1
    # the first step reaching the answer: every conclusion of every step
    first = None
    for i, (s, e) in enumerate(t.steps):
        if checker.step_reaches(text, s, e):
            first = i
            break
    return score_from_counts(len(offsets), n_marked, len(t.steps), [] if first is None else [first], beta)
