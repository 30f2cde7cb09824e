"""Split-row Triton kernels: many programs per row when the batch cannot fill the GPU.

``triton_row.py`` runs one program per row, so at B=1 a single SM walks the whole
vocabulary (V=151936) through about ten passes while the rest of the GPU idles. Here each
row is cut into chunks of ``chunk`` tokens and one call takes two launches (three for
``filter``), with no host synchronisation:

1. ``_chunk_kernel``, grid (B, chunks), reading each chunk from memory once
   (:func:`summarise_chunk`): the chunk's max (of the raw logits), first argmax and softmax
   mass relative to its max and, for a row with a cut, its *candidates*: every finite token at or above the
   chunk's own c-th largest (the exact radix select of the one-program kernel, run on the
   chunk; ties included), stored in vocabulary order in a per-row buffer with room for
   ``c + TIE_SLACK`` per chunk, the rest padded with -inf. ``c`` is the row's top-k when
   ``0 < k <= K_MAX``, or ``PROBE`` for a row cut only by top-p / min-p.
2. ``_merge_sample_kernel``, one program per row (:func:`merge_and_sample`): the row max
   and first argmax from the chunk maxima (greedy rows, and rows whose max a tiny
   temperature overflows, stop here), then the one-program
   kernel's cuts and draw (the same ``triton_primitives`` helpers) run on the candidate
   buffer as if it were the row; the padding is never kept, and the buffer is in
   vocabulary order, so the inverse-CDF draw with the row's uniform picks the same token
   with the same logprob.

   * top-k rows: a token at or above the row's k-th largest has fewer than k tokens above
     it in the row, hence in its chunk, so it is a candidate: the candidates hold all that
     top-k keeps, and their k-th largest is the row's. The ~k survivors are then moved to
     the front of the buffer, and top-p, min-p and the draw scan only them.
   * top-p / min-p rows: every non-candidate lies below ``T_lo``, the largest chunk bound.
     A top-p walk on the candidates (relative to the whole row's mass, summed from the
     chunk masses) that ends at or above ``T_lo`` only ever summed complete buckets, so its
     cut is the row's; without top-p, a min-p threshold at or above ``T_lo`` is served.
   * rows with nothing to cut (temperature only): the chunk masses give the CDF at chunk
     ends, so the draw finds the chunk holding ``u * Z`` and scans that chunk alone.
   * the rest (no candidates: top-k above ``K_MAX`` or a buffer no shorter than the row;
     more than ``TIE_SLACK`` extra ties in a chunk; a top-p / min-p cut below ``T_lo``) run
     the one-program algorithm on the full row in the same program, with the max already
     known: exact, just not faster. Every choice is made on the device.
3. ``filter`` writes the filtered row with a third launch, grid (B, chunks), from the
   per-row cut (for candidate rows an exact key: the smallest kept candidate's).

The two phases talk through one :class:`Workspace` buffer (its layout is described in
``triton_split_row_workspace.py``). The mixing kernels reuse both phases: their chunk kernel writes the mixture and
calls :func:`summarise_chunk` on it, then :func:`merge_and_sample` finishes each row.

Tokens and logprobs equal the one-program kernel's and the reference's up to float
summation order exactly at a cut or CDF boundary, as between any two backends.

Why one module over 450 lines: both phases and both ops (sample, filter) share the
private candidate rule (``_candidates_per_chunk``) and the merged cut (``_merged_cut``);
split apart, those would become public for no caller outside this path.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from mta_kernels.sampling.triton_primitives import (
    BLOCK,
    INT32_MAX,
    LOW32,
    NO_KEY,
    inverse_cdf_draw,
    load_row_params,
    load_z,
    max_and_scale,
    order_key,
    radix_select,
    row_cut,
    row_max_argmax,
    token_logprob,
    weight,
)
from mta_kernels.sampling.triton_split_row_workspace import (
    BY_CHUNKS,
    FULL_ROW,
    PLANE_ARG,
    PLANE_BOUND,
    PLANE_COUNT,
    PLANE_MASS,
    PLANE_MAX,
    ROW_FIRST,
    ROW_KEY_CUT,
    ROW_LAST,
    ROW_SERVED,
    ROW_T,
    ROW_Z_MIN,
    Workspace,
    candidate_slots,
    row_result_ptr,
    stat_ptr,
)

__all__ = [
    "BY_CHUNKS",
    "CHUNK",
    "FULL_ROW",
    "K_MAX",
    "PROBE",
    "TIE_SLACK",
    "Workspace",
    "filter_logits_split_row",
    "merge_and_sample",
    "program_chunk",
    "run_filter_logits_split_row",
    "run_sample_split_row",
    "sample_split_row",
    "summarise_chunk",
    "workspace",
]

# The launchers read these module attributes at call time (tests shrink them).
# Tokens per chunk: V=151936 gives 38 chunks of 4 tiles. Chunk work grows with the chunk and
# merge work with chunks * k, so this balances the two for top-k ~ 50.
CHUNK = 4096
# Largest top-k served from candidates; room per chunk is k + TIE_SLACK (ties at the chunk's
# k-th value, common with bf16 logits, overflow into the full-row path only past the slack).
K_MAX = 1024
TIE_SLACK = 16
# Candidates per chunk for rows cut only by top-p / min-p: nuclei within the row's top
# PROBE tokens (the usual case for LLM logits) are served from them.
PROBE = 128

# The merge kernel's constexpr for the workspace's BY_CHUNKS.
_BY_CHUNKS = tl.constexpr(BY_CHUNKS)


def workspace(B: int, V: int, chunk: int, device: torch.device, k_max: int | None = None) -> Workspace:
    """An uninitialised :class:`Workspace` for B rows of V tokens cut into chunks of ``chunk``,
    with this module's ``TIE_SLACK``.

    ``k_max`` (default ``K_MAX``) sets the candidate room per chunk; a caller that knows
    its rows' top-k is small makes less room (rows that do not fit take the full-row path).
    """
    return Workspace.allocate(B, V, chunk, device, K_MAX if k_max is None else k_max, TIE_SLACK)


@triton.jit
def _candidates_per_chunk(
    greedy, top_k, top_p, min_p, V, n_chunks, K_MAX: tl.constexpr, PROBE: tl.constexpr, TIE_SLACK: tl.constexpr
):
    """c: how many largest tokens each chunk keeps as candidates; 0 for rows left to the
    full-row path (greedy, no cut, top-k above K_MAX, a buffer no shorter than the row)."""
    top_k_on = (top_k > 0) & (top_k < V)
    c = tl.where(top_k_on & (top_k <= K_MAX), top_k, 0)
    c = tl.where(~top_k_on & ((top_p < 1.0) | (min_p > 0.0)), PROBE, c)
    c = tl.where((greedy == 0) & (n_chunks * (c + TIE_SLACK) < V), c, 0)
    return c.to(tl.int32)


@triton.jit
def program_chunk(V, CHUNK_LEN):
    """``(row, chunk, n_chunks, first, n)`` of a program of a (B, chunks) grid over rows of
    ``V`` tokens cut into chunks of ``CHUNK_LEN``: its chunk holds the ``n`` tokens from
    vocabulary index ``first`` on."""
    row = tl.program_id(0)
    chunk = tl.program_id(1)
    first = chunk * CHUNK_LEN
    return row, chunk, tl.num_programs(1), first, tl.minimum(CHUNK_LEN, V - first)


@triton.jit
def summarise_chunk(
    chunk_ptr, n, first, row, chunk, n_chunks, ws_f, ws_i, B, V, greedy, t, top_k, top_p, min_p,
    K_MAX: tl.constexpr, PROBE: tl.constexpr, TIE_SLACK: tl.constexpr, BLOCK: tl.constexpr
):
    """Summarise one chunk of one row into the workspace (step 1 of the module docstring).

    Reads the ``n`` tokens at ``chunk_ptr`` (vocabulary indices ``first`` on; ``z = x / t``)
    of row ``row``, chunk ``chunk`` of ``n_chunks``, and writes the chunk's max, first
    argmax, mass, candidate bound and count into the statistics planes of the workspace
    (``ws_f`` / ``ws_i``: its fp32 and int32 views), and its candidates into the row's
    candidate slots. ``greedy, t, top_k, top_p, min_p``: the row's parameters as
    ``load_row_params`` returns them; ``B``, ``V``: the batch and the full row length.
    Launch with the ``K_MAX``, ``TIE_SLACK`` of the workspace and the ``PROBE`` the merge
    phase will use. Greedy rows write only the max and argmax. The max plane holds the
    raw ``x`` max: the merge needs it to tell whether the row's temperature overflows.
    """
    x_max, arg = row_max_argmax(chunk_ptr, n, BLOCK)
    m = x_max / t + 0.0
    c = _candidates_per_chunk(greedy, top_k, top_p, min_p, V, n_chunks, K_MAX, PROBE, TIE_SLACK)
    # Candidates are the finite tokens with key >= bound: none while bound is above every key.
    bound = tl.full((), NO_KEY, tl.int64)
    count = 0
    mass = 0.0
    if greedy == 0:
        cap = c + TIE_SLACK
        cand_z, cand_idx, _ = candidate_slots(ws_f, ws_i, row, B, n_chunks, c, K_MAX, TIE_SLACK)
        cand_z += chunk * cap
        cand_idx += chunk * cap
        if c > 0:
            bound = radix_select(chunk_ptr, n, t, m, tl.zeros((), tl.int64), c.to(tl.float32), -1.0, False, BLOCK)
        offs0 = tl.arange(0, BLOCK)
        for start in range(0, n, BLOCK):
            offs = start + offs0
            z = load_z(chunk_ptr, offs, n, t)
            finite = z > float("-inf")
            mass += tl.sum(tl.where(finite, weight(z, m), 0.0), axis=0)
            is_cand = finite & (order_key(z) >= bound)
            # Compaction in vocabulary order: the draw scans candidates as the row's order.
            slot = count + tl.cumsum(is_cand.to(tl.int32), axis=0) - 1
            fits = is_cand & (slot < cap)
            tl.store(cand_z + slot, z, mask=fits)
            tl.store(cand_idx + slot, first + offs, mask=fits)
            count += tl.sum(is_cand.to(tl.int32), axis=0)
        if c > 0:
            for start in range(count, cap, BLOCK):
                offs = start + offs0
                tl.store(cand_z + offs, float("-inf"), mask=offs < cap)
    tl.store(stat_ptr(ws_f, row, chunk, B, n_chunks, PLANE_MAX), x_max)
    tl.store(stat_ptr(ws_i, row, chunk, B, n_chunks, PLANE_ARG), first + arg)
    tl.store(stat_ptr(ws_f, row, chunk, B, n_chunks, PLANE_MASS), mass)
    # Keys are < 2^32: the low 32 bits in an int32 slot hold them exactly.
    tl.store(stat_ptr(ws_i, row, chunk, B, n_chunks, PLANE_BOUND), bound.to(tl.int32))
    tl.store(stat_ptr(ws_i, row, chunk, B, n_chunks, PLANE_COUNT), count)


@triton.jit
def _chunk_kernel(
    logits_ptr, ws_f, ws_i, temp_ptr, top_k_ptr, top_p_ptr, min_p_ptr, B, V, CHUNK_LEN,
    K_MAX: tl.constexpr, PROBE: tl.constexpr, TIE_SLACK: tl.constexpr, BLOCK: tl.constexpr
):
    row, chunk, n_chunks, first, n = program_chunk(V, CHUNK_LEN)
    chunk_ptr = logits_ptr + row.to(tl.int64) * V + first
    greedy, t, top_k, top_p, min_p = load_row_params(row, temp_ptr, top_k_ptr, top_p_ptr, min_p_ptr)
    summarise_chunk(
        chunk_ptr, n, first, row, chunk, n_chunks, ws_f, ws_i, B, V, greedy, t, top_k, top_p, min_p,
        K_MAX, PROBE, TIE_SLACK, BLOCK,
    )


@triton.jit
def _keep_top(cand_z, cand_idx, N, key_k, BLOCK: tl.constexpr):
    """Move the candidates with ``key >= key_k`` to the front, in order; returns how many.

    In place: a tile's survivors land at or before its own slots, so only slots already
    read are overwritten."""
    offs0 = tl.arange(0, BLOCK)
    kept = 0
    for start in range(0, N, BLOCK):
        offs = start + offs0
        z = load_z(cand_z, offs, N, 1.0)
        idx = tl.load(cand_idx + offs, mask=offs < N)
        # Every thread has read the tile before any thread overwrites part of it.
        tl.debug_barrier()
        keep = (z > float("-inf")) & (order_key(z) >= key_k)
        slot = kept + tl.cumsum(keep.to(tl.int32), axis=0) - 1
        tl.store(cand_z + slot, z, mask=keep)
        tl.store(cand_idx + slot, idx, mask=keep)
        kept += tl.sum(keep.to(tl.int32), axis=0)
    # Other threads read these slots next.
    tl.debug_barrier()
    return kept


@triton.jit
def _merged_cut(
    logits_ptr, ws_f, ws_i, row, B, V, n_chunks, greedy, t, top_k, top_p, min_p,
    K_MAX: tl.constexpr, PROBE: tl.constexpr, TIE_SLACK: tl.constexpr, CHUNKS_BLOCK: tl.constexpr,
    BLOCK: tl.constexpr
):
    """Row max of z, first argmax, key cut and min-p threshold of one row from the chunk
    results; ``c``, the candidates per chunk the cut was computed on (0: on the full row),
    ``n``, the candidate slots that hold the kept tokens, and the row's ``greedy`` and ``t``
    after :func:`max_and_scale`."""
    chunks = tl.arange(0, CHUNKS_BLOCK)
    inside = chunks < n_chunks
    chunk_x_max = tl.load(stat_ptr(ws_f, row, chunks, B, n_chunks, PLANE_MAX), mask=inside, other=float("-inf"))
    chunk_arg = tl.load(stat_ptr(ws_i, row, chunks, B, n_chunks, PLANE_ARG), mask=inside, other=INT32_MAX)
    x_max = tl.max(chunk_x_max, axis=0)
    # Chunks are in vocabulary order: the first chunk holding the max has the first argmax.
    arg = tl.min(tl.where(chunk_x_max == x_max, chunk_arg, INT32_MAX), axis=0)
    greedy, t, m = max_and_scale(greedy, t, x_max)
    chunk_max = chunk_x_max / t + 0.0
    key_cut = tl.zeros((), tl.int64)
    z_min = float("-inf")
    c = tl.zeros((), tl.int32)
    n = tl.zeros((), tl.int32)
    if (greedy == 0) & (m > float("-inf")):
        c = _candidates_per_chunk(greedy, top_k, top_p, min_p, V, n_chunks, K_MAX, PROBE, TIE_SLACK)
        counts = tl.load(stat_ptr(ws_i, row, chunks, B, n_chunks, PLANE_COUNT), mask=inside, other=0)
        c = tl.where(tl.max(counts, axis=0) <= c + TIE_SLACK, c, 0)
        if c > 0:
            cand_z, cand_idx, n = candidate_slots(ws_f, ws_i, row, B, n_chunks, c, K_MAX, TIE_SLACK)
            no_top_k = tl.zeros_like(top_k)
            if (top_k > 0) & (top_k < V):
                key_k = radix_select(cand_z, n, 1.0, m, key_cut, top_k.to(tl.float32), -1.0, False, BLOCK)
                # top-p and the draw then scan the ~k survivors instead of every candidate.
                n = _keep_top(cand_z, cand_idx, n, key_k, BLOCK)
                key_cut, z_min = row_cut(cand_z, n, 1.0, m, no_top_k, top_p, min_p, -1.0, BLOCK)
                key_cut = tl.maximum(key_cut, key_k)
            else:
                chunk_mass = tl.load(
                    stat_ptr(ws_f, row, chunks, B, n_chunks, PLANE_MASS), mask=inside, other=0.0
                )
                row_mass = tl.sum(chunk_mass * weight(chunk_max, m), axis=0)
                key_cut, z_min = row_cut(cand_z, n, 1.0, m, no_top_k, top_p, min_p, row_mass, BLOCK)
                bounds = tl.load(stat_ptr(ws_i, row, chunks, B, n_chunks, PLANE_BOUND), mask=inside, other=0)
                t_lo = tl.max(bounds.to(tl.int64) & LOW32, axis=0)
                # A top-p walk that ends at or above T_lo only summed candidates; one ending
                # below may have missed tokens, whatever min-p keeps. Without top-p, min-p's
                # threshold must clear T_lo.
                c = tl.where(tl.where(top_p < 1.0, key_cut, order_key(z_min)) >= t_lo, c, 0)
        if c == 0:
            row_ptr = logits_ptr + row.to(tl.int64) * V
            key_cut, z_min = row_cut(row_ptr, V, t, m, top_k, top_p, min_p, -1.0, BLOCK)
    return m, arg, key_cut, z_min, c, n, greedy, t


@triton.jit
def _draw_by_chunks(
    logits_ptr, ws_f, row, B, V, n_chunks, CHUNK_LEN, t, m, u, CHUNKS_BLOCK: tl.constexpr, BLOCK: tl.constexpr
):
    """``inverse_cdf_draw`` over a row that keeps every finite token, reading one chunk:
    the chunk masses give the CDF at chunk ends, so the chunk holding ``u * Z`` is known
    up front."""
    chunks = tl.arange(0, CHUNKS_BLOCK)
    inside = chunks < n_chunks
    chunk_x_max = tl.load(stat_ptr(ws_f, row, chunks, B, n_chunks, PLANE_MAX), mask=inside, other=float("-inf"))
    chunk_max = chunk_x_max / t + 0.0
    chunk_mass = tl.load(stat_ptr(ws_f, row, chunks, B, n_chunks, PLANE_MASS), mask=inside, other=0.0)
    chunk_w = chunk_mass * weight(chunk_max, m)
    total = tl.sum(chunk_w, axis=0)
    target = u * total
    cdf = tl.cumsum(chunk_w, axis=0)
    # As in inverse_cdf_draw: count the chunks whose running mass is still <= target;
    # rounding past the end lands on the last chunk with a finite token.
    chunk = tl.sum(((cdf <= target) & inside).to(tl.int32), axis=0)
    chunk = tl.minimum(chunk, tl.max(tl.where(chunk_max > float("-inf"), chunks, -1), axis=0))
    running = tl.sum(tl.where(chunks == chunk - 1, cdf, 0.0), axis=0)
    first = chunk * CHUNK_LEN
    n = tl.minimum(CHUNK_LEN, V - first)
    chunk_ptr = logits_ptr + row.to(tl.int64) * V + first
    offs0 = tl.arange(0, BLOCK)
    below = 0
    last_kept = -1
    for start in range(0, n, BLOCK):
        offs = start + offs0
        z = load_z(chunk_ptr, offs, n, t)
        keep = z > float("-inf")
        w = tl.where(keep, weight(z, m), 0.0)
        cdf_in = running + tl.cumsum(w, axis=0)
        below += tl.sum(((cdf_in <= target) & (offs < n)).to(tl.int32), axis=0)
        running += tl.sum(w, axis=0)
        last_kept = tl.maximum(last_kept, tl.max(tl.where(keep, offs, -1), axis=0))
    return first + tl.minimum(below, last_kept), total


@triton.jit
def _merge_sample_kernel(
    logits_ptr, ws_f, ws_i, uniform_ptr, token_ptr, logprob_ptr, temp_ptr, top_k_ptr, top_p_ptr, min_p_ptr,
    B, V, n_chunks, CHUNK_LEN, K_MAX: tl.constexpr, PROBE: tl.constexpr, TIE_SLACK: tl.constexpr,
    CHUNKS_BLOCK: tl.constexpr, BLOCK: tl.constexpr
):
    row = tl.program_id(0)
    greedy, t, top_k, top_p, min_p = load_row_params(row, temp_ptr, top_k_ptr, top_p_ptr, min_p_ptr)
    m, arg, key_cut, z_min, c, n, greedy, t = _merged_cut(
        logits_ptr, ws_f, ws_i, row, B, V, n_chunks, greedy, t, top_k, top_p, min_p,
        K_MAX, PROBE, TIE_SLACK, CHUNKS_BLOCK, BLOCK,
    )
    token = arg.to(tl.int64)
    logprob = 0.0
    served = c
    if m == float("-inf"):
        token = tl.full((), -1, tl.int64)
        logprob = float("-inf")
    elif greedy == 0:
        u = tl.load(uniform_ptr + row)
        row_ptr = logits_ptr + row.to(tl.int64) * V
        if c > 0:
            cand_z, cand_idx, _ = candidate_slots(ws_f, ws_i, row, B, n_chunks, c, K_MAX, TIE_SLACK)
            pos, total = inverse_cdf_draw(cand_z, n, 1.0, m, key_cut, z_min, u, BLOCK)
            token = tl.load(cand_idx + pos).to(tl.int64)
            logprob = token_logprob(tl.load(cand_z + pos), m, total)
        else:
            if (key_cut == 0) & (z_min == float("-inf")):
                pos, total = _draw_by_chunks(
                    logits_ptr, ws_f, row, B, V, n_chunks, CHUNK_LEN, t, m, u, CHUNKS_BLOCK, BLOCK
                )
                served = tl.full((), _BY_CHUNKS, tl.int32)
            else:
                pos, total = inverse_cdf_draw(row_ptr, V, t, m, key_cut, z_min, u, BLOCK)
            token = pos.to(tl.int64)
            logprob = token_logprob(load_z(row_ptr, pos, V, t), m, total)
    tl.store(token_ptr + row, token)
    tl.store(logprob_ptr + row, logprob)
    tl.store(row_result_ptr(ws_i, row, B, n_chunks, ROW_SERVED, K_MAX, TIE_SLACK), served)


@triton.jit
def _smallest_kept_key(z_ptr, N, key_cut, z_min, BLOCK: tl.constexpr):
    """Smallest key among the kept entries of ``z_ptr[:N]``: on a candidate buffer, the exact
    cut for the full row (a radix bound from candidates may undercut non-candidates)."""
    offs0 = tl.arange(0, BLOCK)
    smallest = tl.full((), NO_KEY, tl.int64)
    for start in range(0, N, BLOCK):
        z = load_z(z_ptr, start + offs0, N, 1.0)
        key = order_key(z)
        keep = (z > float("-inf")) & (key >= key_cut) & (z >= z_min)
        smallest = tl.minimum(smallest, tl.min(tl.where(keep, key, NO_KEY), axis=0))
    return smallest


@triton.jit
def _merge_filter_kernel(
    logits_ptr, ws_f, ws_i, temp_ptr, top_k_ptr, top_p_ptr, min_p_ptr,
    B, V, n_chunks, K_MAX: tl.constexpr, PROBE: tl.constexpr, TIE_SLACK: tl.constexpr,
    CHUNKS_BLOCK: tl.constexpr, BLOCK: tl.constexpr
):
    row = tl.program_id(0)
    greedy, t, top_k, top_p, min_p = load_row_params(row, temp_ptr, top_k_ptr, top_p_ptr, min_p_ptr)
    m, arg, key_cut, z_min, c, n, greedy, t = _merged_cut(
        logits_ptr, ws_f, ws_i, row, B, V, n_chunks, greedy, t, top_k, top_p, min_p,
        K_MAX, PROBE, TIE_SLACK, CHUNKS_BLOCK, BLOCK,
    )
    tl.store(row_result_ptr(ws_f, row, B, n_chunks, ROW_T, K_MAX, TIE_SLACK), t)
    if c > 0:
        cand_z, _, _ = candidate_slots(ws_f, ws_i, row, B, n_chunks, c, K_MAX, TIE_SLACK)
        key_cut = _smallest_kept_key(cand_z, n, key_cut, z_min, BLOCK)
    tl.store(row_result_ptr(ws_i, row, B, n_chunks, ROW_SERVED, K_MAX, TIE_SLACK), c)
    # A key above every finite one (none kept) saturates at 2^32 - 1, a NaN pattern no z has.
    key_cut = tl.minimum(key_cut, LOW32)
    tl.store(row_result_ptr(ws_i, row, B, n_chunks, ROW_KEY_CUT, K_MAX, TIE_SLACK), key_cut.to(tl.int32))
    tl.store(row_result_ptr(ws_f, row, B, n_chunks, ROW_Z_MIN, K_MAX, TIE_SLACK), z_min)
    # Greedy rows keep the index range [arg, arg]; others [0, V).
    tl.store(row_result_ptr(ws_i, row, B, n_chunks, ROW_FIRST, K_MAX, TIE_SLACK), tl.where(greedy != 0, arg, 0))
    tl.store(row_result_ptr(ws_i, row, B, n_chunks, ROW_LAST, K_MAX, TIE_SLACK), tl.where(greedy != 0, arg, V - 1))


@triton.jit
def _write_filtered_kernel(
    logits_ptr, out_ptr, ws_f, ws_i, B, V, CHUNK_LEN,
    K_MAX: tl.constexpr, TIE_SLACK: tl.constexpr, BLOCK: tl.constexpr
):
    row, chunk, n_chunks, first, n = program_chunk(V, CHUNK_LEN)
    t = tl.load(row_result_ptr(ws_f, row, B, n_chunks, ROW_T, K_MAX, TIE_SLACK))
    key_cut = tl.load(row_result_ptr(ws_i, row, B, n_chunks, ROW_KEY_CUT, K_MAX, TIE_SLACK)).to(tl.int64) & LOW32
    z_min = tl.load(row_result_ptr(ws_f, row, B, n_chunks, ROW_Z_MIN, K_MAX, TIE_SLACK))
    keep_first = tl.load(row_result_ptr(ws_i, row, B, n_chunks, ROW_FIRST, K_MAX, TIE_SLACK))
    keep_last = tl.load(row_result_ptr(ws_i, row, B, n_chunks, ROW_LAST, K_MAX, TIE_SLACK))
    chunk_ptr = logits_ptr + row.to(tl.int64) * V + first
    out_chunk = out_ptr + row.to(tl.int64) * V + first
    offs0 = tl.arange(0, BLOCK)
    for start in range(0, n, BLOCK):
        offs = start + offs0
        z = load_z(chunk_ptr, offs, n, t)
        tok = first + offs
        keep = (z > float("-inf")) & (order_key(z) >= key_cut) & (z >= z_min)
        keep = keep & (tok >= keep_first) & (tok <= keep_last)
        tl.store(out_chunk + offs, tl.where(keep, z, float("-inf")), mask=offs < n)


def _chunk_pass(logits, params, chunk: int, block: int) -> Workspace:
    """Allocate the workspace and launch the chunk kernel on it."""
    B, V = logits.shape
    ws = workspace(B, V, chunk, logits.device)
    _chunk_kernel[(B, ws.n_chunks)](
        logits, ws.floats, ws.ints, *params, B, V, chunk,
        K_MAX=ws.k_max, PROBE=PROBE, TIE_SLACK=ws.tie_slack, BLOCK=min(block, triton.next_power_of_2(chunk)),
        num_warps=8,
    )
    return ws


def merge_and_sample(
    logits, ws: Workspace, uniform, temperature, top_k, top_p, min_p, *, chunk: int, block: int = BLOCK
):
    """The merge phase of ``sample``: one draw per row from a summarised ``logits``.

    Parameters
    ----------
    logits : Tensor
        [B, V] contiguous, whose chunks of ``chunk`` tokens :func:`summarise_chunk` wrote
        into ``ws`` (rows the candidates cannot serve are re-read in full).
    ws : Workspace
        From :func:`workspace`, filled by the chunk phase.
    uniform, temperature, top_k, top_p, min_p : Tensor
        [B] rows as in :func:`sample_split_row`; ``temperature`` must be the one the chunk
        phase scaled by.
    chunk, block : int
        Tokens per chunk (as in the chunk phase) and per tile.

    Returns
    -------
    tokens, logprobs : Tensor
        [B] int64 and [B] fp32, as :func:`sample_split_row`.
    """
    B, V = logits.shape
    tokens = torch.empty(B, dtype=torch.int64, device=logits.device)
    logprobs = torch.empty(B, dtype=torch.float32, device=logits.device)
    _merge_sample_kernel[(B,)](
        logits, ws.floats, ws.ints, uniform, tokens, logprobs, temperature, top_k, top_p, min_p,
        B, V, ws.n_chunks, chunk, K_MAX=ws.k_max, PROBE=PROBE, TIE_SLACK=ws.tie_slack,
        CHUNKS_BLOCK=triton.next_power_of_2(ws.n_chunks), BLOCK=block, num_warps=8,
    )
    return tokens, logprobs


def run_sample_split_row(logits, temperature, top_k, top_p, min_p, uniform, *, chunk=None, block=BLOCK):
    """:func:`sample_split_row` that also returns its :class:`Workspace` (None when B = 0;
    for tests)."""
    B = logits.shape[0]
    if not B:
        tokens = torch.empty(0, dtype=torch.int64, device=logits.device)
        return tokens, torch.empty(0, dtype=torch.float32, device=logits.device), None
    params = (temperature, top_k, top_p, min_p)
    chunk = chunk or CHUNK
    ws = _chunk_pass(logits, params, chunk, block)
    tokens, logprobs = merge_and_sample(logits, ws, uniform, *params, chunk=chunk, block=block)
    return tokens, logprobs, ws


def sample_split_row(
    logits, temperature, top_k, top_p, min_p, uniform, *, chunk: int | None = None, block: int = BLOCK
):
    """One draw per row with each row split over ``ceil(V / chunk)`` programs.

    Same arguments and results as :func:`~mta_kernels.sampling.triton_row.sample_row`
    (normalised [B] parameters, one uniform per row); ``chunk``: tokens per chunk (default
    ``CHUNK``); ``block``: the tile size of every kernel.
    """
    tokens, logprobs, _ = run_sample_split_row(
        logits, temperature, top_k, top_p, min_p, uniform, chunk=chunk, block=block
    )
    return tokens, logprobs


def run_filter_logits_split_row(logits, temperature, top_k, top_p, min_p, *, chunk=None, block=BLOCK):
    """:func:`filter_logits_split_row` that also returns its :class:`Workspace` (None when
    B = 0; for tests)."""
    B, V = logits.shape
    out = torch.empty((B, V), dtype=torch.float32, device=logits.device)
    if not B:
        return out, None
    params = (temperature, top_k, top_p, min_p)
    chunk = chunk or CHUNK
    ws = _chunk_pass(logits, params, chunk, block)
    _merge_filter_kernel[(B,)](
        logits, ws.floats, ws.ints, *params, B, V, ws.n_chunks,
        K_MAX=ws.k_max, PROBE=PROBE, TIE_SLACK=ws.tie_slack, CHUNKS_BLOCK=triton.next_power_of_2(ws.n_chunks),
        BLOCK=block, num_warps=8,
    )
    _write_filtered_kernel[(B, ws.n_chunks)](
        logits, out, ws.floats, ws.ints, B, V, chunk,
        K_MAX=ws.k_max, TIE_SLACK=ws.tie_slack, BLOCK=min(block, triton.next_power_of_2(chunk)), num_warps=8,
    )
    return out, ws


def filter_logits_split_row(
    logits, temperature, top_k, top_p, min_p, *, chunk: int | None = None, block: int = BLOCK
):
    """Filtered logits with each row split over ``ceil(V / chunk)`` programs; arguments and
    result as :func:`~mta_kernels.sampling.triton_row.filter_logits_row`."""
    return run_filter_logits_split_row(logits, temperature, top_k, top_p, min_p, chunk=chunk, block=block)[0]
