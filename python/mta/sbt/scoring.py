"""Overthinking scores of long chain-of-thought traces (SBT, arXiv 2505.14604).

``score = β·κ + (1−β)·(1−η)`` with κ = marker tokens / thinking tokens and
η = (1-based step of the first correct answer) / (thinking steps), β = 0.1.

Fast path: the thinking is tokenised once (offsets), marker tokens are counted by bisection
over the offsets, the gold answer is parsed by math-verify once (cached), and a step is sent
to math-verify only when it holds a number-like candidate whose value equals the gold's
(non-numeric golds: only steps with a digit or LaTeX are parsed). The tokenizer dominates
the cost; pass ``offsets`` (e.g. from the generator) to skip it.
"""

from __future__ import annotations

import logging
import re
from bisect import bisect_left, bisect_right
from dataclasses import asdict, dataclass
from fractions import Fraction
from functools import lru_cache

from mta.sbt.markers import SBT_MARKERS, marker_spans

__all__ = [
    "BETA", "TAU1", "TAU2", "TraceError", "Trace", "TraceScore", "AnswerChecker",
    "split_trace", "split_steps", "token_offsets", "score_trace", "prefix_scores",
]

BETA = 0.1
TAU1 = 0.2
TAU2 = TAU1 + 0.05

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"
_STEP_BREAK = re.compile(r"\n[ \t]*\n\s*")  # "\n\n" (blank lines; more than one is one break)

logging.getLogger("math_verify").setLevel(logging.ERROR)  # it warns on every call with timeouts off


