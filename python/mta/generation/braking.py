"""Per-sample braking reports for :func:`mta.generate` (Self-Braking decoding).

Whether and why a row braked, and where its brake began, come from the processor's
:class:`~mta_kernels.braking.BrakingState`; the rest is read off the generated tokens, so the
counts are exact however the row ended (EOS, stop string, length cap), including the last
token, which no processor sees.

Thinking tokens have one meaning everywhere (the processor's state, these reports, the
demo): the tokens the model generated inside the thinking. The forced brake text is not
thinking — :attr:`BrakingReport.forced_tokens` counts it — nor is the closing tag or a final
EOS. So a braked row's thinking tokens are the state's ``thinking_tokens``, and greedy
decoding with braking never thinks longer than without.
"""

from __future__ import annotations

from collections.abc import Set
from dataclasses import dataclass

import torch

from mta_kernels.braking import BRAKE_REASONS
from mta_kernels.integrations.transformers import BrakingLogitsProcessor

__all__ = ["BrakingReport", "braking_reports"]


@dataclass(frozen=True)
class BrakingReport:
    """How one sample thought and whether it braked.

    Attributes
    ----------
    thinks : bool
        The row started inside ``<think>`` (False: a ThinkFree row, left untouched).
    thinking_tokens : int
        Tokens the model generated inside the thinking: before the end-of-thinking token
        when it ended naturally, before the brake text when it braked, all generated tokens
        but a final EOS when thinking never ended; 0 for ThinkFree rows.
    forced_tokens : int
        Tokens of the brake text forced into the output (the closing tag included); 0 when
        the row did not brake, fewer than the brake text when the output ends inside it.
    ended_thinking : bool
        The end-of-thinking token was generated (naturally or forced).
    braked : bool
        A trigger fired and the brake text was forced (at least its first token is in the
        output).
    reason : str
        ``"none"``, ``"budget"``, ``"marker ratio"``, ``"steps"`` or ``"margin"``.
    marker_tokens, steps : int
        The controller's counters when decoding stopped (thinking tokens covered by a
        marker phrase, step delimiters seen).
    """

    thinks: bool
    thinking_tokens: int
    forced_tokens: int
    ended_thinking: bool
    braked: bool
    reason: str
    marker_tokens: int
    steps: int


def _per_row(value: bool | torch.Tensor, rows: int) -> list[bool]:
    if isinstance(value, torch.Tensor):
        return [bool(v) for v in value.reshape(-1).tolist()] if value.dim() else [bool(value)] * rows
    return [bool(value)] * rows


def braking_reports(
    processor: BrakingLogitsProcessor, token_ids: list[list[int]], eos: Set[int]
) -> list[BrakingReport]:
    """One :class:`BrakingReport` per generated sample.

    Works after :func:`mta.generate` (which calls it) and after transformers' ``generate``
    (``token_ids``: each row's generated tokens, cut after its EOS).

    Parameters
    ----------
    processor : BrakingLogitsProcessor
        The controller that ran during generation (its state is read, not changed).
    token_ids : list of list of int
        Each sample's generated tokens.
    eos : set of int
        EOS ids: a final EOS is not a thinking token.
    """
    rows = len(token_ids)
    end = processor.tables.end_think_id
    brake = processor.tables.brake_ids.tolist()
    state = processor.state
    if state is not None and state.batch_size == rows:
        braked = state.braked.tolist()
        reason = state.brake_reason.tolist()
        brake_at = state.thinking_tokens.tolist()  # a braked row's thinking stopped where its brake began
        markers = state.marker_tokens.tolist()
        steps = state.steps.tolist()
    else:  # never called (max_new_tokens=0)
        braked, reason, brake_at, markers, steps = ([0] * rows for _ in range(5))
    thinks = _per_row(processor.in_think, rows)
    reports = []
    for b, toks in enumerate(token_ids):
        k = int(brake_at[b])
        # The brake is in the output when the tokens from its start are the brake text (a
        # row cut by a stop string before it, or finished first, shows none of it).
        forced = 0
        if thinks[b] and braked[b] and k < len(toks):
            forced = min(len(brake), len(toks) - k)
            if toks[k: k + forced] != brake[:forced]:
                forced = 0
        if not thinks[b]:
            n_think, ended = 0, False
        elif forced:
            n_think, ended = k, end in toks[k: k + forced]
        elif end in toks:
            n_think, ended = toks.index(end), True
        else:
            n_think, ended = len(toks) - (1 if toks and toks[-1] in eos else 0), False
        reports.append(BrakingReport(
            thinks=thinks[b], thinking_tokens=n_think, forced_tokens=forced, ended_thinking=ended,
            braked=forced > 0, reason=BRAKE_REASONS[int(reason[b])] if forced else "none",
            marker_tokens=int(markers[b]), steps=int(steps[b]),
        ))
    return reports
