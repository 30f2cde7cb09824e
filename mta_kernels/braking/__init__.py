"""Fused braking decoding step (Self-Braking Tuning, arXiv 2505.14604).

One call per decode step, one launch for the batch, no host synchronisation: consume the
last sampled token (thinking-token, marker-coverage and step counters, a token-level
Aho–Corasick automaton over the marker phrases), evaluate the braking triggers (budget,
marker ratio, steps, end-of-thinking margin) and force the brake text on braking rows.

Three layers: this module (checks + dispatch) -> kernels (``csrc/cpu/braking.cpp``,
``csrc/cuda/braking.cu``) -> the torch reference in ``reference.py``, which also states the
exact semantics.
"""

from __future__ import annotations

import torch

from mta_kernels._backend import Op
from mta_kernels._validation import check_float_2d, check_row_ints
from mta_kernels.braking.reference import braking_step_reference
from mta_kernels.braking.state import BRAKE_REASONS, DELIM_START, BrakingConfig, BrakingState
from mta_kernels.braking.tables import DEFAULT_BRAKE_TEXT, SBT_MARKERS, MarkerTables

__all__ = [
    "BRAKE_REASONS",
    "DELIM_START",
    "DEFAULT_BRAKE_TEXT",
    "SBT_MARKERS",
    "BrakingConfig",
    "BrakingState",
    "MarkerTables",
    "braking_step",
    "braking_step_reference",
]

BRAKING_STEP = Op(
    "braking_step",
    {"reference": braking_step_reference, "cpp": "mta::braking_step", "cuda": "mta::braking_step"},
    preferred={"cuda": ("cuda",), "cpu": ("cpp",)},
)


def _check(logits, last_tokens, state, tables, cfg):
    check_float_2d(logits, "logits", "[B, V]")
    if not logits.is_contiguous():
        raise ValueError("logits must be contiguous (braking_step writes it in place)")
    B, V = logits.shape
    device = logits.device
    if not isinstance(state, BrakingState):
        raise TypeError(f"state must be a BrakingState, got {type(state).__name__}")
    if state.batch_size != B:
        raise ValueError(f"state has {state.batch_size} rows but logits has B={B}")
    if state.device != device:
        raise ValueError(f"state is on {state.device} but logits are on {device}")
    if not isinstance(tables, MarkerTables):
        raise TypeError(f"tables must be MarkerTables, got {type(tables).__name__}")
    if tables.device != device:
        raise ValueError(f"tables are on {tables.device} but logits are on {device}; use tables.to(device)")
    if tables.max_forced_id >= V:
        raise ValueError(f"tables force token id {tables.max_forced_id}, outside the logits' vocabulary V={V}")
    if not isinstance(cfg, BrakingConfig):
        raise TypeError(f"cfg must be a BrakingConfig, got {type(cfg).__name__}")
    if last_tokens is None:
        last_tokens = torch.full((B,), -1, dtype=torch.int64, device=device)
    return check_row_ints(last_tokens, "last_tokens", B, device).contiguous()


def braking_step(
    logits: torch.Tensor,
    last_tokens: torch.Tensor | None,
    state: BrakingState,
    tables: MarkerTables,
    cfg: BrakingConfig,
) -> torch.Tensor:
    """One braking decode step, in place on ``logits`` and ``state``.

    Parameters
    ----------
    logits : Tensor [B, V] float32 / bfloat16 / float16, contiguous
        This step's logits; braking rows become ``-inf`` except the next forced token (0).
    last_tokens : Tensor [B] int, or None
        The token each row sampled at the previous step; negative (or ``None`` for all rows)
        means nothing to consume, e.g. at the first step.
    state : BrakingState
        Updated in place (see :mod:`mta_kernels.braking.reference` for the exact rules).
    tables : MarkerTables
        On the logits' device.
    cfg : BrakingConfig
        Triggers, scalars or per-row tensors.

    Returns
    -------
    Tensor [B, V]
        ``logits`` itself.

    Examples
    --------
    >>> import torch
    >>> from mta_kernels.braking import MarkerTables, BrakingState, BrakingConfig, braking_step
    >>> tables = MarkerTables.from_token_ids([[4]], [5], 2, [3, 2], vocab_size=8)
    >>> state = BrakingState.new(1)
    >>> out = braking_step(torch.zeros(1, 8), None, state, tables, BrakingConfig(max_thinking_tokens=0))
    >>> out[0].tolist()
    [-inf, -inf, -inf, 0.0, -inf, -inf, -inf, -inf]
    """
    last_tokens = _check(logits, last_tokens, state, tables, cfg)
    B = logits.shape[0]
    params = cfg.normalised(B, logits.device)
    if B == 0:
        return logits
    backend = BRAKING_STEP.backend(logits.device)
    t = tables
    if backend == "reference":
        margin = None if cfg.end_think_margin is None else params[4]
        braking_step_reference(
            logits, last_tokens, *state.tensors(), t.token_class, t.transitions, t.match_len,
            t.step_class, t.step_table, t.brake_ids, t.end_think_id, *params[:4], margin,
        )
    else:
        torch.ops.mta.braking_step(
            logits, last_tokens, *state.tensors(), t.token_class, t.transitions, t.match_len,
            t.step_class, t.step_table, t.brake_ids, t.end_think_id, *params,
        )
    return logits