class TraceError(ValueError):
    """A trace that cannot be scored or built; ``reason`` is the short skip reason."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclass
class Trace:
    thinking: str              # text between <think> and </think>, stripped
    answer: str                # text after </think>, stripped
    steps: list[tuple[int, int]]  # character spans of the steps inside ``thinking``


def split_steps(thinking: str) -> list[tuple[int, int]]:
    """Character spans of the steps of ``thinking``: split on "\\n\\n", empty steps dropped."""
    spans, pos = [], 0
    for m in _STEP_BREAK.finditer(thinking):
        spans.append((pos, m.start()))
        pos = m.end()
    spans.append((pos, len(thinking)))
    out = []
    for s, e in spans:
        while s < e and thinking[s].isspace():
            s += 1
        while e > s and thinking[e - 1].isspace():
            e -= 1
        if e > s:
            out.append((s, e))
    return out


def split_trace(trace: str) -> Trace:
    """Split ``<think>…</think>answer`` into thinking, answer and steps; TraceError if unusable."""
    if not isinstance(trace, str):
        raise TraceError("malformed record", f"trace must be a string, got {type(trace).__name__}")
    close = trace.find(THINK_CLOSE)
    if close < 0:
        raise TraceError("no </think>")
    head = trace[:close]
    open_ = head.find(THINK_OPEN)
    thinking = (head[open_ + len(THINK_OPEN):] if open_ >= 0 else head).strip()
    answer = trace[close + len(THINK_CLOSE):].strip()
    if not thinking:
        raise TraceError("empty thinking")
    if not answer:
        raise TraceError("no answer after </think>")
    return Trace(thinking, answer, split_steps(thinking))


# --- answers --------------------------------------------------------------------------------

_NUM = re.compile(
    r"\\d?frac\{\s*(-?\d+)\s*\}\{\s*(\d+)\s*\}"          # \frac{a}{b}
    r"|(?<![\w.])(-?)(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?(?:\s*/\s*(\d+)(?!\d|\.\d))?"  # 1,234.5  3/4
)


def _fraction(m: re.Match, text: str) -> Fraction | None:
    try:
        if m.group(1) is not None:
            return Fraction(int(m.group(1)), int(m.group(2))) if int(m.group(2)) else None
        sign, whole, dec, den = m.group(3), m.group(4), m.group(5), m.group(6)
        v = Fraction(whole.replace(",", "") + (dec or ""))
        if den is not None:
            v = v / int(den) if int(den) else None
            if v is None:
                return None
        if sign:  # "-3" is negative only when the "-" is not a binary minus ("16-3", "x -3")
            before = text[: m.start()].rstrip()
            if before and (before[-1].isalnum() or before[-1] in ")]}"):
                pass
            else:
                v = -v
        return v
    except (ValueError, ZeroDivisionError):
        return None


def _numeric_value(gold: str) -> Fraction | None:
    g = gold.strip().strip("$").strip()
    g = re.sub(r"^\\boxed\{(.*)\}$", r"\1", g).replace("\\!", "").replace("\\$", "").strip()
    g = re.sub(r"\s*(\\%|%)$", "", g)
    m = _NUM.fullmatch(g)
    return _fraction(m, g) if m else None


@lru_cache(maxsize=65536)
def _mv_parse(text: str):
    from math_verify import parse

    return parse(text, parsing_timeout=None)


@lru_cache(maxsize=65536)
def _mv_verify(gold: str, candidate: str) -> bool:
    from math_verify import verify

    g = _mv_parse(gold if "$" in gold or "\\" not in gold else f"${gold}$")
    c = _mv_parse(candidate)
    if not g or not c:
        return False
    return bool(verify(g, c, timeout_seconds=None))


class AnswerChecker:
    """Does a step contain the gold answer? math-verify decides; a numeric pre-filter picks
    which steps it sees. Results are cached per candidate string."""

    def __init__(self, gold):
        if isinstance(gold, (int, float)) and not isinstance(gold, bool):
            gold = str(gold)
        if not isinstance(gold, str) or not gold.strip():
            raise TraceError("no gold answer")
        self.gold = gold.strip()
        self.value = _numeric_value(self.gold)
        if self.value is None and not _mv_parse(self._gold_text()):
            raise TraceError("gold answer unparsable", self.gold)

    def _gold_text(self) -> str:
        return self.gold if "$" in self.gold or "\\" not in self.gold else f"${self.gold}$"

    def contains_answer(self, text: str) -> bool:
        if self.value is not None:
            for m in _NUM.finditer(text):
                if _fraction(m, text) == self.value and _mv_verify(self.gold, m.group(0).replace(",", "")):
                    return True
            return False
        if not re.search(r"[\d\\]", text):
            return False
        return _mv_verify(self.gold, text)


# --- tokens ---------------------------------------------------------------------------------

def token_offsets(tokenizer, text: str) -> list[tuple[int, int]]:
    """``(start, end)`` character offsets of ``text``'s tokens (no special tokens added).

    Accepts a transformers fast tokenizer or a ``tokenizers.Tokenizer``.
    """
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None and hasattr(tokenizer, "encode") and hasattr(tokenizer, "encode_batch"):
        backend = tokenizer  # a tokenizers.Tokenizer
    if backend is not None:
        return backend.encode(text, add_special_tokens=False).offsets
    if callable(tokenizer):
        try:
            return list(tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"])
        except (NotImplementedError, KeyError, TypeError) as exc:
            raise TypeError("tokenizer must be a fast tokenizer (it must return offsets)") from exc
    raise TypeError(f"tokenizer must be a transformers fast tokenizer or a tokenizers.Tokenizer, "
                    f"got {type(tokenizer).__name__}")


def _covered_token_starts(offsets, spans) -> list[int]:
    """Sorted start offsets of the tokens overlapping any of the disjoint sorted ``spans``."""
    starts = [s for s, _ in offsets]
    ends = [e for _, e in offsets]
    out, last = [], 0
    for a, b in spans:
        i0 = max(bisect_right(ends, a), last)
        i1 = bisect_left(starts, b)
        if i1 > i0:
            out.extend(starts[i0:i1])
            last = i1
    return out


@dataclass
class TraceScore:
    thinking_tokens: int
    marker_tokens: int
    kappa: float
    steps: int
    first_correct_step: int | None   # 1-based; None when no step holds the gold answer
    eta: float | None
    score: float | None              # None when never correct

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class _Analysis:
    trace: Trace
    offsets: list
    marked_starts: list[int]
    correct_steps: list[int]  # 0-based indices of steps holding the answer (up to what was asked)


def _analyse(trace: str, gold, tokenizer=None, *, offsets=None, anchor="sentence",
             markers=SBT_MARKERS, want_correct: int = 1) -> _Analysis:
    t = split_trace(trace)
    checker = AnswerChecker(gold)
    if offsets is None:
        if tokenizer is None:
            raise ValueError("tokenizer: pass a tokenizer (or offsets) to count thinking tokens")
        offsets = token_offsets(tokenizer, t.thinking)
    spans = marker_spans(t.thinking, anchor=anchor, markers=markers)
    marked = _covered_token_starts(offsets, spans)
    correct = []
    for i, (s, e) in enumerate(t.steps):
        if checker.contains_answer(t.thinking[s:e]):
            correct.append(i)
            if len(correct) >= want_correct:
                break
    return _Analysis(t, offsets, marked, correct)


def _combine(kappa: float, eta: float | None, beta: float) -> float | None:
    return None if eta is None else beta * kappa + (1.0 - beta) * (1.0 - eta)


def score_trace(trace: str, gold, tokenizer=None, *, offsets=None, beta: float = BETA,
                anchor: str = "sentence", markers=SBT_MARKERS) -> TraceScore:
    """Overthink score of one trace.

    Parameters
    ----------
    trace : str
        ``<think>…</think>answer`` (the opening tag is optional).
    gold : str or number
        The gold final answer (checked with math-verify).
    tokenizer : transformers fast tokenizer or tokenizers.Tokenizer
        Counts thinking and marker tokens. Not needed when ``offsets`` is given.
    offsets : list of (start, end), optional
        Token offsets of the *thinking text* (``split_trace(trace).thinking``), precomputed.
    beta : float
        Weight of κ (0.1 in the paper).
    anchor : {"sentence", "anywhere"}
        Marker rule, see :mod:`mta.sbt.markers`.

    Returns
    -------
    TraceScore
        ``score`` and ``eta`` are None when no step holds the gold answer.

    Raises
    ------
    TraceError
        The trace has no ``</think>``, empty thinking, no answer, or the gold is unusable.
    """
    if not 0.0 <= beta <= 1.0:
        raise ValueError(f"beta must be in [0, 1], got {beta}")
    a = _analyse(trace, gold, tokenizer, offsets=offsets, anchor=anchor, markers=markers)
    n_tok = len(a.offsets)
    kappa = len(a.marked_starts) / n_tok if n_tok else 0.0
    n_steps = len(a.trace.steps)
    first = a.correct_steps[0] + 1 if a.correct_steps else None
    eta = first / n_steps if first is not None else None
    return TraceScore(n_tok, len(a.marked_starts), kappa, n_steps, first, eta, _combine(kappa, eta, beta))


def prefix_scores(a: _Analysis, beta: float = BETA) -> list[float]:
    """Score of every step prefix (k = 1..n): κ and η of the first k steps. Before the first
    correct step η counts as 1 (no redundant steps yet)."""
    starts = [s for s, _ in a.offsets]
    first = a.correct_steps[0] + 1 if a.correct_steps else None
    out = []
    for k, (_, end) in enumerate(a.trace.steps, start=1):
        n_tok = bisect_left(starts, end)
        n_mark = bisect_left(a.marked_starts, end)
        kappa = n_mark / n_tok if n_tok else 0.0
        eta = 1.0 if first is None or first > k else first / k
        out.append(beta * kappa + (1.0 - beta) * (1.0 - eta))
    return out
