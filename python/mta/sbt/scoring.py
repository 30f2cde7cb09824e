"""Overthinking scores of long chain-of-thought traces (SBT, arXiv 2505.14604).

``score = β·κ + (1−β)·(1−η)`` with κ = marker tokens / thinking tokens and
η = (1-based step of the first correct answer) / (thinking steps), β = 0.1.

Fast path (same results as :func:`score_trace_reference`, the rule computed the obvious way):
the thinking is tokenised once (offsets), marker tokens are counted by bisection over the
offsets, markers are searched only where the sentence rule can keep them
(:mod:`mta.sbt.markers`), one scan of the whole thinking picks the steps that can hold a
number equal to the gold (:meth:`AnswerChecker.correct_steps`), and math-verify sees only the
candidates whose value equals the gold's and that are not the gold's own plain literal.
:func:`score_traces` tokenises a batch in one call and can spread the text work over
processes. The tokenizer dominates the cost; pass ``offsets`` (e.g. from the generator) to
skip it.
"""

from __future__ import annotations

import logging
import re
from bisect import bisect_left, bisect_right
from concurrent.futures import Executor
from dataclasses import asdict, dataclass
from fractions import Fraction
from functools import lru_cache
from operator import itemgetter

from mta.sbt.markers import SBT_MARKERS, marker_spans

