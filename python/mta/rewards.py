"""Verifiable rewards for RL on math problems, and the Model-Task Alignment reward variants.

Every completion is first *judged* once (:func:`judge`): its final answer is extracted
(:func:`mta.answers.extract_answer`: ``\\boxed{}``, GSM8K ``####``, "the answer is", the last
number), its format checked, and the answer compared with the gold by :mod:`mta.answers`
(exact for plain numbers, math-verify bounded in time for the rest). A check that times out
makes the completion *unscorable*: it is counted (:attr:`Judgement.unscorable`), gets the
variant's "no" value, and is never silently dropped.

The variants of arXiv 2508.21188 (its code: ``src/syn_logic_reward.py`` of
hkust-nlp/model-task-align-rl), each a :class:`Reward`:

=================  ===================================================================
``ground_truth``   1 when the answer equals the gold, else 0
``random``         Bernoulli(0.5), whatever the completion says
``random_format``  Bernoulli(0.5) times the format reward (the paper's random reward)
``incorrect``      1 when the answer is stated in format and is *wrong*, else 0
``format``         1 when the answer is stated in the required format, else 0
``entropy``        minus the completion's mean token entropy (entropy minimisation)
``majority``       1 when the answer equals the group's majority answer (TTRL self-reward)
=================  ===================================================================

A :class:`Reward` scores one *group* (the samples of one prompt) for :mod:`mta.rl`, and has
two adapters: :meth:`Reward.trl` gives a TRL ``GRPOTrainer`` reward function
``(prompts, completions, **kwargs) -> list[float]``, :meth:`Reward.compute_score` is verl's
``compute_score(data_source, solution_str, ground_truth, extra_info)``; the module-level
:func:`compute_score` picks the variant from ``extra_info["reward"]`` (default ground truth).
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass

from mta.answers import DEFAULT_TIMEOUT_S, AnswerCheckTimeout, answers_match, extract_answer

__all__ = [
    "ANSWER_FORMATS",
    "REWARDS",
    "Judgement",
    "Reward",
    "compute_score",
    "has_format",
    "judge",
    "majority_answer",
    "make_reward",
]

#: Formats the format reward can ask for: ``\\boxed{...}`` (MATH), ``#### x`` (GSM8K), either,
#: or ``any`` (any answer :func:`mta.answers.extract_answer` finds, a bare last number included).
ANSWER_FORMATS = ("boxed", "gsm8k", "boxed_or_gsm8k", "any")
_BOXED = re.compile(r"\\(?:boxed|fbox)\{\s*[^\s}]")
_GSM8K = re.compile(r"####\s*\S")


def has_format(text: str, answer_format: str = "boxed_or_gsm8k") -> bool:
    """Whether ``text`` states a final answer in ``answer_format`` (see :data:`ANSWER_FORMATS`)."""
    if answer_format not in ANSWER_FORMATS:
        raise ValueError(f"answer_format must be one of {ANSWER_FORMATS}, got {answer_format!r}")
    if answer_format == "any":
        return extract_answer(text) is not None
    boxed = answer_format in ("boxed", "boxed_or_gsm8k") and _BOXED.search(text) is not None
    gsm8k = answer_format in ("gsm8k", "boxed_or_gsm8k") and _GSM8K.search(text) is not None
    return boxed or gsm8k


@dataclass(frozen=True)
class Judgement:
    """What one completion says, and whether it is right.

    ``correct`` is None when there is no gold or the check timed out (then ``unscorable``).
    """

    answer: str | None
    formatted: bool
    correct: bool | None
    unscorable: bool = False


def judge(completion: str, gold: str | None, *, answer_format: str = "any",
          timeout_s: float = DEFAULT_TIMEOUT_S) -> Judgement:
    """Extract the answer of ``completion``, check its format and compare it with ``gold``."""
    if not isinstance(completion, str):
        raise TypeError(f"completion must be a str, got {type(completion).__name__}")
    answer = extract_answer(completion)
    formatted = has_format(completion, answer_format)
    if gold is None:
        return Judgement(answer, formatted, None)
    if answer is None:
        return Judgement(None, formatted, False)
    try:
        return Judgement(answer, formatted, answers_match(str(gold), answer, timeout_s=timeout_s))
    except AnswerCheckTimeout:
        return Judgement(answer, formatted, None, unscorable=True)


def majority_answer(answers: Sequence[str | None], *, timeout_s: float = DEFAULT_TIMEOUT_S) -> str | None:
    """The most frequent answer (equal answers counted together by :func:`answers_match`);
    the first seen wins a tie; None when no sample states an answer."""
    clusters: list[list[str]] = []
    for answer in answers:
        if answer is None:
            continue
        for cluster in clusters:
            try:
                same = cluster[0] == answer or answers_match(cluster[0], answer, timeout_s=timeout_s)
            except AnswerCheckTimeout:
                same = False
            if same:
                cluster.append(answer)
                break
        else:
            clusters.append([answer])
    return max(clusters, key=len)[0] if clusters else None


class Reward:
    """One reward variant: scores the G completions of one prompt.

    Parameters
    ----------
    name : str
        One of :data:`REWARDS`.
    answer_format : str
        The format the format-gated variants ask for (:data:`ANSWER_FORMATS`).
    p : float
        Probability of a 1 for the random variants.
    timeout_s : float
        Bound of one math-verify check.
    seed : int, optional
        Seeds the random variants when no ``rng`` is passed per call.
    """

    def __init__(self, name: str, *, answer_format: str = "any", p: float = 0.5,
                 timeout_s: float = DEFAULT_TIMEOUT_S, seed: int | None = None):
        if name not in REWARDS:
            raise ValueError(f"unknown reward {name!r}: one of {', '.join(REWARDS)}")
        if answer_format not in ANSWER_FORMATS:
            raise ValueError(f"answer_format must be one of {ANSWER_FORMATS}, got {answer_format!r}")
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"p must be in [0, 1], got {p!r}")
        if not timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s!r}")
        self.name, self.answer_format, self.p, self.timeout_s = name, answer_format, float(p), float(timeout_s)
        self.rng = random.Random(seed)
        self.__name__ = f"mta_{name}"  # TRL logs a reward function under its __name__

    @property
    def needs_gold(self) -> bool:
        """Whether the variant reads the gold answer (ground truth, incorrect)."""
        return self.name in ("ground_truth", "incorrect")

    @property
    def needs_entropy(self) -> bool:
        """Whether the variant reads per-token entropies (entropy minimisation)."""
        return self.name == "entropy"

    def judge_group(self, completions: Sequence[str], gold: str | None) -> list[Judgement]:
        """:func:`judge` on every completion of the group (the gold is only read when needed
        for the reward or given for the accuracy metric)."""
        return [judge(c, gold, answer_format=self.answer_format, timeout_s=self.timeout_s) for c in completions]

    def score(self, judgements: Sequence[Judgement], *, entropies: Sequence[Sequence[float]] | None = None,
              rng: random.Random | None = None) -> list[float]:
        """Rewards of one group from its judgements (and token entropies for ``entropy``)."""
        rng = rng or self.rng
        name = self.name
        if name == "ground_truth":
            return [1.0 if j.correct else 0.0 for j in judgements]
        if name == "incorrect":
            return [1.0 if j.formatted and j.correct is False else 0.0 for j in judgements]
        if name == "format":
            return [1.0 if j.formatted else 0.0 for j in judgements]
        if name in ("random", "random_format"):
            coins = [1.0 if rng.random() < self.p else 0.0 for _ in judgements]
            return coins if name == "random" else [c if j.formatted else 0.0 for c, j in zip(coins, judgements)]
        if name == "entropy":
            if entropies is None or len(entropies) != len(judgements):
                raise ValueError("the entropy reward needs the token entropies of every completion (entropies=)")
            return [-(sum(e) / len(e)) if len(e) else 0.0 for e in entropies]
        label = majority_answer([j.answer for j in judgements], timeout_s=self.timeout_s)  # "majority"
        return [1.0 if label is not None and j.answer is not None and _same(label, j.answer, self.timeout_s)
                else 0.0 for j in judgements]

    def __call__(self, completions: Sequence[str], gold: str | None = None, *,
                 entropies: Sequence[Sequence[float]] | None = None, rng: random.Random | None = None) -> list[float]:
        """Rewards of one group: the completions of one prompt (and its gold answer)."""
        if isinstance(completions, str):
            raise TypeError("completions must be a list of str (the samples of one prompt), got a str")
        if self.needs_gold and gold is None:
            raise ValueError(f"the {self.name!r} reward needs the gold answer (gold=None)")
        return self.score(self.judge_group(completions, gold if self.needs_gold else None), entropies=entropies,
                          rng=rng)

    # -- adapters ------------------------------------------------------------------------

    def trl(self, gold_key: str = "answer"):
        """A TRL ``GRPOTrainer`` reward function ``(prompts, completions, **kwargs) -> list[float]``.

        The gold answers come from the data set column ``gold_key`` (TRL passes every extra
        column as a keyword, one value per completion). Completions of the same prompt are
        grouped (TRL repeats each prompt ``num_generations`` times) for ``majority``.
        ``entropy`` needs token entropies, which TRL does not pass: refused.
        """
        if self.needs_entropy:
            raise ValueError("the entropy reward needs token entropies, which TRL's reward functions do not get")

        def reward_func(prompts, completions, **kwargs) -> list[float]:
            texts = [_completion_text(c) for c in completions]
            golds = kwargs.get(gold_key)
            if self.needs_gold and golds is None:
                raise ValueError(f"the {self.name!r} reward needs the gold answers: add a {gold_key!r} column "
                                 "to the data set")
            groups: dict[str, list[int]] = {}
            for i, prompt in enumerate(prompts):
                groups.setdefault(repr(prompt), []).append(i)
            rewards = [0.0] * len(texts)
            for rows in groups.values():
                gold = str(golds[rows[0]]) if golds is not None else None
                for i, r in zip(rows, self([texts[i] for i in rows], gold if self.needs_gold else None)):
                    rewards[i] = r
            return rewards

        reward_func.__name__ = self.__name__
        return reward_func

    def compute_score(self, data_source, solution_str: str, ground_truth, extra_info: dict | None = None) -> float:
        """verl's ``compute_score``: one completion. ``majority`` scores against
        ``ground_truth`` taken as the group's pseudo-label (compute it with
        :func:`majority_answer`, as TTRL's verl reward manager does); ``entropy`` reads
        ``extra_info["entropies"]`` (the completion's token entropies)."""
        entropies = None
        if self.needs_entropy:
            entropies = [(extra_info or {}).get("entropies")]
            if entropies[0] is None:
                raise ValueError("the entropy reward needs extra_info['entropies'] (the token entropies)")
        if self.name == "majority":
            j = judge(solution_str, None, answer_format=self.answer_format)
            if ground_truth is None or j.answer is None:
                return 0.0
            return 1.0 if _same(str(ground_truth), j.answer, self.timeout_s) else 0.0
        gold = None if ground_truth is None else str(ground_truth)
        return self.score(self.judge_group([solution_str], gold if self.needs_gold else None),
                          entropies=entropies)[0]


def _same(a: str, b: str, timeout_s: float) -> bool:
    try:
        return a == b or answers_match(a, b, timeout_s=timeout_s)
    except AnswerCheckTimeout:
        return False


def _completion_text(completion) -> str:
    """TRL gives a str (standard format) or a list of messages (conversational format)."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, (list, tuple)) and completion and isinstance(completion[-1], dict):
        return str(completion[-1].get("content", ""))
    raise TypeError(f"a completion must be a str or a list of chat messages, got {type(completion).__name__}")


#: Every reward variant by name.
REWARDS = ("ground_truth", "random", "random_format", "incorrect", "format", "entropy", "majority")


def make_reward(name: str, **options) -> Reward:
    """The reward variant ``name`` (:data:`REWARDS`); ``options`` as in :class:`Reward`."""
    return Reward(name, **options)


_BY_NAME: dict[str, Reward] = {}


def compute_score(data_source, solution_str: str, ground_truth, extra_info: dict | None = None) -> float:
    """verl entry point (``custom_reward_function.path=.../mta/rewards.py``,
    ``name=compute_score``): the variant named by ``extra_info["reward"]`` (default
    ``"ground_truth"``), formats per ``extra_info["answer_format"]`` (default ``"any"``)."""
    info = extra_info or {}
    key = (info.get("reward", "ground_truth"), info.get("answer_format", "any"))
    if key not in _BY_NAME:
        _BY_NAME[key] = Reward(key[0], answer_format=key[1])
    return _BY_NAME[key].compute_score(data_source, solution_str, ground_truth, extra_info)
