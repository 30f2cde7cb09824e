"""Pure-torch reference of the braking step, vectorised over rows.

The CPU fallback without the extension, the oracle the C++ and CUDA kernels are tested
against, and the benchmarks' "torch reference". Nothing here loops over the vocabulary
except the margin trigger's row max (and the write of the forced row).

Semantics shared by every backend (this docstring is the contract the kernels are tested against)
-------------------------------------------------------------------------
Stage 1, consume ``last_tokens[b]`` (negative: nothing to consume).
  * Thinking, not braking: ``end_think_id`` ends thinking (it is not a thinking token).
    Any other token: ``thinking_tokens += 1`` (its 1-based position ``t``); the automaton
    advances (tokens outside the class map are class 0); if markers end here, with ``L``
    the longest, ``marker_tokens += t - max(counted_until, t - L)`` and
    ``counted_until = t`` (tokens covered by several occurrences count once); the
    step-delimiter matcher advances, ``code = step_table[step_class[token], delim_state]``,
    ``delim_state = code & 3`` and ``steps += code >> 2`` (delimiters the token completes).
  * Braking: ``brake_pos += 1``; consuming ``end_think_id`` (or running past the forced
    sequence) ends thinking and braking.
Stage 2, for rows still thinking and not braking, the first trigger that holds starts
  braking (``brake_pos = 0``, ``braked``, ``brake_reason``): 1 budget ``thinking_tokens >=
  max_thinking_tokens`` (negative: off); 2 ratio ``thinking_tokens >= min_thinking_tokens``,
  ``thinking_tokens > 0`` and ``marker_tokens / thinking_tokens >= marker_ratio`` (fp64
  division; NaN or inf: off); 3 steps ``steps >= max_steps`` (negative: off); 4 margin
  ``max(z) - z[end_think_id] <= end_think_margin`` on this step's logits in fp32 (NaN logits
  count as -inf; NaN margin: off) — the log-softmax normaliser cancels, so only the row max
  is read.
Stage 3, braking rows: every logit becomes -inf except ``brake_ids[brake_pos]`` = 0.
  Other rows are untouched.
Out-of-range indices: on the CPU a state value some row would index the tables with
  (``ac_state``, ``delim_state``, ``brake_pos``; e.g. a state carried over to smaller
  tables) raises ``ValueError``. Elsewhere reading the state would cost a host sync, so every
  index read from a tensor is clamped instead, as ``csrc/braking_row.h`` does: an
  automaton state, class or step class outside its table reads as 0, a delimiter state
  outside 0..2 as ``DELIM_START``, ``brake_pos`` into ``[0, K)``, a forced id outside the
  logits as ``end_think_id``.
"""

from __future__ import annotations

import torch

from mta_kernels.braking.layout import Config, Counter, Flag, TableField
from mta_kernels.braking.state import DELIM_START, state_problem
from mta_kernels.braking.tables import table_views

__all__ = ["braking_step_reference"]

_NEG_INF = float("-inf")


def _index_or(i: torch.Tensor, n: int, fallback: int) -> torch.Tensor:
    """``i`` where it indexes a table of ``n`` entries, else ``fallback`` (braking_row.h's index_or)."""
    return torch.where((i >= 0) & (i < n), i, fallback)


