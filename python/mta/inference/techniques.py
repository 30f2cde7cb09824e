"""Inference-time techniques behind one interface, so one harness compares them all.

A :class:`Technique` answers a batch of :class:`mta.data.Problem` with a model and says
what it cost: ``run(model, tokenizer, problems, *, seed, progress) -> list[ItemResult]``,
one result per problem with the final answer, the tokens generated for it (all samples)
and the wall time spent on it, plus every sample. Correctness is the harness's business
(:mod:`mta.eval`), so a technique never sees the gold unless it is an oracle.

* :class:`Sampling` — one sample per problem (greedy at temperature 0), optionally with a
  per-step parameter schedule (:mod:`mta.inference.schedules`).
* :class:`SelfConsistency` — N samples of each problem in one batched generation
  (``generate(n=N)``), then a majority or probability-weighted vote (:mod:`.votes`).
* :class:`BestOfN` — N samples in one batched generation, one kept by a selector
  (:mod:`.selectors`).
* :class:`Braking` — thinking with Self-Braking decoding (:mod:`mta_kernels.braking`).

Wall time: each :meth:`Technique.run` call is timed as a whole (generation, answer
extraction, voting / selection; one-time setup such as braking's marker tables excluded)
and split evenly over its problems. Another method (e.g.
Weak-to-Strong Decoding) joins by implementing ``name``, ``config()`` and ``run``.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Protocol, runtime_checkable

import torch

from mta.answers import extract_answer
from mta.data import Problem
from mta.inference.selectors import Candidate, make_selector
from mta.inference.votes import WEIGHTINGS, majority_vote, sample_weights, weighted_vote

__all__ = ["DEFAULT_PROMPT", "BestOfN", "Braking", "Decoding", "ItemResult", "SampleRecord", "Sampling",
           "SelfConsistency", "Technique"]

#: The user message for a problem: ``{question}`` is replaced by its text.
DEFAULT_PROMPT = "{question}"


@dataclass(frozen=True)
class SampleRecord:
    """One generated sample: its text, the answer in it, its length and logprob."""

    text: str
    answer: str | None
    tokens: int
    logprob: float  # sum of token logprobs under the sampling distribution
    finish_reason: str


@dataclass
class ItemResult:
    """A technique's outcome on one problem."""

    problem_id: str
    answer: str | None  # the final answer (None: the technique found none)
    tokens: int  # generated tokens spent on this problem, all samples
    time_s: float  # wall time attributed to this problem
    samples: list[SampleRecord]
    extra: dict = field(default_factory=dict)  # technique-specific: votes, selected sample, braking


@runtime_checkable
class Technique(Protocol):
    """What the evaluation harness runs: a name, a config (JSON-able) and ``run``."""

    name: str

    def config(self) -> dict:
        """Everything that decides the outputs, for the run's manifest (resume checks it)."""

    def run(self, model, tokenizer, problems: Sequence[Problem], *, seed: int, progress: bool) -> list[ItemResult]:
        """One :class:`ItemResult` per problem, in order."""


@dataclass(frozen=True)
class Decoding:
    """How every sample is generated: sampling parameters, length, prompt.

    ``prompt`` is the user message, ``{question}`` replaced by the problem's text, wrapped
    in the tokenizer's chat template when ``chat_template``.
    """

    temperature: float = 0.7
    top_k: int = 0
    top_p: float = 1.0
    min_p: float = 0.0
    max_new_tokens: int = 256
    prompt: str = DEFAULT_PROMPT
    chat_template: bool = True

    def __post_init__(self):
        from mta.generation.params import sampling_params
        from mta_kernels._validation import check_int

        sampling_params(1, 1, torch.device("cpu"), temperature=self.temperature, top_k=self.top_k,
                        top_p=self.top_p, min_p=self.min_p)
        check_int(self.max_new_tokens, "max_new_tokens", lo=1)
        if not isinstance(self.prompt, str) or "{question}" not in self.prompt:
            raise ValueError(f"prompt must be a str holding '{{question}}', got {self.prompt!r}")

    def prompts(self, problems: Sequence[Problem]) -> list[str]:
        """The user message of each problem."""
        return [self.prompt.replace("{question}", p.question) for p in problems]

    def sampling(self) -> dict:
        """The four sampling parameters as ``mta.generate`` keywords."""
        return dict(temperature=self.temperature, top_k=self.top_k, top_p=self.top_p, min_p=self.min_p)


def _check_n(n) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an int >= 1, got {n!r}")
    return n


def _generate(model, tokenizer, prompts, decoding: Decoding, *, n: int, seed: int, progress: bool,
              chat_template: bool | None = None, **extra):
    from mta.generation.engine import generate

    return generate(model, tokenizer, prompts, n=n, max_new_tokens=decoding.max_new_tokens, seed=seed,
                    progress=progress, chat_template=decoding.chat_template if chat_template is None else chat_template,
                    **decoding.sampling(), **extra)


