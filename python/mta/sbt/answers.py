"""Answer checking: does a step of the thinking hold the gold answer?

math-verify decides; :class:`AnswerChecker` picks which candidates it sees. For a numeric
gold, one scan of the whole thinking finds the steps that can hold a number equal to the
gold (:meth:`AnswerChecker.correct_steps`), and math-verify sees only the candidates whose
value equals the gold's and that are not the gold's own plain literal. Parses and verdicts
are cached per string (``_mv_parse``, ``_mv_verify``).
"""

from __future__ import annotations

import logging
import re
from bisect import bisect_right
from fractions import Fraction
from functools import lru_cache

from mta.sbt.traces import TraceError

__all__ = ["NUMBER", "DIGIT_OR_BACKSLASH", "number_value", "AnswerChecker"]

logging.getLogger("math_verify").setLevel(logging.ERROR)  # it warns on every call with timeouts off

#: A number as a step writes it; :func:`number_value` reads a match's value.
NUMBER = re.compile(
    r"\\d?frac\{\s*(-?\d+)\s*\}\{\s*(\d+)\s*\}"          # \frac{a}{b}
    r"|(?<![\w.])(-?)(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?(?:\s*/\s*(\d+)(?!\d|\.\d))?"  # 1,234.5  3/4
)


def number_value(m: re.Match, text: str) -> Fraction | None:
    """The value of a :data:`NUMBER` match ``m`` in ``text`` (None for a zero denominator)."""
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
    """``number_value(m, text) == Fraction(num, den)`` (``den > 0``) in integer arithmetic."""
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
        if sign:  # as in number_value
            before = text[: m.start()].rstrip()
            if not (before and (before[-1].isalnum() or before[-1] in ")]}")):
                n = -n
        return n * den == num * scale
    except ValueError:
        return number_value(m, text) == Fraction(num, den)


def _numeric_value(gold: str) -> Fraction | None:
    g = gold.strip().strip("$").strip()
    g = re.sub(r"^\\boxed\{(.*)\}$", r"\1", g).replace("\\!", "").replace("\\$", "").strip()
    g = re.sub(r"\s*(\\%|%)$", "", g)
    m = NUMBER.fullmatch(g)
    return number_value(m, g) if m else None


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
_NON_ASCII_DIGIT = re.compile(r"[^\D0-9]")               # a \d that NUMBER matches, not 0-9
DIGIT_OR_BACKSLASH = re.compile(r"[\d\\]")


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

    Numeric gold: a step holds the answer when one of its numbers (``NUMBER``: integers,
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
        if self.value is None and not _mv_parse(self.gold_text()):
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
        # (see correct_steps). A NUMBER match M whose value is the gold's is
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

    def gold_text(self) -> str:
        """The gold as math-verify is given it: LaTeX without ``$`` gets ``$…$`` around it."""
        return self.gold if "$" in self.gold or "\\" not in self.gold else f"${self.gold}$"

    def contains_answer(self, text: str) -> bool:
        """Whether ``text`` (one step) holds the gold answer."""
        if self.value is not None:
            num, den = self.value.numerator, self.value.denominator
            for m in NUMBER.finditer(text):
                if _value_is(m, text, num, den):
                    cand = m.group(0).replace(",", "")
                    if cand == self._literal or _mv_verify(self.gold, cand):
                        return True
            return False
        if not DIGIT_OR_BACKSLASH.search(text):
            return False
        return _mv_verify(self.gold, text)

    def correct_steps(self, text: str, steps, limit: int | None = 1) -> list[int]:
        """0-based indices of the ``steps`` (sorted disjoint spans of ``text``) holding the
        answer, in order, at most ``limit`` of them (None: all). The same as
        ``contains_answer`` on every step, but only the steps the gold scan hits are checked."""
        out: list[int] = []
        if self._scan is None:
            for i, (s, e) in enumerate(steps):
                if DIGIT_OR_BACKSLASH.search(text, s, e) and self.contains_answer(text[s:e]):
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
