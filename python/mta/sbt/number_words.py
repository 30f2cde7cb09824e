"""Numbers written in words: "eighteen" -> 18, "twenty-one" -> 21, "two thirds" -> 2/3.

The answer judge reads a conclusion such as "so she needs eighteen" with these, for the
values 0 to 999 and the proper fractions in lowest terms with a denominator from 2 to 10
("a half", "two thirds", "three quarters", "an eighth"). Larger numbers in words are rare in reasoning traces and are not read.
"""

from __future__ import annotations

import re
from fractions import Fraction
from math import gcd

__all__ = ["NUMBER_WORDS", "word_value", "scan_word"]

_UNITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
          "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"]
_TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_DENOMINATORS = {"half": 2, "halves": 2, "third": 3, "thirds": 3, "quarter": 4, "quarters": 4, "fourth": 4,
                 "fourths": 4, "fifth": 5, "fifths": 5, "sixth": 6, "sixths": 6, "seventh": 7, "sevenths": 7,
                 "eighth": 8, "eighths": 8, "ninth": 9, "ninths": 9, "tenth": 10, "tenths": 10}
_VALUE = {w: i for i, w in enumerate(_UNITS)} | {w: 10 * i for i, w in enumerate(_TENS) if w}

_UNIT = "|".join(sorted(_UNITS, key=len, reverse=True))
_TEN = "|".join(t for t in _TENS if t)
_BELOW_100 = rf"(?:(?:{_TEN})(?:[- ](?:{_UNIT}))?|{_UNIT})"
_INTEGER = rf"(?:(?:(?:{_UNIT})|a)[ ]hundred(?:[ ](?:and[ ])?{_BELOW_100})?|{_BELOW_100})"
_DENOMINATOR = "|".join(sorted(_DENOMINATORS, key=len, reverse=True))

#: A number in words, matched case-insensitively at word boundaries: an integer below 1000,
#: or a fraction "a half", "one third", "two thirds", "three quarters", "half".
NUMBER_WORDS = re.compile(
    rf"(?<![\w'’])(?:(?P<num>(?:{_UNIT})|a|an)[ -](?P<den>{_DENOMINATOR})|(?P<half>half)|(?P<int>{_INTEGER}))(?![\w'’-])",
    re.IGNORECASE,
)


def _integer(text: str) -> int:
    total, current = 0, 0
    for word in re.split(r"[ -]+", text.lower()):
        if word == "and":
            continue
        if word == "hundred":
            current = (current or 1) * 100
        elif word == "a":
            current = 1
        else:
            current += _VALUE[word]
    return total + current


def word_value(m: re.Match) -> Fraction | None:
    """The value of a :data:`NUMBER_WORDS` match; None for a fraction that is not proper and
    in lowest terms ("two quarters", "four halves": not read, so that every spelling of a
    value contains :func:`scan_word`)."""
    if m.group("half"):
        return Fraction(1, 2)
    if m.group("den"):
        num = m.group("num").lower()
        num = 1 if num in ("a", "an") else _VALUE[num]
        den = _DENOMINATORS[m.group("den").lower()]
        return Fraction(num, den) if num < den and gcd(num, den) == 1 else None
    return Fraction(_integer(m.group("int")))


def scan_word(value: Fraction) -> str | None:
    """A word every spelling of ``value`` that :data:`NUMBER_WORDS` reads contains (lower case),
    for a quick search; None when no spelling is read (negative, 1000 and above, other fractions).

    0-19: the word itself; 20-99: its tens word; 100-999: "hundred"; a fraction: its
    denominator's stem ("half", "third", "quarter|fourth", ...).
    """
    if value < 0:
        return None
    if value.denominator == 1:
        n = value.numerator
        if n < 20:
            return _UNITS[n]
        if n < 100:
            return _TENS[n // 10]
        return "hundred" if n < 1000 else None
    if value.numerator >= value.denominator or value.denominator > 10:
        return None
    return _STEMS[value.denominator]


_STEMS = {2: "half", 3: "third", 4: "quarter|fourth", 5: "fifth", 6: "sixth", 7: "seventh", 8: "eighth",
          9: "ninth", 10: "tenth"}
