"""Split-row Triton kernels: many programs per row when the batch cannot fill the GPU.

``triton_kernels.py`` runs one program per row, so at B=1 a single SM walks the whole
vocabulary (V=151936) through about ten passes while the rest of the GPU idles. Here each
row is cut into chunks of ``chunk`` tokens and one call takes two launches (three for
``filter``), with no host synchronisation:

1. ``_chunk_kernel``, grid (B, chunks), reading each chunk from memory once: the chunk's
   max, first argmax and softmax mass relative to its max and, for a row with a cut, its
   *candidates*: every finite token at or above the chunk's own c-th largest (the exact
   radix select of the one-program kernel, run on the chunk; ties included), stored in
   vocabulary order in a per-row buffer with room for ``c + TIE_SLACK`` per chunk, the rest
   padded with -inf. ``c`` is the row's top-k when ``0 < k <= K_MAX``, or ``PROBE`` for a
   row cut only by top-p / min-p.
2. ``_merge_sample_kernel``, one program per row: the row max and first argmax from the
   chunk maxima (greedy rows stop here), then the one-program kernel's cuts and draw (the
   same helpers) run on the candidate buffer as if it were the row; the padding is never
   kept, and the buffer is in vocabulary order, so the inverse-CDF draw with the row's
   uniform picks the same token with the same logprob.

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

Tokens and logprobs equal the one-program kernel's and the reference's up to float
summation order exactly at a cut or CDF boundary, as between any two backends.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator

import torch
import triton
import triton.language as tl

from mta_kernels.sampling.triton_kernels import (
    _BLOCK,
    _draw,
    _load_params,
    _load_z,
    _logprob,
    _order_key,
    _radix_select,
    _row_cut,
    _row_max_argmax,
    _weight,
)

__all__ = ["filter_logits_split_row", "forced_split_row", "prefers_split_row", "program_chunk", "sample_split_row", "workspace"]

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
# Split when one program per row would leave at least 3/4 of the SMs idle: B <= 33 on an
# H100 (132 SMs). CPU (the interpreter) uses the H100's count so tests see the GPU rule.
ROWS_PER_SM = 0.25
_H100_SMS = 132
# The workspace (int32 words, read as fp32 where it holds floats): five [B, chunks] planes
# of per-chunk statistics, then the candidates' values and vocabulary indices
# ([B, chunks, K_MAX + TIE_SLACK] each), then five [B] planes of per-row results.
_N_STAT_PLANES = tl.constexpr(5)
_PLANE_MAX = tl.constexpr(0)  # fp32: chunk max of z
_PLANE_ARG = tl.constexpr(1)  # first argmax (vocabulary index)
_PLANE_MASS = tl.constexpr(2)  # fp32: sum of exp(z - chunk max) over finite z
_PLANE_BOUND = tl.constexpr(3)  # key bound of the chunk's candidates (low 32 bits)
_PLANE_COUNT = tl.constexpr(4)  # candidates found (more than the room: overflow)
_N_ROW_PLANES = 5
_ROW_SERVED = tl.constexpr(0)  # how the row was served (tests read it): c, FULL_ROW or BY_CHUNKS
_ROW_KEY_CUT = tl.constexpr(1)  # filter: exact key cut (low 32 bits)
_ROW_Z_MIN = tl.constexpr(2)  # filter: fp32 min-p threshold
_ROW_FIRST = tl.constexpr(3)  # filter: first and last index kept ([arg, arg] for greedy rows)
_ROW_LAST = tl.constexpr(4)

# rows_served values besides c, the candidates per chunk a row's cut and draw used:
FULL_ROW = 0  # cut and draw on the full row
BY_CHUNKS = -1  # nothing cut: the draw picks a chunk by the chunk masses, then scans it
_BY_CHUNKS = tl.constexpr(BY_CHUNKS)

_INT32_MAX = tl.constexpr(2147483647)
_NO_KEY = tl.constexpr(4294967296)  # above every key
_LOW32 = tl.constexpr(4294967295)


@functools.lru_cache(maxsize=None)
def _sm_count(device_type: str, index: int | None) -> int:
    if device_type == "cuda":
        return torch.cuda.get_device_properties(index).multi_processor_count
    return _H100_SMS


_forced: bool | None = None


@contextlib.contextmanager
def forced_split_row(split: bool | None) -> Iterator[None]:
    """Within the block the Triton ``sample`` / ``filter_logits`` take the split-row path
    (True), never take it (False), or let :func:`prefers_split_row` decide (None); for tests
    and benchmarks."""
    global _forced
    previous, _forced = _forced, split
    try:
        yield
    finally:
        _forced = previous


def prefers_split_row(batch: int, vocab: int, device: torch.device | str) -> bool:
    """Whether ``sample`` / ``filter_logits`` take the split-row path for this shape.

    Split when the vocabulary spans at least two chunks and ``batch <= ROWS_PER_SM * SMs``
    (B <= 33 on an H100): there one program per row leaves most SMs idle. A starting point
    from the kernels' structure; re-tune it with ``benchmarks/bench_sampling.py`` on a GPU.
    :func:`forced_split_row` overrides it.
    """
    if _forced is not None:
        return _forced
    device = torch.device(device)
    return vocab >= 2 * CHUNK and 0 < batch <= ROWS_PER_SM * _sm_count(device.type, device.index)


@triton.jit
def _stat_ptr(ws, row, chunk, B, n_chunks, PLANE: tl.constexpr):
    """The chunk's entry in plane ``PLANE`` of the workspace's [planes, B, chunks] statistics."""
    return ws + (PLANE * B + row) * n_chunks + chunk


@triton.jit
def _candidate_rows(ws_f, ws_i, row, B, n_chunks, c, K_MAX: tl.constexpr, TIE_SLACK: tl.constexpr):
    """The row's candidate values and vocabulary indices, read as one virtual row of
    ``n_chunks`` segments of ``c + TIE_SLACK`` slots; returns both pointers and its length."""
    # tl.cast: B and n_chunks may arrive as constexpr (Triton specialises arguments equal to 1).
    per_row = tl.cast(n_chunks, tl.int64) * (K_MAX + TIE_SLACK)
    base = tl.cast(B, tl.int64) * n_chunks * _N_STAT_PLANES + row.to(tl.int64) * per_row
    return ws_f + base, ws_i + base + B * per_row, n_chunks * (c + TIE_SLACK)


@triton.jit
def _row_ptr(ws, row, B, n_chunks, PLANE: tl.constexpr, K_MAX: tl.constexpr, TIE_SLACK: tl.constexpr):
    """The row's entry in plane ``PLANE`` of the per-row results after the candidates."""
    return ws + tl.cast(B, tl.int64) * (n_chunks * (_N_STAT_PLANES + 2 * (K_MAX + TIE_SLACK)) + PLANE) + row


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
    """A (B, chunks) grid program's row, chunk, chunk count, first token and token count."""
    row = tl.program_id(0)
    chunk = tl.program_id(1)
    first = chunk * CHUNK_LEN
    return row, chunk, tl.num_programs(1), first, tl.minimum(CHUNK_LEN, V - first)


