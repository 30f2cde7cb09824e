"""Self-consistency: group the samples' final answers and vote.

Answers are grouped by meaning, not by spelling (``18``, ``18.0`` and ``$18`` are one
answer; ``\\frac{1}{2}`` and ``0.5`` too): plain numbers by exact value
(:func:`mta.answers.parse_number`), other answers by their text, then by
:func:`mta.answers.answers_match` (math-verify) against each group found so far. A sample
without an answer (``None``: :func:`mta.answers.extract_answer` found none) does not vote.

Tie rule (both votes): among groups with the same support, the group whose first sample
comes earliest wins. Samples are drawn independently, so this is a fair, reproducible
choice, and it is what ``collections.Counter.most_common`` does for a plain majority vote.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from mta.answers import DEFAULT_TIMEOUT_S, AnswerCheckTimeout, answers_match, parse_number

__all__ = ["AnswerGroup", "Vote", "group_answers", "majority_vote", "sample_weights", "weighted_vote"]


@dataclass
class AnswerGroup:
    """Samples that state the same answer; ``answer`` is the first one's spelling."""

    answer: str
    members: list[int] = field(default_factory=list)  # sample indices, ascending
    support: float = 0.0  # votes: a count, or the sum of the members' weights


@dataclass(frozen=True)
class Vote:
    """The outcome of a vote over one prompt's samples.

    ``answer`` is None when no sample stated an answer; ``groups`` holds every distinct
    answer, the winner first, then by support (ties in sample order); ``tie`` says whether
    the tie rule decided the winner; ``abstained`` counts samples without an answer.
    """

    answer: str | None
    support: float
    total: float
    groups: list[AnswerGroup]
    tie: bool
    abstained: int

    @property
    def winner_members(self) -> list[int]:
        """Sample indices that voted for the winner."""
        return self.groups[0].members if self.groups else []


def _check_answers(answers) -> list[str | None]:
    if isinstance(answers, str) or not isinstance(answers, Sequence):
        raise TypeError(f"answers must be a list of str or None (one per sample), got {type(answers).__name__}")
    for i, a in enumerate(answers):
        if a is not None and not isinstance(a, str):
            raise TypeError(f"answers[{i}] must be a str or None, got {type(a).__name__}")
    return list(answers)


def group_answers(answers: Sequence[str | None], *, timeout_s: float = DEFAULT_TIMEOUT_S) -> list[AnswerGroup]:
    """Equal answers in one group each, groups in order of their first sample.

    A math-verify call that times out counts as "different" (the answer starts or stays in
    its own group), so grouping never hangs.
    """
    answers = _check_answers(answers)
    groups: list[AnswerGroup] = []
    by_key: dict[object, AnswerGroup] = {}
    for i, a in enumerate(answers):
        if a is None or not a.strip():
            continue
        number = parse_number(a)
        key = ("num", number) if number is not None else ("text", " ".join(a.split()))
        group = by_key.get(key)
        if group is None:  # a new spelling: ask math-verify against each group it could equal
            for g in groups:
                if number is not None and parse_number(g.answer) is not None:
                    continue  # two plain numbers: equal only by value, which by_key already compared
                try:
                    if answers_match(g.answer, a, timeout_s=timeout_s):
                        group = g
                        break
                except AnswerCheckTimeout:
                    continue
        if group is None:
            group = AnswerGroup(a)
            groups.append(group)
        by_key.setdefault(key, group)
        group.members.append(i)
    return groups


def _vote(groups: list[AnswerGroup], abstained: int) -> Vote:
    if not groups:
        return Vote(None, 0.0, 0.0, [], False, abstained)
    # Stable sort on support alone: equal support keeps first-sample order (the tie rule).
    ranked = sorted(groups, key=lambda g: -g.support)
    tie = len(ranked) > 1 and ranked[1].support == ranked[0].support
    return Vote(ranked[0].answer, ranked[0].support, sum(g.support for g in groups), ranked, tie, abstained)


def majority_vote(answers: Sequence[str | None], *, timeout_s: float = DEFAULT_TIMEOUT_S) -> Vote:
    """The answer most samples state (see the module docstring for grouping and ties).

    Examples
    --------
    >>> majority_vote(["18", "17", "18.0", None]).answer
    '18'
    >>> majority_vote(["3", "4"]).answer, majority_vote(["3", "4"]).tie
    ('3', True)
    """
    groups = group_answers(answers, timeout_s=timeout_s)
    for g in groups:
        g.support = float(len(g.members))
    return _vote(groups, sum(a is None or not a.strip() for a in answers))


def weighted_vote(answers: Sequence[str | None], weights: Sequence[float], *,
                  timeout_s: float = DEFAULT_TIMEOUT_S) -> Vote:
    """The answer with the largest total weight (e.g. :func:`sample_weights`).

    Weights must be finite and >= 0; a sample without an answer adds nothing.

    Examples
    --------
    >>> weighted_vote(["3", "4", "4"], [0.9, 0.2, 0.3]).answer
    '3'
    """
    answers = _check_answers(answers)
    if isinstance(weights, str) or not isinstance(weights, Sequence) or len(weights) != len(answers):
        raise ValueError(f"weights must be a list of {len(answers)} numbers (one per answer)")
    for i, w in enumerate(weights):
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or w < 0:
            raise ValueError(f"weights[{i}] must be a finite number >= 0, got {w!r}")
    groups = group_answers(answers, timeout_s=timeout_s)
    for g in groups:
        g.support = math.fsum(float(weights[i]) for i in g.members)
    return _vote(groups, sum(a is None or not a.strip() for a in answers))


WEIGHTINGS = ("mean", "sum")


def sample_weights(logprobs: Sequence[Sequence[float]], kind: str = "mean") -> list[float]:
    """Per-sample vote weights from token logprobs.

    ``"mean"``: ``exp(mean token logprob)``, the length-normalised probability (a sample
    with no tokens weighs 0). ``"sum"``: the sequence probabilities normalised over the
    samples, ``softmax(sum of logprobs)`` (computed stably; long samples weigh little).
    """
    if kind not in WEIGHTINGS:
        raise ValueError(f"kind must be one of {WEIGHTINGS}, got {kind!r}")
    if kind == "mean":
        return [math.exp(math.fsum(lp) / len(lp)) if len(lp) else 0.0 for lp in logprobs]
    totals = [math.fsum(lp) for lp in logprobs]
    finite = [t for t in totals if math.isfinite(t)]
    if not finite:
        return [0.0] * len(totals)
    top = max(finite)
    exps = [math.exp(t - top) if math.isfinite(t) else 0.0 for t in totals]
    norm = math.fsum(exps)
    return [e / norm for e in exps]
