"""SBT-E and SBT-D training examples from one long chain-of-thought trace.

Assistant content layout (``M`` = masked out of the loss, everything else trained)::

    SBT-E: <think>\\n{foundation + evolution}\\n\\n{E_PHRASE}\\n\\n{M: start of the next solution}\\n</think>\\n\\n{answer}
    SBT-D: <think>\\n{steps with score < τ1}\\n\\n{M: steps with score < τ2}\\n\\n{D_PHRASE}\\n</think>\\n\\n{answer}

The rules, per method (each record's :attr:`Example.rule` names the one that applied):

SBT-E (the paper's Figure 2)
    The foundation solution is the steps up to the first step that reaches the answer, the
    evolution solution the steps after it up to the second. A trace whose overthink score
    (β·κ + (1−β)·(1−η) over the whole thinking) is below τ1 is kept whole
    (``RULE_BELOW_TAU1``). Otherwise it is cut after the evolution solution (``RULE_CUT``),
    unless no second step reaches the answer (``RULE_NO_SECOND``) or the cut falls on the
    last step (``RULE_NOTHING_AFTER``); those are kept whole too.
SBT-D (the paper's Algorithm 2)
    Steps are added while the score of the prefix (η of the prefix; before the first
    correct step η counts as 1) stays below τ1; the steps after that whose prefix score is
    below τ2 = τ1 + 0.05 are kept as masked content (``RULE_CUT``). A trace with every
    prefix below τ1 is kept whole (``RULE_BELOW_TAU1``).

Where the paper is silent or says two things, the choice is a parameter:

* how much of the next solution SBT-E keeps as masked content: the paper says both "a few
  sentences" and "the first 10-20% of the second solution". Default: the first 2 sentences
  (``masked_sentences=2``, as the authors' build script; :func:`sentence_ends` splits
  them); ``masked_fraction=0.15`` takes
  that share of the next solution's sentences instead (at least one), ``masked_steps=k``
  whole steps. The next solution runs from the cut to the next step that reaches the
  answer (or the end of the thinking);
* where the braking phrase goes relative to the masked content: ``phrase_position=
  "before_masked"`` (SBT-E's default: the model learns to stop right after the phrase) or
  ``"after_masked"`` (SBT-D's default: Algorithm 2 appends the phrase once the masked steps
  are added).
"""

from __future__ import annotations

import math
import re
from bisect import bisect_left
from dataclasses import dataclass, field

from mta.sbt.markers import SBT_MARKERS
from mta.sbt.scoring import BETA, TAU1, analyse_trace, check_beta, prefix_scores
from mta.sbt.tokens import token_offsets
from mta.sbt.traces import TraceError

__all__ = ["BUILD_OPTIONS", "E_PHRASE", "D_PHRASE", "check_build_options", "RULE_BELOW_TAU1", "RULE_CUT", "RULE_NO_SECOND", "RULE_NOTHING_AFTER",
           "Example", "build_sbt_e", "build_sbt_d", "build_example", "sentence_ends", "token_mask"]

E_PHRASE = "Wait, I've gotten the same answer multiple times, time to end the thinking."
D_PHRASE = "Wait, my answer is too verbose, let me answer it more concisely."

RULE_BELOW_TAU1 = "below tau1: kept whole"
RULE_CUT = "cut"
RULE_NO_SECOND = "no second correct step: kept whole"
RULE_NOTHING_AFTER = "nothing after the cut: kept whole"

DEFAULT_MASKED_SENTENCES = 2

_SENTENCE_END = re.compile(r"(?<=[.!?])[ \t]+(?=\S)|\n+")


@dataclass
class Example:
    content: str                             # the assistant message
    masked_spans: list[tuple[int, int]]      # character spans of content left out of the loss
    braked: bool
    steps_total: int
    steps_kept: int
    steps_masked: int                        # steps touched by the masked content (a partial one counts)
    first_correct_step: int                  # 1-based
    thinking_tokens_before: int
    thinking_tokens_after: int = 0           # tokens of the new thinking (kept + phrase + masked)
    rule: str = RULE_CUT                     # which rule applied (RULE_* constants)
    overthink_score: float = 0.0             # of the whole trace
    second_correct_step: int | None = None   # 1-based, SBT-E (None: none found)
    info: dict = field(default_factory=dict)


def sentence_ends(text: str) -> list[int]:
    """End offsets of the sentences of a step: a sentence ends after ``. ! ?`` followed by
    spaces, or at a line break (a decimal point such as "3.5" does not end one)."""
    stop = len(text.rstrip())
    ends = [m.start() for m in _SENTENCE_END.finditer(text, 0, stop) if m.start() > 0]
    if not ends or ends[-1] < stop:
        ends.append(stop)
    return ends


