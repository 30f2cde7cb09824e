"""Triton kernels for filter_logits and sample: one program per row, no sort.

Per row, in passes over the logits (each a read of the row; the row stays in L2 for the
later passes at moderate batch sizes):

1. max, first argmax (greedy rows stop here);
2. top-k threshold: exact radix select of the k-th largest on an order-preserving uint32 key
   of ``z``, 4 bits per pass (16-bucket count histograms), stopping early as soon as the
   bucket holding the cut is kept whole or holds a single token;
3. top-p threshold: the same radix walk on a *mass* histogram (``exp(z - max)`` of the
   tokens top-k kept), looking for the token whose inclusion brings the mass from the top
   to ``top_p * Z``;
4. min-p is a closed form: ``z >= max + log(min_p)``;
5. ``sample``: the kept mass ``Z``, then an inverse-CDF scan in vocabulary order with the
   row's uniform draw (the same rule as the reference, so both pick the same token).

Thresholds are keys, so a cut never depends on rounding a float back from a bucket bound.

At small batch sizes ``sample_triton`` / ``filter_logits_triton`` hand over to the split-row
kernels in ``triton_split_row.py`` (many programs per row, built on these helpers).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

__all__ = ["filter_logits_triton", "sample_triton"]

_SIGN_BIT = tl.constexpr(2147483648)
_LOW32 = tl.constexpr(4294967295)

# 16-bucket one-hot histograms on [BLOCK, 16] tiles: 1024 keeps them in registers.
_BLOCK = 1024


@triton.jit
def _order_key(z):
    """fp32 -> int64 in [0, 2^32), monotone in z (positive floats above negative ones)."""
    b = z.to(tl.int32, bitcast=True).to(tl.int64)
    return tl.where(b >= 0, b + _SIGN_BIT, -1 - b)


@triton.jit
def _load_z(row_ptr, offs, V, t):
    x = tl.load(row_ptr + offs, mask=offs < V, other=float("-inf")).to(tl.float32)
    x = tl.where(x != x, float("-inf"), x)
    # + 0.0 folds -0.0 into +0.0 so equal floats get equal keys.
    return x / t + 0.0


@triton.jit
def _weight(z, m):
    # exp(z - max), with the max weighing 1 even when it is +inf (extreme temperatures).
    return tl.where(z == m, 1.0, tl.exp(z - m))


@triton.jit
def _row_max_argmax(row_ptr, V, t, BLOCK: tl.constexpr):
    offs0 = tl.arange(0, BLOCK)
    m = float("-inf")
    arg = 0
    for start in range(0, V, BLOCK):
        z = _load_z(row_ptr, start + offs0, V, t)
        tile_m = tl.max(z, axis=0)
        # first index of the tile max; strict > keeps the earliest tile on ties
        tile_arg = tl.min(tl.where(z == tile_m, start + offs0, 2147483647), axis=0)
        better = tile_m > m
        arg = tl.where(better, tile_arg, arg)
        m = tl.maximum(m, tile_m)
    return m, arg


@triton.jit
def _radix_select(row_ptr, V, t, m, floor_key, target, mass, USE_MASS: tl.constexpr, BLOCK: tl.constexpr):
    """Smallest key bound such that the tokens with ``key >= bound`` (among finite tokens
    with ``key >= floor_key``) are those before and including the one where the running
    total from the top reaches ``target`` (count, or for USE_MASS ``target * mass``, where a
    negative ``mass`` stands for the total weight of those tokens)."""
    offs0 = tl.arange(0, BLOCK)
    digits = tl.arange(0, 16)
    prefix = tl.zeros((), tl.int64)
    shift = tl.full((), 28, tl.int64)
    above = 0.0  # weight of tokens above the current bucket
    done = 0
    bound = tl.zeros((), tl.int64)
    while done == 0:
        hist_c = tl.zeros((16,), tl.float32)
        hist_w = tl.zeros((16,), tl.float32)
        # Bits above this pass's digit; int64 so the first pass's shift by 32 is defined.
        hi_mask = (_LOW32 << (shift + 4)) & _LOW32
        for start in range(0, V, BLOCK):
            z = _load_z(row_ptr, start + offs0, V, t)
            key = _order_key(z)
            valid = (z > float("-inf")) & (key >= floor_key) & ((key & hi_mask) == prefix)
            digit = (key >> shift) & 15
            onehot = (digit[:, None] == digits[None, :]) & valid[:, None]
            hist_c += tl.sum(onehot.to(tl.float32), axis=0)
            if USE_MASS:
                hist_w += tl.sum(tl.where(onehot, _weight(z, m)[:, None], 0.0), axis=0)
        if USE_MASS:
            weights = hist_w
        else:
            weights = hist_c
        if USE_MASS:
            if shift == 28:
                target = target * tl.where(mass < 0.0, tl.sum(weights, axis=0), mass)
        # suffix[d] = weight of buckets d..15
        suffix = tl.sum(tl.where(digits[None, :] >= digits[:, None], weights[None, :], 0.0), axis=1)
        reached = (above + suffix) >= target
        n_reached = tl.sum(reached.to(tl.int32), axis=0)
        if n_reached == 0:
            # Rounding left the total short of the target: keep the whole current bucket.
            bound = prefix
            done = 1
        else:
            d = n_reached - 1
            pick = digits == d
            count_d = tl.sum(tl.where(pick, hist_c, 0.0), axis=0)
            suffix_d = tl.sum(tl.where(pick, suffix, 0.0), axis=0)
            weight_d = tl.sum(tl.where(pick, weights, 0.0), axis=0)
            new_prefix = prefix | (d.to(tl.int64) << shift)
            # Reaching the target exactly at the bucket's end keeps the bucket whole.
            whole_bucket = above + suffix_d == target
            if (count_d == 1) | whole_bucket | (shift == 0):
                bound = new_prefix
                done = 1
            else:
                above += suffix_d - weight_d
                prefix = new_prefix
                shift -= 4
    return bound


@triton.jit
def _row_cut(row_ptr, V, t, m, top_k, top_p, min_p, mass, BLOCK: tl.constexpr):
    """Key bound of top-k and top-p, and the min-p threshold on z, for one row. ``mass`` is
    the softmax denominator top-p is relative to; negative: the mass top-k kept here."""
    key_k = tl.zeros((), tl.int64)
    if (top_k > 0) & (top_k < V):
        key_k = _radix_select(row_ptr, V, t, m, key_k, top_k.to(tl.float32), -1.0, False, BLOCK)
    key_p = key_k
    if top_p < 1.0:
        key_p = _radix_select(row_ptr, V, t, m, key_k, top_p, mass, True, BLOCK)
    z_min = float("-inf")
    if min_p > 0.0:
        z_min = m + tl.log(min_p)
    return tl.maximum(key_k, key_p), z_min


@triton.jit
def _load_params(pid, temp_ptr, top_k_ptr, top_p_ptr, min_p_ptr):
    temp = tl.load(temp_ptr + pid)
    # Clamp so out-of-range values (possible only when range checks were skipped, e.g.
    # under CUDA-graph capture) can never index out of bounds.
    top_k = tl.load(top_k_ptr + pid)
    top_p = tl.minimum(tl.maximum(tl.load(top_p_ptr + pid), 0.0), 1.0)
    min_p = tl.minimum(tl.maximum(tl.load(min_p_ptr + pid), 0.0), 1.0)
    greedy = (temp <= 0.0).to(tl.int32)
    t = tl.where(greedy != 0, 1.0, temp)
    return greedy, t, top_k, top_p, min_p


@triton.jit
def _filter_kernel(
    logits_ptr, out_ptr, temp_ptr, top_k_ptr, top_p_ptr, min_p_ptr, V, BLOCK: tl.constexpr
):
    pid = tl.program_id(0)
    row_ptr = logits_ptr + pid.to(tl.int64) * V
    out_row = out_ptr + pid.to(tl.int64) * V
    greedy, t, top_k, top_p, min_p = _load_params(pid, temp_ptr, top_k_ptr, top_p_ptr, min_p_ptr)
    m, arg = _row_max_argmax(row_ptr, V, t, BLOCK)
    key_cut = tl.zeros((), tl.int64)
    z_min = float("-inf")
    # Greedy rows keep the index range [arg, arg]; others [0, V).
    first = tl.where(greedy != 0, arg, 0)
    last = tl.where(greedy != 0, arg, V - 1)
    if (greedy == 0) & (m > float("-inf")):
        key_cut, z_min = _row_cut(row_ptr, V, t, m, top_k, top_p, min_p, -1.0, BLOCK)
    offs0 = tl.arange(0, BLOCK)
    for start in range(0, V, BLOCK):
        offs = start + offs0
        z = _load_z(row_ptr, offs, V, t)
        keep = (z > float("-inf")) & (_order_key(z) >= key_cut) & (z >= z_min) & (offs >= first) & (offs <= last)
        tl.store(out_row + offs, tl.where(keep, z, float("-inf")), mask=offs < V)


@triton.jit
def _draw(z_ptr, N, t, m, key_cut, z_min, u, BLOCK: tl.constexpr):
    """Inverse-CDF draw in storage order among the kept entries of ``z_ptr[:N]`` (scaled by
    ``t`` on load): the position drawn by the uniform ``u`` and the kept mass ``Z``."""
    offs0 = tl.arange(0, BLOCK)
    total = 0.0
    last_kept = -1
    for start in range(0, N, BLOCK):
        offs = start + offs0
        z = _load_z(z_ptr, offs, N, t)
        keep = (z > float("-inf")) & (_order_key(z) >= key_cut) & (z >= z_min)
        total += tl.sum(tl.where(keep, _weight(z, m), 0.0), axis=0)
        last_kept = tl.maximum(last_kept, tl.max(tl.where(keep, offs, -1), axis=0))
    target = u * total
    # The position is the number of positions whose running mass is still <= target.
    running = 0.0
    below = 0
    for start in range(0, N, BLOCK):
        offs = start + offs0
        z = _load_z(z_ptr, offs, N, t)
        keep = (z > float("-inf")) & (_order_key(z) >= key_cut) & (z >= z_min)
        w = tl.where(keep, _weight(z, m), 0.0)
        cdf = running + tl.cumsum(w, axis=0)
        below += tl.sum(((cdf <= target) & (offs < N)).to(tl.int32), axis=0)
        running += tl.sum(w, axis=0)
    return tl.minimum(below, last_kept), total


@triton.jit
def _logprob(z_tok, m, total):
    return tl.where(z_tok == m, 0.0, z_tok - m) - tl.log(total)


@triton.jit
def _sample_kernel(
    logits_ptr, uniform_ptr, token_ptr, logprob_ptr, temp_ptr, top_k_ptr, top_p_ptr, min_p_ptr,
    V, BLOCK: tl.constexpr
):
    pid = tl.program_id(0)
    row_ptr = logits_ptr + pid.to(tl.int64) * V
    greedy, t, top_k, top_p, min_p = _load_params(pid, temp_ptr, top_k_ptr, top_p_ptr, min_p_ptr)
    m, arg = _row_max_argmax(row_ptr, V, t, BLOCK)
    token = arg.to(tl.int64)
    logprob = 0.0
    if m == float("-inf"):
        token = tl.full((), -1, tl.int64)
        logprob = float("-inf")
    elif greedy == 0:
        key_cut, z_min = _row_cut(row_ptr, V, t, m, top_k, top_p, min_p, -1.0, BLOCK)
        pos, total = _draw(row_ptr, V, t, m, key_cut, z_min, tl.load(uniform_ptr + pid), BLOCK)
        token = pos.to(tl.int64)
        logprob = _logprob(_load_z(row_ptr, pos, V, t), m, total)
    tl.store(token_ptr + pid, token)
    tl.store(logprob_ptr + pid, logprob)


def filter_logits_triton(logits, temperature, top_k, top_p, min_p, *, block: int = _BLOCK, split: bool | None = None):
    """Filtered logits [B, V] fp32 from normalised [B] parameters (see ``reference.py``).

    ``split``: run each row over many programs (``triton_split_row.py``); None lets
    ``prefers_split_row`` decide from B, V and the GPU's SM count.
    """
    from mta_kernels.sampling import triton_split_row

    B, V = logits.shape
    if triton_split_row.prefers_split_row(B, V, logits.device) if split is None else split:
        return triton_split_row.filter_logits_split_row(logits, temperature, top_k, top_p, min_p, block=block)
    out = torch.empty((B, V), dtype=torch.float32, device=logits.device)
    if B:
        _filter_kernel[(B,)](logits, out, temperature, top_k, top_p, min_p, V, BLOCK=block, num_warps=8)
    return out


def sample_triton(logits, temperature, top_k, top_p, min_p, uniform, *, block: int = _BLOCK, split: bool | None = None):
    """Tokens [B] int64 and their logprobs [B] fp32, one draw per row from ``uniform`` [B].

    ``split`` as in :func:`filter_logits_triton`; both paths return the same tokens.
    """
    from mta_kernels.sampling import triton_split_row

    B, V = logits.shape
    if triton_split_row.prefers_split_row(B, V, logits.device) if split is None else split:
        return triton_split_row.sample_split_row(logits, temperature, top_k, top_p, min_p, uniform, block=block)
    tokens = torch.empty(B, dtype=torch.int64, device=logits.device)
    logprobs = torch.empty(B, dtype=torch.float32, device=logits.device)
    if B:
        _sample_kernel[(B,)](
            logits, uniform, tokens, logprobs, temperature, top_k, top_p, min_p, V, BLOCK=block, num_warps=8
        )
    return tokens, logprobs