def _per_problem(problems, out, n: int, start: float, pick) -> list[ItemResult]:
    """One result per problem from ``out`` (prompt-major, ``n`` samples each); ``pick(i,
    problem, samples, logprobs) -> (answer, extra)``; the time since ``start`` split evenly."""
    samples = [SampleRecord(text, extract_answer(text), len(ids), float(sum(lp)), reason)
               for text, ids, lp, reason in zip(out.texts, out.token_ids, out.logprobs, out.finish_reasons)]
    picked = [pick(i, p, samples[i * n:(i + 1) * n], out.logprobs[i * n:(i + 1) * n]) for i, p in enumerate(problems)]
    share = (time.perf_counter() - start) / max(len(problems), 1)
    return [ItemResult(p.id, answer, sum(s.tokens for s in samples[i * n:(i + 1) * n]), share,
                       samples[i * n:(i + 1) * n], extra)
            for i, (p, (answer, extra)) in enumerate(zip(problems, picked))]


class Sampling:
    """One sample per problem; its answer is the technique's.

    Parameters
    ----------
    decoding : Decoding
        Sampling parameters (temperature 0: greedy), length and prompt.
    schedule : ParamSchedule, optional
        Per-step parameters inside the fused sampler (:mod:`mta.inference.schedules`).
    name : str, optional
        Default ``"greedy"`` at temperature 0, else ``"sample"``.
    """

    def __init__(self, decoding: Decoding | None = None, *, schedule=None, name: str | None = None):
        self.decoding = decoding or Decoding()
        self.schedule = schedule
        self.name = name or ("greedy" if self.decoding.temperature == 0 else "sample")

    def config(self) -> dict:
        return {"technique": "sampling", **asdict(self.decoding),
                "schedule": None if self.schedule is None else repr(self.schedule)}

    def run(self, model, tokenizer, problems, *, seed: int = 0, progress: bool = False) -> list[ItemResult]:
        start = time.perf_counter()
        extra = {"schedule": self.schedule} if self.schedule is not None else {}
        out = _generate(model, tokenizer, self.decoding.prompts(problems), self.decoding, n=1, seed=seed,
                        progress=progress, **extra)
        return _per_problem(problems, out, 1, start, lambda i, p, s, lp: (s[0].answer, {}))


VOTES = ("majority", "weighted")


class SelfConsistency:
    """N samples per problem in one batched generation, then a vote over their answers.

    Parameters
    ----------
    n : int
        Samples per problem (``generate(n=n)``: one prefill per problem, one decode loop
        for all ``len(problems) * n`` rows).
    vote : {"majority", "weighted"}
        Plain majority, or weighted by each sample's probability (``weighting``: ``"mean"``
        = exp(mean token logprob), ``"sum"`` = sequence probability normalised over the N).
        Ties: the answer whose first sample comes earliest (:mod:`mta.inference.votes`).
    """

    def __init__(self, n: int = 8, *, vote: str = "majority", weighting: str = "mean",
                 decoding: Decoding | None = None, name: str | None = None):
        self.n = _check_n(n)
        if vote not in VOTES:
            raise ValueError(f"vote must be one of {VOTES}, got {vote!r}")
        if weighting not in WEIGHTINGS:
            raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
        self.vote, self.weighting = vote, weighting
        self.decoding = decoding or Decoding()
        self.name = name or f"sc-{vote}@{n}"

    def config(self) -> dict:
        return {"technique": "self-consistency", "n": self.n, "vote": self.vote, "weighting": self.weighting,
                **asdict(self.decoding)}

    def _pick(self, i, problem, samples: list[SampleRecord], logprobs) -> tuple[str | None, dict]:
        answers = [s.answer for s in samples]
        if self.vote == "majority":
            vote = majority_vote(answers)
        else:
            vote = weighted_vote(answers, sample_weights(logprobs, self.weighting))
        return vote.answer, {"support": vote.support, "total": vote.total, "distinct": len(vote.groups),
                             "tie": vote.tie, "abstained": vote.abstained}

    def run(self, model, tokenizer, problems, *, seed: int = 0, progress: bool = False) -> list[ItemResult]:
        start = time.perf_counter()
        out = _generate(model, tokenizer, self.decoding.prompts(problems), self.decoding, n=self.n, seed=seed,
                        progress=progress)
        return _per_problem(problems, out, self.n, start, self._pick)