def _masked_text(steps: list[str], kept: int, solution_end: int, *, masked_steps, masked_sentences,
                 masked_fraction) -> tuple[str, int]:
    """(masked text, steps it touches) of the next solution, ``steps[kept:solution_end]``."""
    if masked_steps is not None:
        take = steps[kept:kept + masked_steps]
        return "\n\n".join(take), len(take)
    per_step = [sentence_ends(s) for s in steps[kept:solution_end]]
    total = sum(len(p) for p in per_step)
    want = masked_sentences if masked_fraction is None else max(1, math.ceil(masked_fraction * total))
    parts: list[str] = []
    for k, ends in enumerate(per_step):
        if want <= 0:
            break
        step = steps[kept + k]
        parts.append(step[:ends[want - 1]] if want < len(ends) else step)
        want -= len(ends)
    return "\n\n".join(parts), len(parts)


def _assemble(kept_text: str, masked: str, phrase: str | None, phrase_first: bool, answer: str):
    segs: list[tuple[str, bool]] = [("<think>\n", True)]
    if phrase is None:
        segs.append((kept_text, True))
    elif phrase_first:
        segs.append((kept_text + "\n\n" + phrase, True))
        if masked:
            segs += [("\n\n", True), (masked, False)]
    else:
        segs.append((kept_text, True))
        if masked:
            segs += [("\n\n", True), (masked, False)]
        segs.append(("\n\n" + phrase, True))
    segs.append(("\n</think>\n\n" + answer, True))
    content, spans, pos = "", [], 0
    for text, trained in segs:
        if not trained and text:
            spans.append((pos, pos + len(text)))
        content += text
        pos += len(text)
    thinking_end = content.index("\n</think>")
    return content, spans, content[len("<think>\n"):thinking_end]


#: The keyword options of :func:`build_example` that :func:`mta.sbt.run_jsonl` passes through.
BUILD_OPTIONS = ("judge", "masked_steps", "masked_sentences", "masked_fraction", "phrase_position", "beta", "tau1",
                 "tau2", "anchor", "markers")


def check_build_options(method: str, *, judge=None, masked_steps=None, masked_sentences=None, masked_fraction=None,
                        phrase_position=None, beta=BETA, tau1=TAU1, tau2=None, anchor="anywhere",
                        markers=SBT_MARKERS) -> None:
    """ValueError for a bad option of :func:`build_example` (before any record is read)."""
    _check_options(method, masked_steps, masked_sentences, masked_fraction, phrase_position, beta, tau1,
                   tau1 + 0.05 if tau2 is None else tau2)
    if anchor not in ("sentence", "anywhere"):
        raise ValueError(f"anchor must be 'sentence' or 'anywhere', got {anchor!r}")
    if judge is not None and not callable(judge):
        raise TypeError(f"judge must be callable, got {type(judge).__name__}")


