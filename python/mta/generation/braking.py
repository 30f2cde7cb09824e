"""Per-sample braking reports for :func:`mta.generate` (Self-Braking decoding).

The braking decisions (whether and why a row braked) come from the controller's
:class:`~mta_kernels.braking.BrakingState`; the thinking length is read off the generated
tokens, so it is exact however the row ended (EOS, stop string, length cap).
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
        Generated tokens before the end-of-thinking token (forced brake text included); all
        generated tokens but a final EOS when thinking never ended; 0 for ThinkFree rows.
    ended_thinking : bool
        The end-of-thinking token was generated (naturally or forced).
    braked : bool
        A trigger fired and the brake text was forced.
    reason : str
        ``"none"``, ``"budget"``, ``"marker ratio"``, ``"steps"`` or ``"margin"``.
    marker_tokens, steps : int
        The controller's counters when decoding stopped (thinking tokens covered by a
        marker phrase, step delimiters seen).
    """

    thinks: bool
    thinking_tokens: int
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
    state = processor.state
    if state is not None and state.batch_size == rows:
        braked = state.braked.tolist()
        reason = state.brake_reason.tolist()
        markers = state.marker_tokens.tolist()
        steps = state.steps.tolist()
    else:  # never called (max_new_tokens=0)
        braked, reason, markers, steps = [False] * rows, [0] * rows, [0] * rows, [0] * rows
    thinks = _per_row(processor.in_think, rows)
    reports = []
    for b, toks in enumerate(token_ids):
        ended = thinks[b] and end in toks
        if not thinks[b]:
            n_think = 0
        elif ended:
            n_think = toks.index(end)
        else:
            n_think = len(toks) - (1 if toks and toks[-1] in eos else 0)
        reports.append(BrakingReport(
            thinks=thinks[b], thinking_tokens=n_think, ended_thinking=ended, braked=bool(braked[b]),
            reason=BRAKE_REASONS[int(reason[b])], marker_tokens=int(markers[b]), steps=int(steps[b]),
        ))
    return reports