class BestOfN:
    """N samples per problem in one batched generation; a selector keeps one.

    Parameters
    ----------
    n : int
        Samples per problem.
    selector : str or callable
        ``"logprob"``, ``"mean_logprob"``, ``"oracle"`` (:data:`mta.inference.selectors.SELECTORS`)
        or a selector object (e.g. ``RewardSelector(fn)``): ``selector(candidates, problem) -> index``.
    """

    def __init__(self, n: int = 8, *, selector="mean_logprob", decoding: Decoding | None = None,
                 name: str | None = None):
        self.n = _check_n(n)
        self.selector = make_selector(selector) if isinstance(selector, str) else selector
        if not callable(self.selector):
            raise TypeError(f"selector must be a name or callable (candidates, problem) -> index, got {selector!r}")
        self.decoding = decoding or Decoding()
        self.name = name or f"bon-{getattr(self.selector, 'name', 'custom')}@{n}"

    def config(self) -> dict:
        return {"technique": "best-of-n", "n": self.n, "selector": repr(self.selector),
                **asdict(self.decoding)}

    def run(self, model, tokenizer, problems, *, seed: int = 0, progress: bool = False) -> list[ItemResult]:
        start = time.perf_counter()
        out = _generate(model, tokenizer, self.decoding.prompts(problems), self.decoding, n=self.n, seed=seed,
                        progress=progress)

        def pick(i, problem, group, logprobs):
            candidates = [Candidate(s.text, s.answer, lp) for s, lp in zip(group, logprobs)]
            chosen = self.selector(candidates, problem)
            if isinstance(chosen, bool) or not isinstance(chosen, int) or not 0 <= chosen < len(group):
                raise ValueError(f"selector returned {chosen!r}; it must return an index in [0, {len(group)})")
            return group[chosen].answer, {"selected": chosen}

        return _per_problem(problems, out, self.n, start, pick)


class Braking:
    """Thinking with Self-Braking decoding: the prompt opens ``<think>``, the braking
    controller forces ``</think>`` when a trigger fires, the model then answers.

    A tokenizer without a one-token ``</think>`` (SmolLM2) gets ``<think>`` / ``</think>``
    added as special tokens on a private copy of the model and tokenizer (the step an SBT
    fine-tune of such a model takes), so the caller's model is left as it was.

    Parameters
    ----------
    config : mta_kernels.braking.BrakingConfig, optional
        The triggers; default: a 96-token thinking budget, marker ratio 0.08 after 24
        thinking tokens, 4 reasoning steps.
    """

    def __init__(self, config=None, *, decoding: Decoding | None = None, name: str = "braking"):
        from mta_kernels.braking import BrakingConfig

        if config is not None and not isinstance(config, BrakingConfig):
            raise TypeError(f"config must be a mta_kernels.braking.BrakingConfig, got {type(config).__name__}")
        self.braking = config or BrakingConfig(max_thinking_tokens=96, marker_ratio=0.08, min_thinking_tokens=24,
                                               max_steps=4)
        self.decoding = decoding or Decoding()
        self.name = name
        self._prepared: dict = {}

    def config(self) -> dict:
        fields = ("max_thinking_tokens", "marker_ratio", "min_thinking_tokens", "max_steps", "end_think_margin")
        return {"technique": "braking", **{f: getattr(self.braking, f) for f in fields}, **asdict(self.decoding)}

    def _prepare(self, model, tokenizer):
        """``(model, tokenizer, tables)`` with one-token think tags, built once per model."""
        from mta.models import add_think_tokens
        from mta_kernels.braking import MarkerTables

        key = id(model)
        if key not in self._prepared:
            if len(tokenizer.encode("</think>", add_special_tokens=False)) != 1:
                model, tokenizer = copy.deepcopy(model), copy.deepcopy(tokenizer)
                add_think_tokens(model, tokenizer)
            tables = MarkerTables.from_tokenizer(tokenizer, vocab_size=model.config.vocab_size)
            self._prepared[key] = (model, tokenizer, tables)
        return self._prepared[key]

    def run(self, model, tokenizer, problems, *, seed: int = 0, progress: bool = False) -> list[ItemResult]:
        from mta.sbt.braking_demo import THINK_CUE, THINK_OPEN
        from mta_kernels.integrations.transformers import BrakingLogitsProcessor

        model, tokenizer, tables = self._prepare(model, tokenizer)  # once per model, not timed
        start = time.perf_counter()
        prompts = []
        for text in self.decoding.prompts(problems):
            if self.decoding.chat_template:
                text = tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                                     add_generation_prompt=True)
            prompts.append(tokenizer.encode(text + THINK_OPEN + "\n" + THINK_CUE, add_special_tokens=False))
        proc = BrakingLogitsProcessor(tables, self.braking, in_think=True)
        out = _generate(model, tokenizer, prompts, self.decoding, n=1, seed=seed, progress=progress,
                        chat_template=False, braking=proc)

        def pick(i, problem, group, logprobs):
            r = out.braking[i]
            return group[0].answer, {"thinking_tokens": r.thinking_tokens, "braked": r.braked, "reason": r.reason}

        return _per_problem(problems, out, 1, start, pick)
