"""Dropping finished rows from the decode batch: ``mta.generate(compact_every=k)``.

In a rollout batch the lengths are long-tailed: a few samples run to the length cap while
most end early, and a plain loop keeps running the model on the finished rows. With
``compact_every=k`` the loop looks every ``k`` steps at which rows are finished (one host
sync) and, when some are, keeps only the live ones — their KV-cache rows, per-row tensors
and sampler rows — so later steps cost what the live rows cost.

The result does not depend on it: the dropped rows' tokens are kept aside and joined back
at the end, and the plain sampler still draws the full batch's uniforms each step (see
:class:`mta.generation.sampler.PlainSampler`), so greedy and seeded decoding give the same
tokens as the uncompacted loop (up to the model's own batch-size-dependent rounding).
"""

from __future__ import annotations

import torch

from mta.generation.plan import GenerationPlan
from mta.generation.sampler import DecodeSampler
from mta.generation.stops import StopChecker
from mta_kernels._validation import check_int

__all__ = ["check_compaction", "compact", "full_batch_update", "keep_rows", "restore_rows"]

# The engine's per-row tensors (``_Rows``): what the result is read from (kept full-size
# aside while compacted), and what only the loop uses.
RESULT_FIELDS = ("seq", "logprobs", "entropies", "lengths", "aborted")
LOOP_FIELDS = ("mask", "prompt_lengths", "position", "finished")


def check_compaction(compact_every: int, plan: GenerationPlan, sampler: DecodeSampler, logits_processors) -> int:
    """``compact_every`` checked against the rest of the call (0 = off), before any compute.

    Plain logits processors (transformers' kind) see the live rows only; processors that
    keep per-row state (``call_with_state``: mta_kernels' braking and mixing processors),
    braking and mixing are refused, as is a compiled (fixed-shape) step."""
    every = check_int(compact_every, "compact_every", lo=0)
    if not every:
        return 0
    if plan.compile:
        raise ValueError("compact_every needs compile=False: a compiled decode step has a fixed batch size")
    if plan.braking is not None:
        raise ValueError("compact_every cannot be used with braking: the braking controller keeps per-row state "
                         "for the full batch")
    procs = [logits_processors] if callable(logits_processors) else list(logits_processors or [])
    if any(callable(getattr(p, "call_with_state", None)) for p in procs):
        raise ValueError("compact_every cannot be used with a logits processor that keeps per-row state "
                         "(one with call_with_state)")
    if not callable(getattr(sampler, "keep_rows", None)):
        raise ValueError(f"compact_every: this sampler ({type(sampler).__name__}) cannot drop rows (mixing decodes "
                         "its other models in lockstep with their own caches); use compact_every=0")
    return every


def compact(rows, kv, sampler: DecodeSampler, tokens: torch.Tensor) -> torch.Tensor | None:
    """Drop the finished rows from ``rows``, the cache ``kv`` and ``sampler``.

    Returns the kept rows' ``tokens`` (what the next step feeds), ``tokens`` itself when no
    row finished, or None when every row has.
    """
    keep = (~rows.finished).nonzero().squeeze(1)  # the host sync
    if keep.numel() == tokens.numel():
        return tokens
    if keep.numel() == 0:
        return None
    keep_rows(rows, keep)
    kv.reorder_cache(keep)  # index_select of every layer's keys and values (dynamic or static)
    sampler.keep_rows(keep)
    return tokens[keep]


def keep_rows(rows, index: torch.Tensor) -> None:
    """Keep only rows ``index`` (positions in the current rows) in the loop's tensors; the
    dropped rows' results go to full-size tensors that :func:`restore_rows` puts back."""
    if rows.index is None:
        rows.full = {f: getattr(rows, f) for f in RESULT_FIELDS if getattr(rows, f) is not None}
        rows.index = torch.arange(rows.seq.shape[0], device=rows.seq.device)
    else:
        _write_back(rows)
    for f in RESULT_FIELDS + LOOP_FIELDS:
        if getattr(rows, f) is not None:
            setattr(rows, f, getattr(rows, f)[index])
    rows.index = rows.index[index]
    state = rows.state
    state.prompt_indices = state.prompt_indices[index]
    state.prompt_lengths, state.finished = rows.prompt_lengths, rows.finished


def _write_back(rows) -> None:
    for f, full in rows.full.items():
        full[rows.index] = getattr(rows, f)


def restore_rows(rows) -> None:
    """Every row again (after the loop): the live rows' results joined with the dropped ones'."""
    if rows.index is None:
        return
    _write_back(rows)
    for f, full in rows.full.items():
        setattr(rows, f, full)
    rows.index, rows.full = None, {}


def full_batch_update(checker: StopChecker, index: list[int], chunk: list[list[int]],
                      lengths: list[int]) -> list[int]:
    """:meth:`StopChecker.update` when only rows ``index`` (original rows) are live.

    The checker tracks every original row; the dropped ones are finished and were searched
    before they were dropped, so they get nothing new. Returns the live positions that hit.
    """
    full_chunk = [[] for _ in checker.tokens]
    full_lengths = [len(t) for t in checker.tokens]
    for i, row in enumerate(index):
        full_chunk[row], full_lengths[row] = chunk[i], lengths[i]
    position = {row: i for i, row in enumerate(index)}
    return [position[row] for row in checker.update(full_chunk, full_lengths)]
