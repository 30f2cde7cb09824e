"""Answer judges: which steps of a trace reach the gold answer (η's numerator, SBT-E's cut).

A judge is any callable ``judge(problem, steps, gold) -> sequence of int``: ``problem`` the
question (a str, or None when the caller has none), ``steps`` the thinking's steps (the
"\\n\\n"-separated paragraphs, as strings), ``gold`` the gold final answer (a str). It
returns the 0-based indices of the steps that reach the answer, in increasing order; only
the first two are used (η needs the first, SBT-E the second), so a judge may return just
those. It may raise :class:`~mta.sbt.traces.TraceError` (the record is skipped with its
reason) or :class:`mta.answers.AnswerCheckTimeout` (skipped as "answer check timed out").

Two are ready: :class:`RuleJudge` (the default: conclusions of a step against the gold,
math-verify deciding equality; rules in :mod:`mta.sbt.conclusions` and
:mod:`mta.sbt.answers`) and :class:`mta.sbt.llm_judge.LLMJudge` (a local chat model with
the paper's protocol).
"""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Integral
from typing import Protocol

from mta.answers import DEFAULT_TIMEOUT_S, AnswerCheckTimeout
from mta.sbt.answers import AnswerChecker
from mta.sbt.traces import TraceError

__all__ = ["Judge", "RuleJudge", "judge_steps"]


class Judge(Protocol):
    def __call__(self, problem: str | None, steps: Sequence[str], gold: str) -> Sequence[int]: ...


class RuleJudge:
    """The rule-based judge: a step reaches the answer when one of its conclusions (the
    result of its last computation, the right-hand side of its final equality, a stated or
    boxed answer; not an operand, not a quantity of the problem statement) equals the gold,
    math-verify deciding equality.

    Parameters
    ----------
    timeout_s : float
        Bound of each math-verify call; an overrun skips the trace ("answer check timed out").

    Examples
    --------
    >>> judge = RuleJudge()
    >>> judge("Wendi has 20 chickens ...", ["For 20 chickens: 3 * 20 = 60 cups.",
    ...                                     "60 - 15 - 25 = 20 cups. So the answer is 20."], "20")
    [1]
    """

    _CACHE_MAX = 4096

    def __init__(self, *, timeout_s: float = DEFAULT_TIMEOUT_S):
        if isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float)) or not timeout_s > 0:
            raise ValueError(f"timeout_s must be a number > 0, got {timeout_s!r}")
        self.timeout_s = float(timeout_s)
        self._checkers: dict = {}

    def __getstate__(self):  # process pools: ship the settings, not the checkers
        return {"timeout_s": self.timeout_s, "_checkers": {}}

    def checker(self, gold, problem: str | None = None) -> AnswerChecker:
        """The :class:`~mta.sbt.answers.AnswerChecker` of a gold and problem (cached)."""
        key = (gold if isinstance(gold, str) else repr(gold), problem)
        hit = self._checkers.get(key)
        if hit is None:
            hit = AnswerChecker(gold, problem, timeout_s=self.timeout_s)
            if len(self._checkers) >= self._CACHE_MAX:
                self._checkers.clear()
            self._checkers[key] = hit
        return hit

    def correct_steps(self, text: str, steps, gold, problem: str | None = None, limit: int | None = 2) -> list[int]:
        """The fast path on a thinking text and its step spans (what scoring uses)."""
        return self.checker(gold, problem).correct_steps(text, steps, limit)

    def __call__(self, problem: str | None, steps: Sequence[str], gold) -> list[int]:
        text = "\n\n".join(steps)
        spans, pos = [], 0
        for step in steps:
            spans.append((pos, pos + len(step)))
            pos += len(step) + 2
        return self.correct_steps(text, spans, gold, problem, None)


#: The judge used when none is given.
DEFAULT_JUDGE = RuleJudge()


def judge_steps(judge, thinking: str, steps, gold, problem: str | None = None, limit: int | None = 2) -> list[int]:
    """The first ``limit`` steps (0-based) of ``thinking`` that reach ``gold``, by ``judge``.

    ``judge`` None or a :class:`RuleJudge` takes the fast path on the text; any other judge
    is called with the steps as strings and its answer checked. Raises TraceError (a
    timeout becomes "answer check timed out"), TypeError / ValueError for a judge that
    answers something other than step indices.
    """
    if judge is None:
        judge = DEFAULT_JUDGE
    if isinstance(judge, RuleJudge):
        return judge.correct_steps(thinking, steps, gold, problem, limit)
    if isinstance(gold, (int, float)) and not isinstance(gold, bool):
        gold = str(gold)
    if not isinstance(gold, str) or not gold.strip():
        raise TraceError("no gold answer")
    texts = [thinking[s:e] for s, e in steps]
    try:
        answer = judge(problem, texts, gold.strip())
    except AnswerCheckTimeout as exc:
        raise TraceError("answer check timed out", str(exc)) from None
    try:
        found = sorted(set(answer))
    except TypeError:
        raise TypeError(f"judge must return a sequence of step indices, got {answer!r}") from None
    for i in found:
        if isinstance(i, bool) or not isinstance(i, Integral):
            raise TypeError(f"judge must return step indices (ints), got {i!r}")
        if not 0 <= i < len(texts):
            raise ValueError(f"judge returned step {i}, outside the {len(texts)} steps (0-based)")
    found = [int(i) for i in found]
    return found if limit is None else found[:limit]