def braking_step_reference(
    logits: torch.Tensor,
    last_tokens: torch.Tensor,
    counters: torch.Tensor,
    flags: torch.Tensor,
    tables: torch.Tensor,
    table_layout: tuple[int, ...],
    config: torch.Tensor,
) -> None:
    """Same arguments as ``torch.ops.mta.braking_step`` (the packed layout of
    :mod:`mta_kernels.braking.layout`); mutates logits, counters and flags in place.

    The margin trigger reads the rows unless every row's margin is off (NaN), which is
    only looked at for CPU tensors (elsewhere it would cost a host synchronisation).
    """
    counter, flag = counters.unbind(1), flags.unbind(1)  # views: copy_ writes the state
    thinking_tokens, marker_tokens = counter[Counter.THINKING_TOKENS], counter[Counter.MARKER_TOKENS]
    steps, brake_reason = counter[Counter.STEPS], counter[Counter.BRAKE_REASON]
    ac_state, counted_until = counter[Counter.AC_STATE], counter[Counter.COUNTED_UNTIL]
    brake_pos, delim_state = counter[Counter.BRAKE_POS], counter[Counter.DELIM_STATE]
    in_think, braking, braked = flag[Flag.IN_THINK], flag[Flag.BRAKING], flag[Flag.BRAKED]
    max_thinking_tokens, marker_ratio = config[:, Config.MAX_THINKING_TOKENS], config[:, Config.MARKER_RATIO]
    min_thinking_tokens, max_steps = config[:, Config.MIN_THINKING_TOKENS], config[:, Config.MAX_STEPS]
    end_think_margin = config[:, Config.END_THINK_MARGIN]
    named = table_views(tables, tuple(table_layout))
    token_class, transitions, match_len = named["token_class"], named["transitions"], named["match_len"]
    step_class, step_table, brake_ids = named["step_class"], named["step_table"], named["brake_ids"]
    end_think_id = table_layout[TableField.END_THINK_ID]

    V_tab, S = token_class.shape[0], transitions.shape[0]
    K = brake_ids.shape[0]
    if counters.device.type == "cpu":
        problem = state_problem(counters, flags, S, K)
        if problem is not None:
            raise ValueError(f"braking_step: {problem}")
    tok = last_tokens.long()
    valid = tok >= 0
    in_range = valid & (tok < V_tab)
    safe = torch.where(in_range, tok, torch.zeros_like(tok))
    cls = torch.where(in_range, _index_or(token_class[safe].long(), transitions.shape[1], 0), torch.zeros_like(tok))
    scls = torch.where(in_range, _index_or(step_class[safe].long(), step_table.shape[0], 0), torch.zeros_like(tok))
    is_end = tok == end_think_id

    # Stage 1: consume.
    thinking = valid & in_think & ~braking
    ends = thinking & is_end
    cons = thinking & ~is_end
    t = thinking_tokens + cons.long()
    from_state = _index_or(ac_state.long(), S, 0)
    nstate = torch.where(cons, _index_or(transitions[from_state, cls].long(), S, 0), ac_state.long())
    L = match_len[_index_or(nstate, S, 0)].long()
    hit = cons & (L > 0)
    added = t - torch.maximum(counted_until, t - L)
    new_marker = marker_tokens + torch.where(hit, added, torch.zeros_like(added))
    new_counted = torch.where(hit, t, counted_until)
    code = step_table[scls, _index_or(delim_state.long(), 3, DELIM_START)].long()
    new_delim = torch.where(cons, code & 3, delim_state.long())
    new_steps = steps + torch.where(cons, code >> 2, torch.zeros_like(code))

    forcing = valid & in_think & braking
    new_pos = torch.where(forcing, _index_or(brake_pos, K, K - 1) + 1, brake_pos)
    brake_done = forcing & (is_end | (new_pos >= K))
    new_in_think = in_think & ~ends & ~brake_done
    new_braking = braking & ~brake_done

    # Stage 2: triggers, in order.
    active = new_in_think & ~new_braking
    budget = active & (max_thinking_tokens >= 0) & (t >= max_thinking_tokens)
    ratio = (
        active & (t >= min_thinking_tokens) & (t > 0)
        & (new_marker.double() / t.clamp(min=1).double() >= marker_ratio.double())
    )
    many_steps = active & (max_steps >= 0) & (new_steps >= max_steps)
    reason = torch.where(budget, 1, torch.where(ratio, 2, torch.where(many_steps, 3, 0)))
    if logits.device.type != "cpu" or not bool(end_think_margin.isnan().all()):
        x = logits.float().nan_to_num(nan=_NEG_INF)
        gap = x.amax(dim=1) - x[:, end_think_id]
        margin = active & (gap <= end_think_margin)
        reason = torch.where((reason == 0) & margin, 4, reason)
    trigger = reason > 0
    new_braking = new_braking | trigger
    new_pos = torch.where(trigger, torch.zeros_like(new_pos), new_pos)

    thinking_tokens.copy_(t)
    marker_tokens.copy_(new_marker)
    counted_until.copy_(new_counted)
    steps.copy_(new_steps)
    delim_state.copy_(new_delim)
    ac_state.copy_(nstate.to(ac_state.dtype))
    in_think.copy_(new_in_think)
    braking.copy_(new_braking)
    braked.copy_(braked | trigger)
    brake_reason.copy_(torch.where(trigger, reason.to(brake_reason.dtype), brake_reason))
    brake_pos.copy_(new_pos)

    # Stage 3: force the next brake token.
    forced = _index_or(brake_ids[new_pos.clamp(0, K - 1)], logits.shape[1], end_think_id).unsqueeze(1)
    rows = new_braking.unsqueeze(1)
    logits.masked_fill_(rows, _NEG_INF)
    current = logits.gather(1, forced)
    logits.scatter_(1, forced, torch.where(rows, torch.zeros_like(current), current))