def _check_options(method, masked_steps, masked_sentences, masked_fraction, phrase_position, beta, tau1, tau2):
    if method not in ("sbt-e", "sbt-d"):
        raise ValueError(f"method must be 'sbt-e' or 'sbt-d', got {method!r}")
    given = [n for n, v in (("masked_steps", masked_steps), ("masked_sentences", masked_sentences),
                            ("masked_fraction", masked_fraction)) if v is not None]
    if len(given) > 1:
        raise ValueError(f"give one of masked_steps, masked_sentences, masked_fraction, got {', '.join(given)}")
    for name, value in (("masked_steps", masked_steps), ("masked_sentences", masked_sentences)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise ValueError(f"{name} must be an int >= 0, got {value!r}")
    if masked_fraction is not None and (isinstance(masked_fraction, bool) or not isinstance(masked_fraction, (int, float))
                                        or not 0 < masked_fraction <= 1):
        raise ValueError(f"masked_fraction must be in (0, 1], got {masked_fraction!r}")
    if phrase_position not in (None, "before_masked", "after_masked"):
        raise ValueError(f"phrase_position must be 'before_masked' or 'after_masked', got {phrase_position!r}")
    check_beta(beta)
    if not 0.0 <= tau1 <= tau2:
        raise ValueError(f"tau1/tau2 must satisfy 0 <= tau1 <= tau2, got {tau1}, {tau2}")


def build_example(trace: str, gold, method: str, tokenizer=None, *, problem: str | None = None, judge=None,
                  masked_steps: int | None = None, masked_sentences: int | None = None,
                  masked_fraction: float | None = None,
                  phrase_position: str | None = None, beta: float = BETA, tau1: float = TAU1,
                  tau2: float | None = None, anchor: str = "anywhere", markers=SBT_MARKERS) -> Example:
    """Build one SBT-E (``method="sbt-e"``) or SBT-D (``"sbt-d"``) example (rules in the
    module docstring).

    Parameters
    ----------
    trace, gold : str
        ``<think>…</think>answer`` and the gold answer.
    tokenizer : fast tokenizer or tokenizers.Tokenizer
        Counts tokens (κ, and the token counts reported).
    problem : str, optional
        The question, for the judge.
    judge : callable, optional
        Which steps reach the answer (:mod:`mta.sbt.judge`); the rule-based one by default.
    masked_steps, masked_sentences, masked_fraction
        SBT-E: how much of the next solution stays as masked-out text (one of them; default
        the first 2 sentences).
    phrase_position : {"before_masked", "after_masked"}, optional
        Where the braking phrase goes; default per method (module docstring).
    beta, tau1, tau2 : float
        Score weight and thresholds (τ2 defaults to τ1 + 0.05; SBT-E uses τ1 only).
    anchor, markers
        Marker rule (:mod:`mta.sbt.markers`).

    Raises
    ------
    TraceError
        Unusable trace, ``"never correct"`` when no thinking step reaches the gold answer, or
        ``"answer check timed out"``.
    """
    tau2 = tau1 + 0.05 if tau2 is None else tau2
    _check_options(method, masked_steps, masked_sentences, masked_fraction, phrase_position, beta, tau1, tau2)
    if masked_steps is None and masked_fraction is None and masked_sentences is None:
        masked_sentences = DEFAULT_MASKED_SENTENCES
    if tokenizer is None:
        raise ValueError("tokenizer: a tokenizer is needed to count tokens")
    a = analyse_trace(trace, gold, tokenizer, anchor=anchor, markers=markers, problem=problem, judge=judge,
                      want_correct=3 if method == "sbt-e" else 1)
    if not a.correct_steps:
        raise TraceError("never correct")
    t = a.trace
    steps = [t.thinking[s:e] for s, e in t.steps]
    n = len(steps)
    first = a.correct_steps[0] + 1
    scores = prefix_scores(a, beta)
    score = scores[-1]
    info: dict = {}
    second = a.correct_steps[1] + 1 if len(a.correct_steps) > 1 else None
    masked, touched = "", 0
    if method == "sbt-e":
        phrase, phrase_first = E_PHRASE, phrase_position != "after_masked"
        kept = n
        if score < tau1:
            rule = RULE_BELOW_TAU1
        elif second is None:
            rule = RULE_NO_SECOND
        elif second >= n:
            rule = RULE_NOTHING_AFTER
        else:
            rule, kept = RULE_CUT, second
            solution_end = a.correct_steps[2] + 1 if len(a.correct_steps) > 2 else n
            masked, touched = _masked_text(steps, kept, solution_end, masked_steps=masked_steps,
                                           masked_sentences=masked_sentences, masked_fraction=masked_fraction)
    else:
        phrase, phrase_first = D_PHRASE, phrase_position == "before_masked"
        kept = next((k for k, s in enumerate(scores) if s >= tau1), n)  # steps before the first ≥ τ1
        while kept + touched < n and scores[kept + touched] < tau2:
            touched += 1
        masked = "\n\n".join(steps[kept:kept + touched])
        rule = RULE_BELOW_TAU1 if kept == n else RULE_CUT
        info["prefix_scores"] = [round(s, 6) for s in scores]
    braked = kept < n
    if not braked:
        masked, touched, phrase = "", 0, None
    content, spans, new_thinking = _assemble("\n\n".join(steps[:kept]), masked, phrase, phrase_first, t.answer)
    return Example(content, spans, braked, n, kept, touched, first, len(a.offsets),
                   len(token_offsets(tokenizer, new_thinking)), rule, score, second, info)


def build_sbt_e(trace: str, gold, tokenizer, **kwargs) -> Example:
    """SBT-E example; see :func:`build_example`."""
    return build_example(trace, gold, "sbt-e", tokenizer, **kwargs)


def build_sbt_d(trace: str, gold, tokenizer, **kwargs) -> Example:
    """SBT-D example; see :func:`build_example`."""
    return build_example(trace, gold, "sbt-d", tokenizer, **kwargs)


def token_mask(tokenizer, content: str, masked_spans) -> tuple[list[int], list[int]]:
    """Token ids of ``content`` and their loss mask: 0 for a token overlapping a masked span."""
    backend = getattr(tokenizer, "backend_tokenizer", None) or tokenizer
    enc = backend.encode(content, add_special_tokens=False)
    ends = [e for _, e in enc.offsets]
    starts = [s for s, _ in enc.offsets]
    mask = [1] * len(enc.ids)
    for a, b in masked_spans:
        for i in range(bisect_left(ends, a + 1), bisect_left(starts, b)):
            mask[i] = 0
    return list(enc.ids), mask
