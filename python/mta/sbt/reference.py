"""The overthinking score computed the straightforward way: the test oracle and the
benchmark baseline of :mod:`mta.sbt.scoring` (the SBT family of ``benchmarks/bench_sbt.py``).
"""

from __future__ import annotations

import re

from mta.sbt import markers as mk
from mta.sbt.answers import DIGIT_OR_BACKSLASH, NUMBER, AnswerChecker, number_value
from mta.sbt.markers import SBT_MARKERS
from mta.sbt.scoring import BETA, TraceScore, check_beta, score_from_counts
from mta.sbt.traces import split_trace

__all__ = ["score_trace_reference"]


def score_trace_reference(trace: str, gold, tokenizer=None, *, offsets=None, beta: float = BETA,
                          anchor: str = "sentence", markers=SBT_MARKERS) -> TraceScore:
    """The score computed the straightforward way: the test oracle and the benchmark baseline.

    What a user would write from the rule, no shortcuts: the tokenizer's ``__call__`` with
    ``return_offsets_mapping``; one regex per marker over the thinking, occurrences sorted and
    the anchor rule applied to each; a linear sweep over the tokens for the marker tokens; and
    math-verify (parse + verify, no cache) on every number of every step until one equals the
    gold, or on every step for a non-numeric gold. Same results as :func:`mta.sbt.score_trace`.
    """
    from math_verify import parse, verify

    check_beta(beta)
    t = split_trace(trace)
    checker = AnswerChecker(gold)  # validation and the gold's value only
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
        one = re.compile(rf"(?<!\w)(?=({mk._phrase_regex(marker)})(?!\w))", re.IGNORECASE)
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
    # the first step holding the answer: math-verify on every candidate
    gold_text = checker.gold_text()
    g = parse(gold_text, parsing_timeout=None)
    first = None
    for i, (s, e) in enumerate(t.steps):
        step = text[s:e]
        if checker.value is not None:
            hit = any(bool(g) and bool(c := parse(m.group(0).replace(",", ""), parsing_timeout=None))
                      and verify(g, c, timeout_seconds=None) and number_value(m, step) == checker.value
                      for m in NUMBER.finditer(step))
        else:
            c = parse(step, parsing_timeout=None)
            hit = bool(g) and bool(c) and verify(g, c, timeout_seconds=None) and bool(DIGIT_OR_BACKSLASH.search(step))
        if hit:
            first = i + 1
            break
    return score_from_counts(len(offsets), n_marked, len(t.steps), [] if first is None else [first - 1], beta)
