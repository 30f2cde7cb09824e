"""The functional braking step: checks every argument, then runs the op's kernel.

A decode loop that calls it every token can build a
:class:`~mta_kernels.braking.BrakingController` instead, which makes these checks once.
"""

from __future__ import annotations

import torch

from mta_kernels._validation import check_float_2d, check_row_ints
from mta_kernels.braking.ops import BRAKING_STEP
from mta_kernels.braking.state import BrakingConfig, BrakingState
from mta_kernels.braking.tables import MarkerTables

__all__ = ["braking_step", "check_config", "check_forced_ids", "check_tables"]


def check_tables(tables: object) -> MarkerTables:
    if not isinstance(tables, MarkerTables):
        raise TypeError(f"tables must be MarkerTables, got {type(tables).__name__}")
    return tables


def check_config(cfg: object) -> BrakingConfig:
    if not isinstance(cfg, BrakingConfig):
        raise TypeError(f"cfg must be a BrakingConfig, got {type(cfg).__name__}")
    return cfg


def check_forced_ids(tables: MarkerTables, vocab: int) -> None:
    if tables.max_forced_id >= vocab:
        raise ValueError(f"tables force token id {tables.max_forced_id}, outside the logits' vocabulary V={vocab}")


def _check(logits, last_tokens, state, tables, cfg) -> torch.Tensor:
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
    check_tables(tables)
    if tables.device != device:
        raise ValueError(f"tables are on {tables.device} but logits are on {device}; use tables.to(device)")
    check_forced_ids(tables, V)
    state.ensure_fits(tables)
    check_config(cfg)
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
        Its values must index ``tables`` (:meth:`BrakingState.ensure_fits`): a state
        carried over to smaller tables raises ``ValueError``.
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
    config = cfg.normalised(B, logits.device)
    if B == 0:
        return logits
    kernel = BRAKING_STEP.kernel(logits.device)
    kernel(logits, last_tokens, state.counters, state.flags, tables.packed, tables.layout, config)
    return logits
