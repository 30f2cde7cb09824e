"""SBT-E and SBT-D training examples from one long chain-of-thought trace.

Assistant content layout (``M`` = masked out of the loss, everything else trained)::

    SBT-E: <think>\\n{foundation + evolution steps}\\n\\n{E_PHRASE}\\n\\n{M: next steps}\\n</think>\\n\\n{answer}
    SBT-D: <think>\\n{steps with score < τ1}\\n\\n{M: steps with score < τ2}\\n\\n{D_PHRASE}\\n</think>\\n\\n{answer}

Foundation = steps up to the first step holding the gold answer; evolution = the steps after
it up to the next step holding it again. A trace with nothing to cut (no second confirmation
for SBT-E, every prefix below τ1 for SBT-D, or the cut falling on the last step) is kept whole
with ``braked = False``.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass, field

from mta.sbt.markers import SBT_MARKERS
from mta.sbt.scoring import BETA, TAU1, analyse_trace, prefix_scores
from mta.sbt.tokens import token_offsets
from mta.sbt.traces import TraceError

__all__ = ["E_PHRASE", "D_PHRASE", "Example", "build_sbt_e", "build_sbt_d", "build_example", "token_mask"]

E_PHRASE = "Wait, I've gotten the same answer multiple times, time to end the thinking."
D_PHRASE = "Wait, my answer is too verbose, let me answer it more concisely."


@dataclass
class Example:
    content: str                             # the assistant message
    masked_spans: list[tuple[int, int]]      # character spans of content left out of the loss
    braked: bool
    steps_total: int
    steps_kept: int
    steps_masked: int
    first_correct_step: int
    thinking_tokens_before: int
    thinking_tokens_after: int = 0           # tokens of the new thinking (kept + phrase + masked)
    info: dict = field(default_factory=dict)


def _assemble(steps: list[str], kept: int, masked: int, phrase: str, phrase_first: bool, answer: str):
    segs: list[tuple[str, bool]] = [("<think>\n", True)]
    body = "\n\n".join(steps[:kept])
    m_text = "\n\n".join(steps[kept:kept + masked])
    if phrase is None:
        segs.append((body, True))
    elif phrase_first:
        segs.append((body + "\n\n" + phrase, True))
        if m_text:
            segs += [("\n\n", True), (m_text, False)]
    else:
        segs.append((body, True))
        if m_text:
            segs += [("\n\n", True), (m_text, False)]
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


def build_example(trace: str, gold, method: str, tokenizer=None, *, masked_steps: int = 2,
                  beta: float = BETA, tau1: float = TAU1, tau2: float | None = None,
                  anchor: str = "sentence", markers=SBT_MARKERS) -> Example:
    """Build one SBT-E (``method="sbt-e"``) or SBT-D (``"sbt-d"``) example.

    Parameters
    ----------
    trace, gold : str
        ``<think>…</think>answer`` and the gold answer (math-verify).
    tokenizer : fast tokenizer or tokenizers.Tokenizer
        Counts tokens (needed by SBT-D's scores and for the token counts reported).
    masked_steps : int
        SBT-E: how many steps after the brake phrase stay as masked-out text.
    tau1, tau2 : float
        SBT-D thresholds (τ2 defaults to τ1 + 0.05).

    Raises
    ------
    TraceError
        Unusable trace, or ``"never correct"`` when no thinking step holds the gold answer.
    """
    if method not in ("sbt-e", "sbt-d"):
        raise ValueError(f"method must be 'sbt-e' or 'sbt-d', got {method!r}")
    if not isinstance(masked_steps, int) or masked_steps < 0:
        raise ValueError(f"masked_steps must be an int >= 0, got {masked_steps!r}")
    tau2 = tau1 + 0.05 if tau2 is None else tau2
    if not 0.0 <= tau1 <= tau2:
        raise ValueError(f"tau1/tau2 must satisfy 0 <= tau1 <= tau2, got {tau1}, {tau2}")
    if tokenizer is None:
        raise ValueError("tokenizer: a tokenizer is needed to count tokens")
    a = analyse_trace(trace, gold, tokenizer, anchor=anchor, markers=markers,
                      want_correct=2 if method == "sbt-e" else 1)
    if not a.correct_steps:
        raise TraceError("never correct")
    t = a.trace
    steps = [t.thinking[s:e] for s, e in t.steps]
    n = len(steps)
    first = a.correct_steps[0] + 1
    info: dict = {}
    if method == "sbt-e":
        kept = a.correct_steps[1] + 1 if len(a.correct_steps) > 1 else n
        masked = min(masked_steps, n - kept)
        phrase, phrase_first = E_PHRASE, True
    else:
        scores = prefix_scores(a, beta)
        kept = next((k for k, s in enumerate(scores) if s >= tau1), n)  # steps before the first ≥ τ1
        masked = 0
        while kept + masked < n and scores[kept + masked] < tau2:
            masked += 1
        phrase, phrase_first = D_PHRASE, False
        info["prefix_scores"] = [round(s, 6) for s in scores]
    braked = kept < n
    if not braked:
        masked, phrase = 0, None
    content, spans, new_thinking = _assemble(steps, kept, masked, phrase, phrase_first, t.answer)
    return Example(content, spans, braked, n, kept, masked, first, len(a.offsets),
                   len(token_offsets(tokenizer, new_thinking)), info)


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
