"""An answer judge that asks a local chat model, with the SBT paper's protocol.

The paper (arXiv 2505.14604, Appendix) gives a strong model the question, the reasoning
steps numbered, and the reference answer, and asks for the first and the second step at
which the answer is *reached* (not a similar value of an intermediate step); it samples 4
replies and takes the majority. :class:`LLMJudge` does the same through :func:`mta.generate`
(one prefill, ``samples`` completions). It is a :class:`~mta.sbt.judge.Judge`: pass it as
``judge=`` to :func:`mta.sbt.score_trace`, :func:`mta.sbt.build_example` or
:func:`mta.sbt.run_jsonl`.

Vote: each reply is read for ``FIRST: <n or none>`` and ``SECOND: <n or none>``; the first
step is the most common answer among the replies that give a valid one (a tie goes to the
earlier step), the second likewise among the valid replies whose second step is after it.
No usable reply raises :class:`~mta.sbt.traces.TraceError` ("judge gave no usable answer").

It is only as good as the model: SmolLM2-135M is far too small to follow the protocol
(``benchmarks/bench_sbt.py`` reports its accuracy on the labelled traces); use a capable
instruction model.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

from mta.sbt.traces import TraceError

__all__ = ["LLMJudge", "judge_prompt", "parse_reply", "vote"]

_PROMPT = """You are checking a step-by-step solution of a math problem.

Question:
{problem}

Reference answer: {gold}

Solution steps:
{steps}

Find the first step at which the solution reaches the reference answer as the answer to the \
question (not a similar value of an intermediate computation), and the second step at which it \
reaches it again (for example while re-checking). Reply in exactly this format:
FIRST: <step number or none>
SECOND: <step number or none>"""

_FIELD = re.compile(r"\b(FIRST|SECOND)\b\s*[:=]?\s*(?:step\s*)?(\d+|none)", re.IGNORECASE)


def judge_prompt(problem: str | None, steps: Sequence[str], gold: str) -> list[dict]:
    """The chat messages asking for the first and second steps reaching ``gold``."""
    numbered = "\n\n".join(f"Step {k}: {s.strip()}" for k, s in enumerate(steps, start=1))
    return [{"role": "user", "content": _PROMPT.format(problem=(problem or "(not given)").strip(), gold=gold,
                                                       steps=numbered)}]


def parse_reply(reply: str, n_steps: int) -> tuple[int | None, int | None] | None:
    """``(first, second)`` 1-based (None: "none") from a reply, or None when the reply gives no
    valid first step (missing, out of range, or a second step not after the first)."""
    found: dict[str, int | None] = {}
    for key, value in _FIELD.findall(reply):
        key = key.upper()
        if key in found:
            continue
        found[key] = None if value.lower() == "none" else int(value)
    if "FIRST" not in found:
        return None
    first, second = found["FIRST"], found.get("SECOND")
    for k in (first, second):
        if k is not None and not 1 <= k <= n_steps:
            return None
    if first is None:
        return (None, None)
    if second is not None and second <= first:
        second = None
    return first, second


def vote(answers: Sequence[tuple[int | None, int | None] | None]) -> tuple[int | None, int | None]:
    """Majority over the parsed replies (module docstring); TraceError when none parsed."""
    valid = [a for a in answers if a is not None]
    if not valid:
        raise TraceError("judge gave no usable answer")

    def most_common(values):
        counts = Counter(values)
        return min(counts, key=lambda v: (-counts[v], float("inf") if v is None else v))

    first = most_common([a[0] for a in valid])
    if first is None:
        return None, None
    seconds = [a[1] for a in valid if a[0] is not None and (a[1] is None or a[1] > first)]
    return first, (most_common(seconds) if seconds else None)


class LLMJudge:
    """Ask a chat model which steps reach the answer; majority over ``samples`` replies.

    Parameters
    ----------
    model, tokenizer
        A transformers chat model and its tokenizer (with a chat template), as for
        :func:`mta.generate`.
    samples : int
        Replies per trace (the paper: 4).
    temperature : float
        Sampling temperature of the replies (> 0 so that the samples differ).
    max_new_tokens : int
        Tokens per reply.
    seed : int, optional
        Seeds each call's generator (reproducible votes).

    Examples
    --------
    >>> from mta.models import load_smollm2                        # doctest: +SKIP
    >>> judge = LLMJudge(*load_smollm2())                          # doctest: +SKIP
    >>> score_trace(trace, gold, tokenizer, judge=judge)           # doctest: +SKIP
    """

    def __init__(self, model, tokenizer, *, samples: int = 4, temperature: float = 0.7, max_new_tokens: int = 48,
                 seed: int | None = 0):
        if tokenizer is None:
            raise ValueError("tokenizer: the judge needs the model's tokenizer")
        for name, value in (("samples", samples), ("max_new_tokens", max_new_tokens)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not temperature > 0:
            raise ValueError(f"temperature must be a number > 0, got {temperature!r}")
        self.model, self.tokenizer = model, tokenizer
        self.samples, self.temperature, self.max_new_tokens, self.seed = samples, float(temperature), max_new_tokens, seed
        self.last_replies: list[str] = []  # the replies of the last call (for inspection)

    def __call__(self, problem: str | None, steps: Sequence[str], gold: str) -> list[int]:
        import mta

        out = mta.generate(self.model, self.tokenizer, [judge_prompt(problem, steps, gold)], n=self.samples,
                       temperature=self.temperature, max_new_tokens=self.max_new_tokens, seed=self.seed,
                       chat_template=True, progress=False)
        self.last_replies = list(out.texts)
        first, second = vote([parse_reply(r, len(steps)) for r in out.texts])
        return [k - 1 for k in (first, second) if k is not None]