@triton.jit
def _summarise_chunk(
    chunk_ptr, n, first, row, chunk, n_chunks, ws_f, ws_i, B, V, greedy, t, top_k, top_p, min_p,
    K_MAX: tl.constexpr, PROBE: tl.constexpr, TIE_SLACK: tl.constexpr, BLOCK: tl.constexpr
):
    """The chunk's statistics and candidates (step 1 above) for the ``n`` tokens of one row
    at ``chunk_ptr`` (vocabulary index ``first`` on), into the workspace."""
    m, arg = _row_max_argmax(chunk_ptr, n, t, BLOCK)
    c = _candidates_per_chunk(greedy, top_k, top_p, min_p, V, n_chunks, K_MAX, PROBE, TIE_SLACK)
    # Candidates are the finite tokens with key >= bound: none while bound is above every key.
    bound = tl.full((), _NO_KEY, tl.int64)
    count = 0
    mass = 0.0
    if greedy == 0:
        cap = c + TIE_SLACK
        cand_z, cand_idx, _ = _candidate_rows(ws_f, ws_i, row, B, n_chunks, c, K_MAX, TIE_SLACK)
        cand_z += chunk * cap
        cand_idx += chunk * cap
        if c > 0:
            bound = _radix_select(chunk_ptr, n, t, m, tl.zeros((), tl.int64), c.to(tl.float32), -1.0, False, BLOCK)
        offs0 = tl.arange(0, BLOCK)
        for start in range(0, n, BLOCK):
            offs = start + offs0
            z = _load_z(chunk_ptr, offs, n, t)
            finite = z > float("-inf")
            mass += tl.sum(tl.where(finite, _weight(z, m), 0.0), axis=0)
            is_cand = finite & (_order_key(z) >= bound)
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
    tl.store(_stat_ptr(ws_f, row, chunk, B, n_chunks, _PLANE_MAX), m)
    tl.store(_stat_ptr(ws_i, row, chunk, B, n_chunks, _PLANE_ARG), first + arg)
    tl.store(_stat_ptr(ws_f, row, chunk, B, n_chunks, _PLANE_MASS), mass)
    # Keys are < 2^32: the low 32 bits in an int32 slot hold them exactly.
    tl.store(_stat_ptr(ws_i, row, chunk, B, n_chunks, _PLANE_BOUND), bound.to(tl.int32))
    tl.store(_stat_ptr(ws_i, row, chunk, B, n_chunks, _PLANE_COUNT), count)


