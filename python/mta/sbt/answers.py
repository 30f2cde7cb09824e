"""Does a step reach the gold answer? The equality the rule-based judge uses, and its scan.

A step reaches the gold when one of its conclusions (:mod:`mta.sbt.conclusions`) equals
the gold. Equality (:meth:`AnswerChecker.matches`), for a gold read in LaTeX mode
(``2^{10}`` is 1024, ``4!`` is 24, ``-5`` is minus five; :func:`mta.answers.exact_value`):

* a gold with a rational value: a plain-number candidate (``18``, ``$18.00``, ``1,000``,
  ``.5``, ``36/2``, ``\\frac{1}{2}``, ``50%``) is equal when its value is exactly the gold's
  (``0.333`` is not 1/3); a number in words ("eighteen", "a half") likewise; a closed form
  (a LaTeX command, a power ``^`` or a factorial ``!``: ``2^{10}``, ``\\sqrt{4}``) goes to
  math-verify; an unevaluated sum or product ("9 * 2") is not an answer;
* any other gold (``\\sqrt{2}``, ``2x+3``, ``(1, 2)``): math-verify decides, and a plain
  number or a number in words never equals it.

Every math-verify call is bounded in time (:func:`mta.answers.answers_match`); one that
overruns makes the trace a :class:`TraceError` with reason "answer check timed out".

Speed: for a gold with a rational value one scan of the whole thinking finds the steps that
can hold an equal candidate -- the gold's digits or a fraction (a regex), a closed form
(``\\``, ``^``, ``!``) or the gold in words (``str.find``); of those, the steps that pass a
cheap pre-check (a plain number with the gold's absolute value, a closed form, the gold in
words) have their conclusions read (:meth:`AnswerChecker.correct_steps`). Every scan is
linear in the thinking's length.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from fractions import Fraction
from functools import lru_cache

from mta.answers import DEFAULT_TIMEOUT_S, AnswerCheckTimeout, answers_match, exact_value, parse_number
from mta.sbt.conclusions import keep, raw_conclusions
from mta.sbt.number_words import NUMBER_WORDS, scan_word, word_value
from mta.sbt.traces import TraceError

__all__ = ["AnswerChecker", "literal", "problem_literals"]

_CLOSED_FORM = re.compile(r"[\\^!]")
# For the per-step pre-check: from every start of a digit run (or of ".5"), the plain number
# read from there in a candidate's grammar (thousands commas only as full groups, a decimal
# part, "/ d"; conclusions.candidate_at). A candidate never starts inside a digit run.
_RUN = re.compile(r"\.?[0-9]+")
_PLAIN_TOKEN = re.compile(r"(?:[0-9]{1,3}(?:,[0-9]{3}(?![0-9]))+|[0-9]+|(?=\.[0-9]))(?:\.[0-9]+)?(?:[ \t]*/[ \t]*[0-9]+)?")
# a plain number as a problem statement writes it
_PROBLEM_NUMBER = re.compile(
    r"\\[dt]?frac\{\s*-?\d+\s*\}\{\s*\d+\s*\}"
    r"|(?<![\w.,])[-−]?(?:\d{1,3}(?:,\d{3})+|\d+|(?=\.\d))(?:\.\d+)?(?:/\d+(?![\d.]))?")
_FRAC_LITERAL = re.compile(r"\\[dt]?frac\{\s*(-?\d+)\s*\}\{\s*(\d+)\s*\}")
_ASSIGNMENT = re.compile(r"^\s*\\?[A-Za-z](?:_\{?\w+\}?)?\s*=\s*(?P<rhs>[^=]+)$")


def literal(text: str) -> str:
    """A number as written, normalised for comparison: ``$``, ``\\$``, ``\\!``, spaces, thousands
    commas, a trailing ``%`` / ``\\%`` or period dropped, ``\\frac{a}{b}`` written ``a/b``, lower
    case ("$1,000" and "1000" are one literal; "3/6" and "1/2" are two)."""
    t = _FRAC_LITERAL.sub(r"\1/\2", text.strip())
    t = re.sub(r"\\[$!%]|[$\s]", "", t).replace("\u2212", "-")
    t = re.sub(r"(?<=\d),(?=\d{3})", "", t)
    return t.rstrip(".%").lower()


def problem_literals(problem: str | None) -> frozenset:
    """The quantities a problem statement gives, as written (:func:`literal`): its plain
    numbers (``16``, ``$2``, ``1,000``, ``3/4``, ``\\frac{1}{4}``) and numbers in words."""
    if not problem:
        return frozenset()
    found = {literal(m.group(0)) for m in _PROBLEM_NUMBER.finditer(problem)}
    return frozenset(found | {m.group(0).lower() for m in NUMBER_WORDS.finditer(problem)})


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


def _gold_scan(value: Fraction) -> re.Pattern:
    """A regex hitting every step that can hold a plain-number candidate equal to ``value``.

    Such a candidate (parse_number's forms, read by ``conclusions.candidate_at``) is either a
    fraction "a / b" (a hit on "/"; ``\\frac{a}{b}`` holds a backslash, see
    :meth:`AnswerChecker.correct_steps`) or a decimal: after a character outside ``[\\w.]``,
    optional leading zeros (and commas), the gold's integer digits (commas allowed between
    them; "." alone when the integer part is 0) and fraction digits, then no more significant
    digits: no digit, no thousands group ",ddd", no "." followed by non-zero digits. Every
    alternative starts with a literal and checks what is before it with a lookbehind, so the
    scan keeps the regex engine's fast first-character skip.
    """
    alts = [r"/(?<=[\d\s]/)\s*\d"]
    digits = _decimal_digits(value)
    if digits is not None:
        whole, _, frac = digits.partition(".")
        if frac:
            tail = re.escape("." + frac) + r"(?!0*[1-9])"
        else:
            tail = r"(?![0-9])(?!,[0-9]{3}(?![0-9]))(?!\.0*[1-9])"
        body = "".join(",?" + d for d in whole[1:]) + tail
        if whole != "0":
            alts.append(f"{whole[0]}(?<![\\w.]{whole[0]})" + body)
            alts.append(r"0(?<![\w.]0)[0,]*" + whole[0] + body)
        else:
            alts.append(r"0(?<![\w.]0)[0,]*" + tail)
            if frac:
                alts.append(r"\.(?<![\w.]\.)" + re.escape(frac) + r"(?!0*[1-9])")
    return re.compile("|".join(alts))


@lru_cache(maxsize=65536)
def _unsigned_form(token: str) -> str | Fraction | None:
    """A plain token's absolute value, cheaply: a decimal as its shortest string ("0018.50" ->
    "18.5", as :func:`_decimal_digits`), a fraction "a / b" as a Fraction (None if b is 0)."""
    if "/" in token:
        value = parse_number(token)
        return None if value is None else abs(value)
    whole, _, frac = token.replace(",", "").partition(".")
    frac = frac.rstrip("0")
    return (whole.lstrip("0") or "0") + ("." + frac if frac else "")


class AnswerChecker:
    """Does a step reach the gold answer? (the rule-based judge for one gold and problem)

    Parameters
    ----------
    gold : str or number
        The gold final answer, read in LaTeX mode.
    problem : str, optional
        The problem statement: a weak conclusion (see :mod:`mta.sbt.conclusions`) equal to
        one of its quantities does not count.
    timeout_s : float
        Bound of each math-verify call.

    Raises
    ------
    TraceError
        "no gold answer", "gold answer unparsable" or "answer check timed out".
    """

    def __init__(self, gold, problem: str | None = None, *, timeout_s: float = DEFAULT_TIMEOUT_S):
        if isinstance(gold, (int, float)) and not isinstance(gold, bool):
            gold = str(gold)
        if not isinstance(gold, str) or not gold.strip():
            raise TraceError("no gold answer")
        self.gold = gold.strip()
        assignment = _ASSIGNMENT.match(self.gold)  # "x=5": the value is the answer
        if assignment is not None:
            self.gold = assignment.group("rhs").strip()
        self.timeout_s = timeout_s
        try:
            self.value = exact_value(self.gold, timeout_s=timeout_s)
            if self.value is None and not answers_match(self.gold, self.gold, timeout_s=timeout_s):
                raise TraceError("gold answer unparsable", self.gold)
        except AnswerCheckTimeout as exc:
            raise TraceError("answer check timed out", f"gold {self.gold[:80]!r}: {exc}") from None
        self._given = problem_literals(problem)
        self._scan = _gold_scan(self.value) if self.value is not None else None
        if self.value is not None:
            word = scan_word(self.value)
            self._abs = abs(self.value)
            self._digits = _decimal_digits(self.value)  # None when no decimal equals it (1/3)
            self._words = tuple(word.split("|")) if word is not None else ()

    def matches(self, candidate: str) -> bool:
        """Whether ``candidate`` (a conclusion's text) equals the gold (module docstring)."""
        value = parse_number(candidate)
        if value is None:
            m = NUMBER_WORDS.fullmatch(candidate.strip())
            value = word_value(m) if m else None
        if value is not None:
            return value == self.value
        if self.value is not None and not _CLOSED_FORM.search(candidate):
            return False  # an unevaluated sum or product, or text
        try:
            return answers_match(self.gold, candidate, timeout_s=self.timeout_s)
        except AnswerCheckTimeout as exc:
            raise TraceError("answer check timed out", f"{candidate[:80]!r}: {exc}") from None

    def step_reaches(self, text: str, start: int = 0, end: int | None = None) -> bool:
        """Whether the step ``text[start:end]`` has a conclusion equal to the gold."""
        end = len(text) if end is None else end
        for c in raw_conclusions(text, start, end):  # the filters last: most candidates do not match
            candidate = text[c.start:c.end]
            if (self.matches(candidate) and keep(text, c, start, end)
                    and (c.strong or literal(candidate) not in self._given)):
                return True
        return False

    def _number_may_reach(self, text: str, start: int, end: int) -> bool:
        """A cheap pre-check for a step with no closed form and not the gold in words: False
        only when no plain number of the candidates' grammar has the gold's absolute value."""
        token_at, digits, value = _PLAIN_TOKEN.match, self._digits, self._abs
        for run in _RUN.finditer(text, start, end):
            form = _unsigned_form(token_at(text, run.start(), end).group(0))
            if form == digits if isinstance(form, str) else form == value:
                return True
        return False

    def correct_steps(self, text: str, steps, limit: int | None = 1) -> list[int]:
        """0-based indices of the ``steps`` (sorted disjoint spans of ``text``) that reach the
        answer, in order, at most ``limit`` of them (None: all). The same as
        :meth:`step_reaches` on every step, but only the steps the gold scan hits are read."""
        out: list[int] = []
        if self._scan is None:
            for i, (s, e) in enumerate(steps):
                if self.step_reaches(text, s, e):
                    out.append(i)
                    if limit is not None and len(out) >= limit:
                        break
            return out
        # Hits: the number scan, and (str.find, C-level) the closed-form characters and the
        # gold in words (in the lower-cased text); each source keeps its next hit. A step hit
        # only by the number scan is read when a plain number in it has the gold's value.
        low = text.lower() if self._words else None
        if low is not None and len(low) != len(text):
            low = None
        sources = [lambda p: (m.start() if (m := self._scan.search(text, p)) else -1)]
        sources += [lambda p, c=c: text.find(c, p) for c in "\\^!"]
        if low is not None:
            sources += [lambda p, w=w: low.find(w, p) for w in self._words]
        elif self._words:  # lower case changed the length: the regex, case-insensitively
            words = re.compile("|".join(self._words), re.IGNORECASE)
            sources.append(lambda p: (m.start() if (m := words.search(text, p)) else -1))
        nxt = [-2] * len(sources)
        ends = [e for _, e in steps]
        pos, n = 0, len(steps)
        while True:
            hit = -1
            for k, source in enumerate(sources):
                if -1 < nxt[k] < pos or nxt[k] == -2:
                    nxt[k] = source(pos)
                if nxt[k] >= 0 and (hit < 0 or nxt[k] < hit):
                    hit = nxt[k]
            if hit < 0:
                break
            i = bisect_right(ends, hit)  # the step holding the hit (hits between steps: the next)
            if i >= n:
                break
            s, e = steps[i]
            special = any(-1 < x < e for x in nxt[1:])  # a closed form or the gold in words
            if (special or self._number_may_reach(text, s, e)) and self.step_reaches(text, s, e):
                out.append(i)
                if limit is not None and len(out) >= limit:
                    break
            pos = e  # the rest of this step is read: go on from the next one
        return out
