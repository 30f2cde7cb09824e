"""Best-of-N: pick one of a prompt's N samples.

A selector takes the prompt's candidates (text, extracted answer, token logprobs) and the
:class:`mta.data.Problem`, and returns the index of the one to keep. Ties go to the
earliest candidate. The logprobs are those :func:`mta.generate` returns: under the
distribution each token was drawn from (after temperature and top-k / top-p / min-p), so at
temperature 1 with no filter they are the model's own.

* :class:`SequenceLogprob` — the most probable sequence (sum of token logprobs).
* :class:`MeanLogprob` — length-normalised: the highest mean token logprob.
* :class:`RewardSelector` — the highest score of a user reward function
  ``fn(question, completion) -> float``.
* :class:`OracleVerifier` — the first candidate whose answer math-verify accepts against
  the gold: an oracle upper bound (pass@N), not a method usable without gold answers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from mta.answers import DEFAULT_TIMEOUT_S, AnswerCheckTimeout, answers_match
from mta.data import Problem

__all__ = ["SELECTORS", "Candidate", "MeanLogprob", "OracleVerifier", "RewardSelector", "SequenceLogprob",
           "make_selector"]


@dataclass(frozen=True)
class Candidate:
    """One sample of a prompt, as the selectors see it."""

    text: str
    answer: str | None
    logprobs: Sequence[float]

    @property
    def logprob(self) -> float:
        """Sum of the token logprobs (0 for an empty sample)."""
        return math.fsum(self.logprobs)

    @property
    def mean_logprob(self) -> float:
        """Mean token logprob; ``-inf`` for an empty sample (it says nothing)."""
        return self.logprob / len(self.logprobs) if len(self.logprobs) else -math.inf


def _argmax(scores: Sequence[float]) -> int:
    """Index of the largest score, the earliest among equals; NaN never wins."""
    best, best_score = 0, -math.inf
    for i, s in enumerate(scores):
        if s > best_score:  # strict: ties keep the earlier candidate
            best, best_score = i, s
    return best


def _check(candidates) -> None:
    if not isinstance(candidates, Sequence) or not candidates:
        raise ValueError("candidates must be a non-empty list of Candidate")


class _Named:
    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class SequenceLogprob(_Named):
    """The candidate with the highest sequence logprob (favours short samples)."""

    name = "logprob"

    def __call__(self, candidates: Sequence[Candidate], problem: Problem | None = None) -> int:
        _check(candidates)
        return _argmax([c.logprob for c in candidates])


class MeanLogprob(_Named):
    """The candidate with the highest mean token logprob (length-normalised)."""

    name = "mean_logprob"

    def __call__(self, candidates: Sequence[Candidate], problem: Problem | None = None) -> int:
        _check(candidates)
        return _argmax([c.mean_logprob for c in candidates])


class RewardSelector:
    """The candidate a user reward function scores highest.

    Parameters
    ----------
    reward : callable
        ``reward(question: str, completion: str) -> float`` (a TRL-style scorer, an outcome
        reward model wrapped in a function, ...). A score that is not a real number is a
        ``TypeError``; NaN scores never win.
    """

    name = "reward"

    def __init__(self, reward: Callable[[str, str], float]):
        if not callable(reward):
            raise TypeError(f"reward must be callable (question, completion) -> float, got {type(reward).__name__}")
        self.reward = reward

    def __repr__(self) -> str:
        fn = self.reward
        return f"RewardSelector({getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', type(fn).__name__)})"

    def __call__(self, candidates: Sequence[Candidate], problem: Problem | None = None) -> int:
        _check(candidates)
        question = problem.question if problem is not None else ""
        scores = []
        for i, c in enumerate(candidates):
            score = self.reward(question, c.text)
            if isinstance(score, bool) or not isinstance(score, (int, float)):
                raise TypeError(f"reward returned {score!r} for candidate {i}; it must return a number")
            scores.append(float(score))
        return _argmax(scores)


class OracleVerifier:
    """The first candidate whose answer matches the gold (math-verify): the pass@N upper bound.

    When none matches, ``fallback`` picks (default: the first candidate). A math-verify
    call that times out counts as no match.
    """

    name = "oracle"

    def __init__(self, fallback: Callable | None = None, *, timeout_s: float = DEFAULT_TIMEOUT_S):
        self.fallback = fallback
        self.timeout_s = timeout_s

    def __repr__(self) -> str:
        return f"OracleVerifier(fallback={self.fallback!r})"

    def __call__(self, candidates: Sequence[Candidate], problem: Problem | None = None) -> int:
        _check(candidates)
        if problem is None:
            raise ValueError("OracleVerifier needs the problem (its gold answer)")
        for i, c in enumerate(candidates):
            if c.answer is None:
                continue
            try:
                if answers_match(problem.answer, c.answer, timeout_s=self.timeout_s):
                    return i
            except AnswerCheckTimeout:
                continue
        return self.fallback(candidates, problem) if self.fallback is not None else 0


#: Selectors by name (``reward`` needs a function, so it is built by hand).
SELECTORS = {"logprob": SequenceLogprob, "mean_logprob": MeanLogprob, "oracle": OracleVerifier}


def make_selector(name: str):
    """A selector by name: one of :data:`SELECTORS`."""
    if name not in SELECTORS:
        raise ValueError(f"selector must be one of {sorted(SELECTORS)} (or a RewardSelector), got {name!r}")
    return SELECTORS[name]()