@triton.jit
def _chunk_kernel(
    logits_ptr, ws_f, ws_i, temp_ptr, top_k_ptr, top_p_ptr, min_p_ptr, B, V, CHUNK_LEN,
    K_MAX: tl.constexpr, PROBE: tl.constexpr, TIE_SLACK: tl.constexpr, BLOCK: tl.constexpr
):
    row, chunk, n_chunks, first, n = program_chunk(V, CHUNK_LEN)
    chunk_ptr = logits_ptr + row.to(tl.int64) * V + first
    greedy, t, top_k, top_p, min_p = _load_params(row, temp_ptr, top_k_ptr, top_p_ptr, min_p_ptr)
    _summarise_chunk(
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
        z = _load_z(cand_z, offs, N, 1.0)
        idx = tl.load(cand_idx + offs, mask=offs < N)
        # Every thread has read the tile before any thread overwrites part of it.
        tl.debug_barrier()
        keep = (z > float("-inf")) & (_order_key(z) >= key_k)
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
    """Row max, first argmax, key cut and min-p threshold of one row from the chunk results;
    ``c``, the candidates per chunk the cut was computed on (0: on the full row), and ``n``,
    the candidate slots that hold the kept tokens."""
    chunks = tl.arange(0, CHUNKS_BLOCK)
    inside = chunks < n_chunks
    chunk_max = tl.load(_stat_ptr(ws_f, row, chunks, B, n_chunks, _PLANE_MAX), mask=inside, other=float("-inf"))
    chunk_arg = tl.load(_stat_ptr(ws_i, row, chunks, B, n_chunks, _PLANE_ARG), mask=inside, other=_INT32_MAX)
    m = tl.max(chunk_max, axis=0)
    # Chunks are in vocabulary order: the first chunk holding the max has the first argmax.
    arg = tl.min(tl.where(chunk_max == m, chunk_arg, _INT32_MAX), axis=0)
    key_cut = tl.zeros((), tl.int64)
    z_min = float("-inf")
    c = tl.zeros((), tl.int32)
    n = tl.zeros((), tl.int32)
    if (greedy == 0) & (m > float("-inf")):
        c = _candidates_per_chunk(greedy, top_k, top_p, min_p, V, n_chunks, K_MAX, PROBE, TIE_SLACK)
        counts = tl.load(_stat_ptr(ws_i, row, chunks, B, n_chunks, _PLANE_COUNT), mask=inside, other=0)
        c = tl.where(tl.max(counts, axis=0) <= c + TIE_SLACK, c, 0)
        if c > 0:
            cand_z, cand_idx, n = _candidate_rows(ws_f, ws_i, row, B, n_chunks, c, K_MAX, TIE_SLACK)
            no_top_k = tl.zeros_like(top_k)
            if (top_k > 0) & (top_k < V):
                key_k = _radix_select(cand_z, n, 1.0, m, key_cut, top_k.to(tl.float32), -1.0, False, BLOCK)
                # top-p and the draw then scan the ~k survivors instead of every candidate.
                n = _keep_top(cand_z, cand_idx, n, key_k, BLOCK)
                key_cut, z_min = _row_cut(cand_z, n, 1.0, m, no_top_k, top_p, min_p, -1.0, BLOCK)
                key_cut = tl.maximum(key_cut, key_k)
            else:
                chunk_mass = tl.load(
                    _stat_ptr(ws_f, row, chunks, B, n_chunks, _PLANE_MASS), mask=inside, other=0.0
                )
                row_mass = tl.sum(chunk_mass * _weight(chunk_max, m), axis=0)
                key_cut, z_min = _row_cut(cand_z, n, 1.0, m, no_top_k, top_p, min_p, row_mass, BLOCK)
                bounds = tl.load(_stat_ptr(ws_i, row, chunks, B, n_chunks, _PLANE_BOUND), mask=inside, other=0)
                t_lo = tl.max(bounds.to(tl.int64) & _LOW32, axis=0)
                # A top-p walk that ends at or above T_lo only summed candidates; one ending
                # below may have missed tokens, whatever min-p keeps. Without top-p, min-p's
                # threshold must clear T_lo.
                c = tl.where(tl.where(top_p < 1.0, key_cut, _order_key(z_min)) >= t_lo, c, 0)
        if c == 0:
            row_ptr = logits_ptr + row.to(tl.int64) * V
            key_cut, z_min = _row_cut(row_ptr, V, t, m, top_k, top_p, min_p, -1.0, BLOCK)
    return m, arg, key_cut, z_min, c, n


@triton.jit
def _draw_by_chunks(
    logits_ptr, ws_f, row, B, V, n_chunks, CHUNK_LEN, t, m, u, CHUNKS_BLOCK: tl.constexpr, BLOCK: tl.constexpr
):
    """``_draw`` over a row that keeps every finite token, reading one chunk: the chunk
    masses give the CDF at chunk ends, so the chunk holding ``u * Z`` is known up front."""
    chunks = tl.arange(0, CHUNKS_BLOCK)
    inside = chunks < n_chunks
    chunk_max = tl.load(_stat_ptr(ws_f, row, chunks, B, n_chunks, _PLANE_MAX), mask=inside, other=float("-inf"))
    chunk_mass = tl.load(_stat_ptr(ws_f, row, chunks, B, n_chunks, _PLANE_MASS), mask=inside, other=0.0)
    chunk_w = chunk_mass * _weight(chunk_max, m)
    total = tl.sum(chunk_w, axis=0)
    target = u * total
    cdf = tl.cumsum(chunk_w, axis=0)
    # As in _draw: count the chunks whose running mass is still <= target; rounding past the
    # end lands on the last chunk with a finite token.
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
        z = _load_z(chunk_ptr, offs, n, t)
        keep = z > float("-inf")
        w = tl.where(keep, _weight(z, m), 0.0)
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
    greedy, t, top_k, top_p, min_p = _load_params(row, temp_ptr, top_k_ptr, top_p_ptr, min_p_ptr)
    m, arg, key_cut, z_min, c, n = _merged_cut(
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
            cand_z, cand_idx, _ = _candidate_rows(ws_f, ws_i, row, B, n_chunks, c, K_MAX, TIE_SLACK)
            pos, total = _draw(cand_z, n, 1.0, m, key_cut, z_min, u, BLOCK)
            token = tl.load(cand_idx + pos).to(tl.int64)
            logprob = _logprob(tl.load(cand_z + pos), m, total)
        else:
            if (key_cut == 0) & (z_min == float("-inf")):
                pos, total = _draw_by_chunks(
                    logits_ptr, ws_f, row, B, V, n_chunks, CHUNK_LEN, t, m, u, CHUNKS_BLOCK, BLOCK
                )
                served = tl.full((), _BY_CHUNKS, tl.int32)
            else:
                pos, total = _draw(row_ptr, V, t, m, key_cut, z_min, u, BLOCK)
            token = pos.to(tl.int64)
            logprob = _logprob(_load_z(row_ptr, pos, V, t), m, total)
    tl.store(token_ptr + row, token)
    tl.store(logprob_ptr + row, logprob)
    tl.store(_row_ptr(ws_i, row, B, n_chunks, _ROW_SERVED, K_MAX, TIE_SLACK), served)


@triton.jit
def _smallest_kept_key(z_ptr, N, key_cut, z_min, BLOCK: tl.constexpr):
    """Smallest key among the kept entries of ``z_ptr[:N]``: on a candidate buffer, the exact
    cut for the full row (a radix bound from candidates may undercut non-candidates)."""
    offs0 = tl.arange(0, BLOCK)
    smallest = tl.full((), _NO_KEY, tl.int64)
    for start in range(0, N, BLOCK):
        z = _load_z(z_ptr, start + offs0, N, 1.0)
        key = _order_key(z)
        keep = (z > float("-inf")) & (key >= key_cut) & (z >= z_min)
        smallest = tl.minimum(smallest, tl.min(tl.where(keep, key, _NO_KEY), axis=0))
    return smallest


@triton.jit
def _merge_filter_kernel(
    logits_ptr, ws_f, ws_i, temp_ptr, top_k_ptr, top_p_ptr, min_p_ptr,
    B, V, n_chunks, K_MAX: tl.constexpr, PROBE: tl.constexpr, TIE_SLACK: tl.constexpr,
    CHUNKS_BLOCK: tl.constexpr, BLOCK: tl.constexpr
):
    row = tl.program_id(0)
    greedy, t, top_k, top_p, min_p = _load_params(row, temp_ptr, top_k_ptr, top_p_ptr, min_p_ptr)
    m, arg, key_cut, z_min, c, n = _merged_cut(
        logits_ptr, ws_f, ws_i, row, B, V, n_chunks, greedy, t, top_k, top_p, min_p,
        K_MAX, PROBE, TIE_SLACK, CHUNKS_BLOCK, BLOCK,
    )
    if c > 0:
        cand_z, _, _ = _candidate_rows(ws_f, ws_i, row, B, n_chunks, c, K_MAX, TIE_SLACK)
        key_cut = _smallest_kept_key(cand_z, n, key_cut, z_min, BLOCK)
    tl.store(_row_ptr(ws_i, row, B, n_chunks, _ROW_SERVED, K_MAX, TIE_SLACK), c)
    # A key above every finite one (none kept) saturates at 2^32 - 1, a NaN pattern no z has.
    key_cut = tl.minimum(key_cut, _LOW32)
    tl.store(_row_ptr(ws_i, row, B, n_chunks, _ROW_KEY_CUT, K_MAX, TIE_SLACK), key_cut.to(tl.int32))
    tl.store(_row_ptr(ws_f, row, B, n_chunks, _ROW_Z_MIN, K_MAX, TIE_SLACK), z_min)
    # Greedy rows keep the index range [arg, arg]; others [0, V).
    tl.store(_row_ptr(ws_i, row, B, n_chunks, _ROW_FIRST, K_MAX, TIE_SLACK), tl.where(greedy != 0, arg, 0))
    tl.store(_row_ptr(ws_i, row, B, n_chunks, _ROW_LAST, K_MAX, TIE_SLACK), tl.where(greedy != 0, arg, V - 1))


@triton.jit
def _write_filtered_kernel(
    logits_ptr, out_ptr, ws_f, ws_i, temp_ptr, B, V, CHUNK_LEN,
    K_MAX: tl.constexpr, TIE_SLACK: tl.constexpr, BLOCK: tl.constexpr
):
    row, chunk, n_chunks, first, n = program_chunk(V, CHUNK_LEN)
    temp = tl.load(temp_ptr + row)
    t = tl.where(temp <= 0.0, 1.0, temp)
    key_cut = tl.load(_row_ptr(ws_i, row, B, n_chunks, _ROW_KEY_CUT, K_MAX, TIE_SLACK)).to(tl.int64) & _LOW32
    z_min = tl.load(_row_ptr(ws_f, row, B, n_chunks, _ROW_Z_MIN, K_MAX, TIE_SLACK))
    keep_first = tl.load(_row_ptr(ws_i, row, B, n_chunks, _ROW_FIRST, K_MAX, TIE_SLACK))
    keep_last = tl.load(_row_ptr(ws_i, row, B, n_chunks, _ROW_LAST, K_MAX, TIE_SLACK))
    chunk_ptr = logits_ptr + row.to(tl.int64) * V + first
    out_chunk = out_ptr + row.to(tl.int64) * V + first
    offs0 = tl.arange(0, BLOCK)
    for start in range(0, n, BLOCK):
        offs = start + offs0
        z = _load_z(chunk_ptr, offs, n, t)
        tok = first + offs
        keep = (z > float("-inf")) & (_order_key(z) >= key_cut) & (z >= z_min)
        keep = keep & (tok >= keep_first) & (tok <= keep_last)
        tl.store(out_chunk + offs, tl.where(keep, z, float("-inf")), mask=offs < n)


def workspace(B: int, V: int, chunk: int, device: torch.device, k_max: int | None = None):
    """The split-row workspace for B rows of V tokens: (int32 view, fp32 view, chunk count).

    ``k_max`` (default ``K_MAX``) sets the candidate room per chunk; the kernels must then
    be launched with ``K_MAX=k_max``.
    """
    n_chunks = triton.cdiv(V, chunk)
    k_max = K_MAX if k_max is None else k_max
    words = B * (n_chunks * (_N_STAT_PLANES.value + 2 * (k_max + TIE_SLACK)) + _N_ROW_PLANES)
    # One allocation for every buffer: this path exists for latency.
    ws_i = torch.empty(words, dtype=torch.int32, device=device)
    return ws_i, ws_i.view(torch.float32), n_chunks


def _chunk_pass(logits, params, chunk: int, block: int):
    """Allocate the workspace and launch the chunk kernel; returns the workspace (int32 and
    fp32 views of one buffer) and the chunk count."""
    B, V = logits.shape
    ws_i, ws_f, n_chunks = workspace(B, V, chunk, logits.device)
    _chunk_kernel[(B, n_chunks)](
        logits, ws_f, ws_i, *params, B, V, chunk,
        K_MAX=K_MAX, PROBE=PROBE, TIE_SLACK=TIE_SLACK, BLOCK=min(block, triton.next_power_of_2(chunk)),
        num_warps=8,
    )
    return ws_i, ws_f, n_chunks


def chunk_counts(ws_i: torch.Tensor, B: int, n_chunks: int) -> torch.Tensor:
    """[B, chunks] candidates each chunk found (above its room: overflow); for tests."""
    plane = _PLANE_COUNT.value * B * n_chunks
    return ws_i[plane:plane + B * n_chunks].view(B, n_chunks)


def rows_served(ws_i: torch.Tensor, B: int, n_chunks: int, k_max: int | None = None) -> torch.Tensor:
    """[B] how each row was served: c > 0 candidates per chunk, FULL_ROW or (``sample``
    only) BY_CHUNKS; for tests. ``k_max`` as given to :func:`workspace`."""
    k_max = K_MAX if k_max is None else k_max
    start = B * n_chunks * (_N_STAT_PLANES.value + 2 * (k_max + TIE_SLACK)) + _ROW_SERVED.value * B
    return ws_i[start:start + B]


def run_sample_split_row(logits, temperature, top_k, top_p, min_p, uniform, *, chunk=None, block=_BLOCK):
    """:func:`sample_split_row` that also returns its workspace and chunk count (for tests)."""
    B, V = logits.shape
    tokens = torch.empty(B, dtype=torch.int64, device=logits.device)
    logprobs = torch.empty(B, dtype=torch.float32, device=logits.device)
    if not B:
        return tokens, logprobs, None, 0
    params = (temperature, top_k, top_p, min_p)
    chunk = chunk or CHUNK
    ws_i, ws_f, n_chunks = _chunk_pass(logits, params, chunk, block)
    _merge_sample_kernel[(B,)](
        logits, ws_f, ws_i, uniform, tokens, logprobs, *params, B, V, n_chunks, chunk,
        K_MAX=K_MAX, PROBE=PROBE, TIE_SLACK=TIE_SLACK, CHUNKS_BLOCK=triton.next_power_of_2(n_chunks),
        BLOCK=block, num_warps=8,
    )
    return tokens, logprobs, ws_i, n_chunks


def sample_split_row(
    logits, temperature, top_k, top_p, min_p, uniform, *, chunk: int | None = None, block: int = _BLOCK
):
    """``sample_triton`` with each row split over ``ceil(V / chunk)`` programs.

    Same arguments and results as :func:`~mta_kernels.sampling.triton_kernels.sample_triton`
    (normalised [B] parameters, one uniform per row); ``chunk``: tokens per chunk (default
    ``CHUNK``); ``block``: the tile size of every kernel.
    """
    tokens, logprobs, _, _ = run_sample_split_row(
        logits, temperature, top_k, top_p, min_p, uniform, chunk=chunk, block=block
    )
    return tokens, logprobs


def run_filter_logits_split_row(logits, temperature, top_k, top_p, min_p, *, chunk=None, block=_BLOCK):
    """:func:`filter_logits_split_row` that also returns its workspace and chunk count."""
    B, V = logits.shape
    out = torch.empty((B, V), dtype=torch.float32, device=logits.device)
    if not B:
        return out, None, 0
    params = (temperature, top_k, top_p, min_p)
    chunk = chunk or CHUNK
    ws_i, ws_f, n_chunks = _chunk_pass(logits, params, chunk, block)
    _merge_filter_kernel[(B,)](
        logits, ws_f, ws_i, *params, B, V, n_chunks,
        K_MAX=K_MAX, PROBE=PROBE, TIE_SLACK=TIE_SLACK, CHUNKS_BLOCK=triton.next_power_of_2(n_chunks),
        BLOCK=block, num_warps=8,
    )
    _write_filtered_kernel[(B, n_chunks)](
        logits, out, ws_f, ws_i, temperature, B, V, chunk,
        K_MAX=K_MAX, TIE_SLACK=TIE_SLACK, BLOCK=min(block, triton.next_power_of_2(chunk)), num_warps=8,
    )
    return out, ws_i, n_chunks


def filter_logits_split_row(
    logits, temperature, top_k, top_p, min_p, *, chunk: int | None = None, block: int = _BLOCK
):
    """``filter_logits_triton`` with each row split over ``ceil(V / chunk)`` programs."""
    return run_filter_logits_split_row(logits, temperature, top_k, top_p, min_p, chunk=chunk, block=block)[0]
