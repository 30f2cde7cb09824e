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
can hold an equal candidate -- the gold's digits, a fraction, the gold in words, or a closed
form (``\\``, ``^``, ``!``) -- and only those steps' conclusions are read
(:meth:`AnswerChecker.correct_steps`); every scan is linear in the thinking's length.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from fractions import Fraction

from mta.answers import DEFAULT_TIMEOUT_S, AnswerCheckTimeout, answers_match, exact_value, parse_number
from mta.sbt.conclusions import conclusions
from mta.sbt.number_words import NUMBER_WORDS, scan_word, word_value
from mta.sbt.traces import TraceError

__all__ = ["AnswerChecker", "literal", "problem_literals"]

_CLOSED_FORM = re.compile(r"[\\^!]")
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
    """A regex hitting every step that can hold a candidate equal to ``value``.

    A plain-number candidate equal to it (parse_number's forms) starts with (a) the gold's
    integer digits (commas allowed between them) and fraction digits, after a character
    outside ``[\\w.]``; or (b) a "0" there (leading zeros: "018"), or (c) a "." there when the
    integer part is 0 (".5"); or is (d) a fraction "a/b" or "\\frac{a}{b}". A number in words
    contains :func:`~mta.sbt.number_words.scan_word`; a closed form contains ``\\``, ``^`` or
    ``!``. Every alternative starts with a literal and checks what is before it with a
    lookbehind, so the scan keeps the regex engine's fast first-character skip.
    """
    alts = [r"/(?<=[\d\s]/)\s*\d", r"[\\^!]"]
    digits = _decimal_digits(value)
    if digits is not None:
        whole, _, frac = digits.partition(".")
        alts.insert(0, f"{whole[0]}(?<![\\w.]{whole[0]})" + "".join(",?" + d for d in whole[1:])
                    + (re.escape("." + frac) if frac else ""))
        alts.insert(1, r"0(?<![\w.]0)")
        if whole == "0":
            alts.insert(2, r"\.(?<![\w.]\.)\d")
    word = scan_word(value)
    if word is not None:
        alts.append(f"(?i:{word})")
    return re.compile("|".join(alts))


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
        for c in conclusions(text, start, end):
            candidate = text[c.start:c.end]
            if (c.strong or literal(candidate) not in self._given) and self.matches(candidate):
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
        scan = self._scan.search
        ends = [e for _, e in steps]
        pos, n = 0, len(steps)
        while True:
            m = scan(text, pos)
            if m is None:
                break
            i = bisect_right(ends, m.start())  # the step holding the hit (hits between steps: the next)
            if i >= n:
                break
            s, e = steps[i]
            if self.step_reaches(text, s, e):
                out.append(i)
                if limit is not None and len(out) >= limit:
                    break
            pos = e  # the rest of this step is read: go on from the next one
        return out
