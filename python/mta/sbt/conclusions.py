"""The conclusions of a step: where the rule-based answer judge looks for the answer.

A step *reaches* the gold answer when one of its conclusions equals the gold (the paper's
judge asks for the step where the answer is reached, "not a similar value for an
intermediate step"). A conclusion is a candidate span of the step, of one of five kinds:

==========  =============================================================  =====================================
kind        what                                                           example -> candidate
==========  =============================================================  =====================================
boxed       the content of ``\\boxed{...}`` / ``\\fbox{...}``                "so $\\boxed{18}$" -> 18
stated      what follows "answer is / was / would be / :", "####"          "So the answer is 18." -> 18
equality    the right-hand side of the last ``=`` (or ``≡``) of a chain:    "9 * 2 = $18 every day" -> $18;
            the result of a computation                                    "3/6 = 0.5 = 1/2" -> 1/2 only
result      a value right after a result word ("is", "gives", "makes",     "going over it again gives 18." -> 18;
            "so", "it's", "total", "→", ...) that ends its clause: at      "it's 3." -> 3;
            most three words (a unit) before . , ; : ! ? ) a line end,     "so she needs eighteen." -> eighteen
            the step end or "so / and / because / ..."
verdict     a value right before "stands", "holds", "checks out",          "No. 18 is consistent." -> 18
            "is consistent / correct / right / confirmed / the answer"
==========  =============================================================  =====================================

Not conclusions: operands ("3 × 20 = 60": 20 is not one), a value followed by an operator
or an ``=`` ("is 9 + 6 = 15": only 15), existential facts ("there are 7 days in a week"),
a value after a result word that does not end its clause ("she is 5 years older than
Tom"), and, for a numeric gold, an unevaluated sum or product ("the answer is 9 * 2" is a
computation still to do; powers, factorials and LaTeX forms such as ``2^{10}``, ``4!``,
``\\frac{\\sqrt{3}}{2}`` are closed forms and count, see :mod:`mta.sbt.answers`).

Result and verdict conclusions are *weak*, the others *strong*: a weak conclusion is not
counted when the gold value is a quantity of the problem statement ("There are 20
chickens." restates the problem when it says 20 chickens; "60 - 15 - 25 = 20 cups" still
counts).

Every scan here is linear in the step's length: candidates are at most ``MAX_CANDIDATE``
characters, every regex is anchored so that it cannot restart inside a run it already read.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from mta.sbt.number_words import NUMBER_WORDS

__all__ = ["Conclusion", "MAX_CANDIDATE", "STRONG_KINDS", "candidate_at", "raw_conclusions", "keep", "step_conclusions"]

MAX_CANDIDATE = 200          # characters a candidate may span
STRONG_KINDS = frozenset({"boxed", "stated", "equality", "therefore"})


class Conclusion(NamedTuple):
    start: int   # candidate span in the text
    end: int
    kind: str    # boxed, stated, equality, result, verdict

    @property
    def strong(self) -> bool:
        return self.kind in STRONG_KINDS


_THERE = re.compile(r"there[ \t]*$", re.IGNORECASE)            # "there is / are ...": a fact, not a result
# Every cue in one pass; word cues share one left boundary, and a first-character class
# lets the regex engine skip most positions. Overlapping cues: the first alternative wins
# ("answer is" is stated; its "is" is not read again as a result word).
_CUES = re.compile(
    r"(?=[=≡\\→⇒#\-aAbBcCeEgGhHiImMpPsStTwWyYlL])(?:"
    r"(?P<boxed>\\(?:boxed|fbox)\s*\{)"
    r"|(?P<eq>=(?<![<>!=:]=)(?![=>])|≡|\\equiv(?![a-zA-Z]))"
    r"|(?P<arrow>→|⇒|=>|->|\\to(?![a-zA-Z])|\\Rightarrow(?![a-zA-Z])|\\implies(?![a-zA-Z]))"
    r"|(?P<hashes>####)"
    r"|(?<![\w'’\\])(?:"
    r"(?P<stated>answer(?:[ \t]+(?:is|was|would[ \t]+be|should[ \t]+be|will[ \t]+be|must[ \t]+be)[ \t]*:?"
    r"|[ \t]*(?:is[ \t]*)?[:=]))"
    r"|(?P<verdict>stands|holds|checks[ \t]+out|(?:is|was)[ \t]+(?:consistent|correct|right|confirmed|verified"
    r"|the[ \t]+(?:final[ \t]+|correct[ \t]+)?answer))(?![\w'’])"
    r"|(?P<therefore>so|thus|hence|therefore|altogether|in[ \t]+total|(?:which|that|this)[ \t]+means)(?![\w'’])"
    r"|(?P<be>is|are|was|were)(?![\w'’])"
    r"|(?P<result>equals?|equal[ \t]+to|gives?|gave|giving|gets?|got|getting|makes?|made|yields?|produces?"
    r"|totals?|total[ \t]+of|comes?[ \t]+(?:out[ \t]+)?to|works?[ \t]+out[ \t]+to|adds?[ \t]+up[ \t]+to"
    r"|becomes?|leaves|leaving|(?:it|that|what)['’]s|be)(?![\w'’])))", re.IGNORECASE)
_FILLER = re.compile(r"[ \t]*(?::[ \t]*)?(?:(?:exactly|just|only|now|still|also|then|indeed|a[ \t]+total[ \t]+of)[ \t]+)?")
# After a result's candidate: at most three words (a unit), then the end of the clause.
_CLAUSE_END = re.compile(
    r"(?:\$|\\\)|\\\])?(?:[ \t]+[^\W\d_][\w'’/-]*){0,3}[ \t]*"
    r"(?:[.,;:!?)\]]|\n|\Z|[ \t]+(?:so|and|because|since|but|which|then|or|for)(?![\w'’]))", re.IGNORECASE)
_NEXT_IS_EQUALS = re.compile(r"(?:\$|\\\)|\\\])?[ \t]*(?:(?<![<>!])=(?![=>])|≡|\\equiv(?![a-zA-Z]))")
_VERDICT_BEFORE = re.compile(r"[0-9.,/%$\-−]")                 # characters of a plain value, read backwards
_RELATIONS = frozenset(("approx", "neq", "ne", "le", "ge", "leq", "geq", "lt", "gt", "to", "Rightarrow", "implies",
                        "equiv", "sim", "quad", "qquad", "text{or}", "iff", "mid"))
_OPERATORS = "+-−*/^×·÷_"
_DIGITS = "0123456789"  # ASCII only, as mta.answers.parse_number
_NUMBER_CHARS = _DIGITS + ".,"
# a clause that draws a conclusion: its last value, when it ends the clause, is one
_CLAUSE_STOP = re.compile(r"[;!?\n]|\.(?!\d)|,[ \t]+(?:and|but|so|since|because|which)(?![\w'’])")
_VALUE_START = re.compile(r"(?<![\w.,\\])(?:[-−]?\$?(?=\.?[0-9])|\$?\\(?=[a-zA-Z])|\$(?=[^$]))")
_WORDS_BEFORE = re.compile(r"(?<![\w'’-])[A-Za-z][A-Za-z -]{0,40}$")
_QUESTION_AFTER = re.compile(r"(?:[^.!?\n]|\.(?=\d))*\?")
_OR_AFTER = re.compile(r"(?:\$|\\\))?[ \t]*,?[ \t]+or(?![\w'’])", re.IGNORECASE)
_OR_WORD = re.compile(r"(?<![\w'’])or(?![\w'’])", re.IGNORECASE)
_CLOSED = re.compile(r"[\\^!]")


def _group_end(text: str, i: int, limit: int) -> int:
    """End of the balanced bracket group opening at ``text[i]`` (``limit`` if not closed by then)."""
    depth = 0
    for j in range(i, limit):
        ch = text[j]
        if ch in "{([":
            depth += 1
        elif ch in "})]":
            depth -= 1
            if depth == 0:
                return j + 1
    return limit


def candidate_at(text: str, i: int, end: int) -> tuple[int, int] | None:
    """The span of the mathematical expression starting at ``i`` (spaces, an opening ``$``,
    ``\\(`` or ``\\[`` skipped), at most :data:`MAX_CANDIDATE` characters, or None.

    Digits, decimal points followed by a digit, thousands commas, operators, brackets,
    ``!`` after a value, ``%``, LaTeX commands (with their brace groups) and single letters
    (variables, "x" for times) are read; spaces only when what follows continues the
    expression; a word of two letters or more ends it outside ``$...$`` and brackets.
    """
    limit = min(end, i + MAX_CANDIDATE)
    while i < limit and text[i] in " \t":
        i += 1
    math = False
    if text.startswith(("\\(", "\\["), i):
        i, math = i + 2, True
    elif i < limit and text[i] == "$":
        i += 1
        if i < limit and text[i] == "$":
            i += 1
        math = i < limit and text[i] not in _DIGITS + ".-−"  # "$18": a currency sign
    start = j = i
    last = i           # end of the last character that can end an expression
    depth = 0
    while j < limit:
        ch = text[j]
        if "0" <= ch <= "9" or ch == "%":
            j += 1
            last = j
        elif ch in _OPERATORS:
            j += 1
        elif ch == ".":
            if j + 1 < limit and "0" <= text[j + 1] <= "9":
                j += 1
            else:
                break
        elif ch == ",":
            group = text[j + 1:j + 4]
            if depth > 0 or (j > start and text[j - 1] in _DIGITS and len(group) == 3 and group.isascii()
                             and group.isdigit() and not (j + 4 < end and text[j + 4] in _DIGITS)):  # 1,234
                j += 1
            else:
                break
        elif ch in "{([":
            depth += 1
            j += 1
        elif ch in "})]":
            if depth == 0:
                break
            depth -= 1
            j += 1
            last = j
        elif ch == "!":
            if j > start and text[j - 1] in _DIGITS + ")}":
                j += 1
                last = j
            else:
                break
        elif ch == "\\":
            k = j + 1
            while k < limit and text[k].isalpha():
                k += 1
            name = text[j + 1:k]
            if not name:  # \% \$ \! \, \; (\) and \] end the math)
                if j + 1 < limit and text[j + 1] in "%$!,;: ":
                    j += 2
                    last = j if text[j - 1] in "%$" else last
                    continue
                break
            if name in _RELATIONS:
                break
            j = k
            if name in ("text", "textrm", "mathrm", "mbox", "textbf", "boxed", "fbox") and k < limit and text[k] == "{":
                j = _group_end(text, k, limit)
            last = j
        elif ch in " \t":
            k = j
            while k < limit and text[k] in " \t":
                k += 1
            if k >= limit:
                break
            nxt = text[k]
            prev = text[j - 1] if j > start else ""
            times = nxt in "xX" and k + 1 < limit and text[k + 1] in " \t"  # "3 x 5": x for times
            if (nxt in _OPERATORS or nxt in "\\({[" or depth > 0 or (prev in _OPERATORS and nxt in _DIGITS + ".")
                    or (math and nxt.isalpha()) or times):
                j = k
            else:
                break
        elif ch.isalpha():
            k = j
            while k < limit and text[k].isalpha():
                k += 1
            if depth > 0 or math or k - j == 1:
                j = k
                last = j
            else:
                break
        else:
            break
    return (start, last) if last > start else None


def _value_at(text: str, i: int, end: int) -> tuple[int, int] | None:
    """A candidate at ``i``: an expression, else a number in words."""
    span = candidate_at(text, i, end)
    if span is not None:
        return span
    while i < end and text[i] in " \t":
        i += 1
    m = NUMBER_WORDS.match(text, i, end)
    return m.span() if m else None


def _followed_by_equals(text: str, pos: int, end: int) -> bool:
    return _NEXT_IS_EQUALS.match(text, pos, end) is not None


def _last_value(text: str, i: int, stop: int) -> tuple[int, int] | None:
    """The span of the last value (expression or number in words) in ``text[i:stop]``.
    Value starts inside an expression already read are skipped, so every character is read
    once."""
    last, pos = None, i
    for m in _VALUE_START.finditer(text, i, stop):
        if m.start() < pos:
            continue
        span = candidate_at(text, m.start(), stop)
        if span is not None:
            last, pos = span, span[1]
    words = None
    for words in NUMBER_WORDS.finditer(text, pos, stop):  # only after the last expression
        pass
    return words.span() if words is not None else last


def _is_alternative(text: str, span: tuple[int, int], start: int, end: int) -> bool:
    """``x = 1 or x = 5``: each value is one alternative, not a conclusion."""
    if _OR_AFTER.match(text, span[1], end):
        return True
    before = text[max(start, span[0] - 40):span[0]]
    cut = max(before.rfind(c) for c in ".;!?\n")
    return _OR_WORD.search(before, cut + 1) is not None


def _in_question(text: str, pos: int, end: int) -> bool:
    return _QUESTION_AFTER.match(text, pos, min(end, pos + MAX_CANDIDATE)) is not None


def _lone_number_before(text: str, pos: int, start: int) -> bool:
    """Whether the left-hand side ending at ``pos`` (an "=") is one plain number ("$4 = ...")
    rather than an expression ending with one ("2 + 1 = ...") or no number ("x = ...")."""
    j = pos
    while j > start and text[j - 1] in " \t$":
        j -= 1
    k = j
    while k > start and j - k < 64 and text[k - 1] in _NUMBER_CHARS:
        k -= 1
    if k == j or not any(c in _DIGITS for c in text[k:j]):
        return False
    while k < j and text[k] in ",.":  # the value starts with a digit (or a sign)
        k += 1
    if k > start and text[k - 1] in "-−":
        k -= 1
    while k > start and text[k - 1] in " \t$":
        k -= 1
    return k == start or text[k - 1] not in _OPERATORS + _DIGITS + ")}]"


def raw_conclusions(text: str, start: int, end: int) -> list[Conclusion]:
    """Conclusions before the filters of :func:`keep` (``equality-link``: a chain's inner value)."""
    found: list[Conclusion] = []
    chain_rewrites = False  # the chain this "=" continues rewrites a plain number
    done = start            # clauses already read by a "so ..." opener
    for m in _CUES.finditer(text, start, end):
        kind = m.lastgroup
        if kind == "boxed":
            close = _group_end(text, m.end() - 1, min(end, m.end() + MAX_CANDIDATE))
            if close > m.end() and text[close - 1] == "}":
                found.append(Conclusion(m.end(), close - 1, "boxed"))
        elif kind in ("stated", "hashes"):
            span = _value_at(text, m.end(), end)
            if span is not None:
                found.append(Conclusion(*span, "stated"))
        elif kind == "eq":
            span = candidate_at(text, m.end(), end)
            if span is None:
                continue
            if not (found and found[-1].kind == "equality-link" and found[-1].end <= m.start()
                    and not text[found[-1].end:m.start()].strip(" \t$")):
                chain_rewrites = _lone_number_before(text, m.start(), start)
            if _followed_by_equals(text, span[1], end):
                found.append(Conclusion(*span, "equality-link"))
            elif not (chain_rewrites and _CLOSED.search(text, span[0], span[1])):
                found.append(Conclusion(*span, "equality"))
        elif kind == "therefore":
            if m.start() < done:
                continue
            stop_m = _CLAUSE_STOP.search(text, m.end(), min(end, m.end() + MAX_CANDIDATE))
            stop = done = stop_m.start() if stop_m else min(end, m.end() + MAX_CANDIDATE)
            span = _last_value(text, m.end(), stop)
            if span is not None and _CLAUSE_END.match(text, span[1], end):
                found.append(Conclusion(*span, "therefore"))
        elif kind == "verdict":
            j = m.start()
            while j > start and text[j - 1] in " \t":
                j -= 1
            k, floor = j, max(start, j - 64)
            while k > floor and _VERDICT_BEFORE.match(text[k - 1]):
                k -= 1
            if k < j and any(c in _DIGITS for c in text[k:j]) and (k == start or not text[k - 1].isalnum()):
                found.append(Conclusion(k, j, "verdict"))
                continue
            w = _WORDS_BEFORE.search(text, max(start, j - 40), j)
            if w is not None:
                words = NUMBER_WORDS.search(w.group(0))
                if words is not None and words.end() == len(w.group(0)):
                    found.append(Conclusion(w.start() + words.start(), j, "verdict"))
        else:  # be, result, arrow: a result word
            if kind == "be" and _THERE.search(text, max(start, m.start() - 12), m.start()):
                continue
            f = _FILLER.match(text, m.end(), end)
            span = _value_at(text, f.end(), end)
            if span is not None and _CLAUSE_END.match(text, span[1], end):
                found.append(Conclusion(*span, "result"))
    return found


def keep(text: str, c: Conclusion, start: int, end: int) -> bool:
    """The filters every conclusion passes: not a chain's inner value, not in a question, not
    one of alternatives (a stated answer may list them)."""
    return not (c.kind == "equality-link" or _in_question(text, c.end, end)
                or (c.kind != "stated" and _is_alternative(text, (c.start, c.end), start, end)))


def step_conclusions(text: str, start: int = 0, end: int | None = None) -> list[Conclusion]:
    """The conclusions of the step ``text[start:end]`` (see the module docstring), in text
    order of their cues; candidate spans are positions in ``text``."""
    end = len(text) if end is None else end
    return [c for c in raw_conclusions(text, start, end) if keep(text, c, start, end)]