__all__ = [
    "BETA", "TAU1", "TAU2", "TraceError", "Trace", "TraceScore", "AnswerChecker",
    "split_trace", "split_steps", "token_offsets", "batch_token_offsets", "score_trace",
    "score_traces", "score_trace_reference", "prefix_scores",
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


def _thinking_and_answer(trace: str) -> tuple[str, str]:
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
    return thinking, answer


def split_trace(trace: str) -> Trace:
    """Split ``<think>…</think>answer`` into thinking, answer and steps; TraceError if unusable."""
    thinking, answer = _thinking_and_answer(trace)
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


def _value_is(m: re.Match, text: str, num: int, den: int) -> bool:
    """``_fraction(m, text) == Fraction(num, den)`` (``den > 0``) in integer arithmetic."""
    try:
        a = m.group(1)
        if a is not None:
            b = int(m.group(2))
            return b != 0 and int(a) * den == num * b
        sign, whole, dec, d = m.group(3), m.group(4), m.group(5), m.group(6)
        n = int(whole.replace(",", "") + dec[1:]) if dec else int(whole.replace(",", ""))
        scale = 10 ** (len(dec) - 1) if dec else 1
        if d is not None:
            d = int(d)
            if d == 0:
                return False
            scale *= d
        if sign:  # as in _fraction
            before = text[: m.start()].rstrip()
            if not (before and (before[-1].isalnum() or before[-1] in ")]}")):
                n = -n
        return n * den == num * scale
    except ValueError:
        return _fraction(m, text) == Fraction(num, den)


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


_PLAIN_LITERAL = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")   # ASCII digits only
_NON_ASCII_DIGIT = re.compile(r"[^\D0-9]")               # a \d that _NUM matches, not 0-9
_DIGIT_OR_BACKSLASH = re.compile(r"[\d\\]")


@lru_cache(maxsize=1)
def _non_ascii_digit_lead_bytes() -> bytes:
    """First UTF-8 bytes of the non-ASCII characters ``\\d`` matches (this Python's Unicode;
    every 4-byte character counts, to keep this first call short)."""
    chars = "".join(map(chr, range(0x80, 0xD800))) + "".join(map(chr, range(0xE000, 0x10000)))
    return bytes(sorted({c.encode()[0] for c in re.findall(r"\d", chars)} | set(range(0xF0, 0xF5))))


def _may_have_non_ascii_digit(text: str) -> bool:
    """False when ``text`` has no non-ASCII decimal digit; a few memchr calls on its UTF-8
    (typographic quotes and dashes, U+2000–U+206F, start with other bytes)."""
    if text.isascii():
        return False
    data = text.encode("utf-8", "surrogatepass")
    return any(b in data for b in _non_ascii_digit_lead_bytes())


def _decimal_digits(value: Fraction) -> str | None:
    """``|value|`` as its shortest decimal string ("18", "0.5", "2.25"); None if not finite."""
    v = abs(value)
    den, k = v.denominator, 0
    for f in (2, 5):
        while den % f == 0:
            den //= f
    if den != 1:
        return None
    while (v * 10 ** k).denominator != 1:
        k += 1
    whole, frac = divmod(v.numerator * 10 ** k // v.denominator, 10 ** k)
    return str(whole) + (f".{frac:0{k}d}" if k else "")


class AnswerChecker:
    """Does a step contain the gold answer? math-verify decides; a numeric pre-filter picks
    which candidates it sees. Results are cached per candidate string.

    Numeric gold: a step holds the answer when one of its numbers (``_NUM``: integers,
    decimals, ``1,234``, ``a/b``, ``\\frac{a}{b}``) has the gold's value and math-verify
    accepts it against the gold. Otherwise math-verify parses every step with a digit or a
    backslash.
    """

    def __init__(self, gold):
        if isinstance(gold, (int, float)) and not isinstance(gold, bool):
            gold = str(gold)
        if not isinstance(gold, str) or not gold.strip():
            raise TraceError("no gold answer")
        self.gold = gold.strip()
        self.value = _numeric_value(self.gold)
        if self.value is None and not _mv_parse(self._gold_text()):
            raise TraceError("gold answer unparsable", self.gold)
        # math-verify is not needed for a candidate that is the gold's own plain literal
        # ("18" for gold "18"): _mv_verify would parse the same string twice, and verify()
        # compares every pair of the two parses, among them the extracted string with
        # itself, which is equal and non-empty whenever the parse is non-empty — and
        # math-verify's parse of an ASCII number literal is never empty (its number regex
        # matches, and with fallback_mode="first_match" the matched string is returned even
        # if sympy failed). tests/test_sbt.py checks this on a sample of literals.
        self._literal = self.gold if _PLAIN_LITERAL.fullmatch(self.gold) else None
        # Steps that can hold a number equal to the gold, found by one scan of the thinking
        # (see correct_steps). A _NUM match M whose value is the gold's is
        # (a) a plain literal [-]W[.D] whose first digit follows a character outside [\w.]
        #     (M's own lookbehind, or M's "-"); either W starts with "0" (zero alternative
        #     below), or W with its commas removed is the gold's integer digits and D starts
        #     with the gold's fraction digits, i.e. M starts with the digits alternative
        #     (the gold's shortest decimal string, optional commas between integer digits);
        # (b) a fraction "x / d": a digit or a space before "/", then spaces and a digit; or
        #     "\frac{" / "\dfrac{", spaces, an optional "-" and a digit;
        # (c) or written with a non-ASCII digit (scanned for separately).
        # Each alternative starts with a literal and checks what comes before it with a
        # lookbehind, so the scan keeps the regex engine's fast first-character skip.
        self._scan = None
        if self.value is not None:
            digits = _decimal_digits(self.value)
            alts = [r"/(?<=[\d\s]/)\s*\d", r"\\d?frac\{\s*-?\d"]
            if digits is not None:
                whole, _, frac = digits.partition(".")
                alts = [f"{whole[0]}(?<![\\w.]{whole[0]})" + "".join(",?" + d for d in whole[1:])
                        + (re.escape("." + frac) if frac else ""), r"0(?<![\w.]0)"] + alts
            self._scan = re.compile("|".join(alts))

    def _gold_text(self) -> str:
        return self.gold if "$" in self.gold or "\\" not in self.gold else f"${self.gold}$"

    def contains_answer(self, text: str) -> bool:
        if self.value is not None:
            num, den = self.value.numerator, self.value.denominator
            for m in _NUM.finditer(text):
                if _value_is(m, text, num, den):
                    cand = m.group(0).replace(",", "")
                    if cand == self._literal or _mv_verify(self.gold, cand):
                        return True
            return False
        if not _DIGIT_OR_BACKSLASH.search(text):
            return False
        return _mv_verify(self.gold, text)

    def correct_steps(self, text: str, steps, limit: int | None = 1) -> list[int]:
        """0-based indices of the ``steps`` (sorted disjoint spans of ``text``) holding the
        answer, in order, at most ``limit`` of them (None: all). The same as
        ``contains_answer`` on every step, but only the steps the gold scan hits are checked."""
        out: list[int] = []
        if self._scan is None:
            for i, (s, e) in enumerate(steps):
                if _DIGIT_OR_BACKSLASH.search(text, s, e) and self.contains_answer(text[s:e]):
                    out.append(i)
                    if limit is not None and len(out) >= limit:
                        break
            return out
        scan = self._scan.search
        # non-ASCII digits (rare): all positions at once, one scan of a text that may have one
        others = [] if not _may_have_non_ascii_digit(text) else [m.start() for m in _NON_ASCII_DIGIT.finditer(text)]
        k = 0
        ends = [e for _, e in steps]
        pos, n = 0, len(steps)
        while True:
            m = scan(text, pos)
            hit = m.start() if m is not None else None
            while k < len(others) and others[k] < pos:
                k += 1
            if k < len(others) and (hit is None or others[k] < hit):
                hit = others[k]
            if hit is None:
                break
            i = bisect_right(ends, hit)  # the step holding the hit (hits are never between steps)
            if i >= n:
                break
            s, e = steps[i]
            if self.contains_answer(text[s:e]):
                out.append(i)
                if limit is not None and len(out) >= limit:
                    break
            pos = e  # the rest of this step is checked: go on from the next one
        return out


# --- tokens ---------------------------------------------------------------------------------

def _backend(tokenizer):
    """The ``tokenizers.Tokenizer`` behind ``tokenizer``, or None (a slow tokenizer)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None and hasattr(tokenizer, "encode") and hasattr(tokenizer, "encode_batch"):
        backend = tokenizer  # a tokenizers.Tokenizer
    return backend


def token_offsets(tokenizer, text: str) -> list[tuple[int, int]]:
    """``(start, end)`` character offsets of ``text``'s tokens (no special tokens added).

    Accepts a transformers fast tokenizer or a ``tokenizers.Tokenizer``.
    """
    backend = _backend(tokenizer)
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
    backend = _backend(tokenizer)
    if backend is None:
        return [token_offsets(tokenizer, t) for t in texts]
    return [enc.offsets for enc in backend.encode_batch(list(texts), add_special_tokens=False)]


_START, _END = itemgetter(0), itemgetter(1)


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


def _covered_token_starts(offsets, spans) -> list[int]:
    """Sorted start offsets of the tokens overlapping any of the disjoint sorted ``spans``."""
    return [offsets[i][0] for i0, i1 in _covered_token_range(offsets, spans) for i in range(i0, i1)]


def _count_covered_tokens(offsets, spans) -> int:
    """``len(_covered_token_starts(offsets, spans))``, without the lists; vectorised when the
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


def _prepare(trace: str, gold, tokenizer, offsets, anchor, markers):
    """(split trace, answer checker, token offsets of the thinking, marker spans)."""
    t = split_trace(trace)
    checker = AnswerChecker(gold)
    if offsets is None:
        if tokenizer is None:
            raise ValueError("tokenizer: pass a tokenizer (or offsets) to count thinking tokens")
        offsets = token_offsets(tokenizer, t.thinking)
    return t, checker, offsets, marker_spans(t.thinking, anchor=anchor, markers=markers)


def _analyse(trace: str, gold, tokenizer=None, *, offsets=None, anchor="sentence",
             markers=SBT_MARKERS, want_correct: int = 1) -> _Analysis:
    t, checker, offsets, spans = _prepare(trace, gold, tokenizer, offsets, anchor, markers)
    marked = _covered_token_starts(offsets, spans)
    correct = checker.correct_steps(t.thinking, t.steps, want_correct)
    return _Analysis(t, offsets, marked, correct)


def _combine(kappa: float, eta: float | None, beta: float) -> float | None:
    return None if eta is None else beta * kappa + (1.0 - beta) * (1.0 - eta)


def _make_score(n_tok: int, n_marked: int, n_steps: int, correct: list[int], beta: float) -> TraceScore:
    kappa = n_marked / n_tok if n_tok else 0.0
    first = correct[0] + 1 if correct else None
    eta = first / n_steps if first is not None else None
    return TraceScore(n_tok, n_marked, kappa, n_steps, first, eta, _combine(kappa, eta, beta))


def _check_beta(beta: float) -> None:
    if not 0.0 <= beta <= 1.0:
        raise ValueError(f"beta must be in [0, 1], got {beta}")


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
    offsets : sequence of (start, end) or array of shape (tokens, 2), optional
        Token offsets of the *thinking text* (``split_trace(trace).thinking``), precomputed;
        an integer NumPy array is counted fastest.
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

    See Also
    --------
    score_traces : many traces, one tokenizer call, optional worker processes.
    """
    _check_beta(beta)
    t, checker, offsets, spans = _prepare(trace, gold, tokenizer, offsets, anchor, markers)
    correct = checker.correct_steps(t.thinking, t.steps, 1)
    return _make_score(len(offsets), _count_covered_tokens(offsets, spans), len(t.steps), correct, beta)


def _gold_key(gold):
    """Hashable key of a gold answer for the per-batch checker cache (None: don't cache)."""
    if isinstance(gold, str):
        return gold
    if isinstance(gold, (int, float)) and not isinstance(gold, bool):
        return str(gold)
    return None


def _text_chunk(items, anchor, markers, keep_text: bool):
    """The tokenizer-free part of :func:`score_traces` for ``(trace, gold)`` pairs (in a worker
    process or not): ``(thinking or None, steps, marker spans, correct steps)`` or the
    TraceError, in the order :func:`score_trace` checks things."""
    out, checkers = [], {}
    for trace, gold in items:
        try:
            t = split_trace(trace)
            key = _gold_key(gold)
            checker = checkers.get(key) if key is not None else None
            if checker is None:
                checker = AnswerChecker(gold)
                if key is not None:
                    checkers[key] = checker
            spans = marker_spans(t.thinking, anchor=anchor, markers=markers)
            correct = checker.correct_steps(t.thinking, t.steps, 1)
            out.append((t.thinking if keep_text else None, len(t.steps), spans, correct))
        except TraceError as exc:
            out.append(exc)
    return out


def score_traces(traces, golds, tokenizer=None, *, offsets=None, beta: float = BETA,
                 anchor: str = "sentence", markers=SBT_MARKERS, errors: str = "raise",
                 workers: int | Executor | None = None, chunk_size: int = 64) -> list:
    """Overthink scores of many traces; the same results as :func:`score_trace` on each.

    The thinking texts are tokenised in one ``encode_batch`` call (parallel in the Rust
    tokenizer), each distinct gold is parsed once, and with ``workers`` the text work
    (markers, answer checks) runs in worker processes while this one tokenises.

    Parameters
    ----------
    traces : sequence of str
        ``<think>…</think>answer`` strings.
    golds : sequence of str or number
        One gold answer per trace.
    tokenizer : transformers fast tokenizer or tokenizers.Tokenizer
        Counts tokens. Not needed when ``offsets`` is given.
    offsets : sequence, optional
        Per trace, the token offsets of its thinking text, precomputed: a list of
        ``(start, end)`` or an integer array of shape (tokens, 2).
    beta, anchor, markers
        As in :func:`score_trace`.
    errors : {"raise", "return"}
        A trace that cannot be scored raises its TraceError (``"raise"``) or leaves the
        TraceError in its place in the result (``"return"``).
    workers : int or concurrent.futures.Executor, optional
        ``None`` / ``1``: this process only. An int > 1: a process pool of that size for this
        call, unless the batch fits in one chunk (spawned interpreters: starting them costs
        a second or more, so it pays from several thousand traces). An executor, e.g. a
        ``ProcessPoolExecutor`` kept across calls: used as is. Spawned workers import the
        caller's main module, which must guard its entry point (``if __name__ ==
        "__main__":``) as for any ``multiprocessing`` use.
    chunk_size : int
        Traces per task sent to a worker.

    Returns
    -------
    list of TraceScore (or TraceError with ``errors="return"``)

    Examples
    --------
    >>> scores = score_traces(traces, golds, tokenizer)                  # doctest: +SKIP
    >>> scores = score_traces(traces, golds, offsets=offs, workers=8)    # doctest: +SKIP
    """
    _check_beta(beta)
    if errors not in ("raise", "return"):
        raise ValueError(f"errors must be 'raise' or 'return', got {errors!r}")
    traces, golds = list(traces), list(golds)
    if len(golds) != len(traces):
        raise ValueError(f"golds: {len(golds)} answers for {len(traces)} traces")
    if offsets is not None:
        offsets = list(offsets)
        if len(offsets) != len(traces):
            raise ValueError(f"offsets: {len(offsets)} offset lists for {len(traces)} traces")
    elif tokenizer is None:
        raise ValueError("tokenizer: pass a tokenizer (or offsets) to count thinking tokens")
    if not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be an int >= 1, got {chunk_size!r}")
    markers = tuple(markers)
    marker_spans("", anchor=anchor, markers=markers)  # bad anchor / markers: ValueError now
    items = list(zip(traces, golds))

    own_pool = None
    executor = workers if isinstance(workers, Executor) else None
    if executor is None and workers is not None:
        if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
            raise ValueError(f"workers must be an int >= 1 or an Executor, got {workers!r}")
        if workers > 1 and len(items) > chunk_size:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            # spawn: never fork a process that holds torch's and the tokenizer's threads
            own_pool = executor = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
    try:
        if executor is None:
            parts = _text_chunk(items, anchor, markers, offsets is None)
            if offsets is None:
                texts = [p[0] for p in parts if not isinstance(p, TraceError)]
                it = iter(batch_token_offsets(tokenizer, texts))
                offsets = [None if isinstance(p, TraceError) else next(it) for p in parts]
        else:
            futures = [executor.submit(_text_chunk, items[i:i + chunk_size], anchor, markers, False)
                       for i in range(0, len(items), chunk_size)]
            if offsets is None:  # tokenise here while the workers do the text work
                texts, where = [], []
                for i, (trace, _) in enumerate(items):
                    try:
                        texts.append(_thinking_and_answer(trace)[0])
                        where.append(i)
                    except TraceError:
                        pass
                offsets = [None] * len(items)
                for i, offs in zip(where, batch_token_offsets(tokenizer, texts)):
                    offsets[i] = offs
            parts = [p for f in futures for p in f.result()]
    finally:
        if own_pool is not None:
            own_pool.shutdown()

    out = []
    for part, offs in zip(parts, offsets):
        if isinstance(part, TraceError):
            if errors == "raise":
                raise part
            out.append(part)
            continue
        _, n_steps, spans, correct = part
        out.append(_make_score(len(offs), _count_covered_tokens(offs, spans), n_steps, correct, beta))
    return out


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


# --- reference ------------------------------------------------------------------------------

def score_trace_reference(trace: str, gold, tokenizer=None, *, offsets=None, beta: float = BETA,
                          anchor: str = "sentence", markers=SBT_MARKERS) -> TraceScore:
    """The score computed the straightforward way: the test oracle and the benchmark baseline.

    What a user would write from the rule, no shortcuts: the tokenizer's ``__call__`` with
    ``return_offsets_mapping``; one regex per marker over the thinking, occurrences sorted and
    the anchor rule applied to each; a linear sweep over the tokens for the marker tokens; and
    math-verify (parse + verify, no cache) on every number of every step until one equals the
    gold, or on every step for a non-numeric gold. Same results as :func:`score_trace`.
    """
    from math_verify import parse, verify

    from mta.sbt import markers as mk

    _check_beta(beta)
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
    gold_text = checker._gold_text()
    g = parse(gold_text, parsing_timeout=None)
    first = None
    for i, (s, e) in enumerate(t.steps):
        step = text[s:e]
        if checker.value is not None:
            hit = any(bool(g) and bool(c := parse(m.group(0).replace(",", ""), parsing_timeout=None))
                      and verify(g, c, timeout_seconds=None) and _fraction(m, step) == checker.value
                      for m in _NUM.finditer(step))
        else:
            c = parse(step, parsing_timeout=None)
            hit = bool(g) and bool(c) and verify(g, c, timeout_seconds=None) and bool(_DIGIT_OR_BACKSLASH.search(step))
        if hit:
            first = i + 1
            break
    return _make_score(len(offsets), n_marked, len(t.steps), [] if first is None else [first - 1], beta)
