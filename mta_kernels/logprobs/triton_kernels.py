"""Triton kernels for token log-probabilities and entropy: one program per row.

Both kernels work on a *tile* of a row block: columns ``[v0, v0 + Vt)`` of the vocabulary
stored at ``x_ptr + row * stride``. ``token_logprobs`` launches them once on the whole
vocabulary; ``linear_token_logprobs`` on each chunk of logits it computes.

* ``_stats_kernel`` (forward): one read of the tile with an online logsumexp over BLOCK
  columns at a time. It keeps ``m`` (running max of ``z = x / T``), ``s = sum exp(z - m)``
  and ``t = sum exp(z - m) (z - m)``, rescaled when ``m`` grows; then
  ``lse = m + log s`` and ``H = log s - t / s``. Every term is relative to the max, so
  logits of size 1e4 lose nothing to cancellation (``lse - E[z]`` would). It also picks
  ``z`` at the target when the target is in the tile.
* ``_grad_kernel`` (backward): one more read, writing
  ``dx = [g_logp (onehot - p) - g_ent p (log p + H)] / T`` in the output's dtype, with
  ``p = exp(z - lse)`` from the forward's full-row ``lse``. Input and output may alias
  (each element is read and then written by the same program), which is how the chunked
  linear form turns its logits buffer into the logits gradient without another buffer.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

__all__ = ["tile_stats_triton", "tile_grad_triton"]

# 4096 columns per step: 16 fp32 values per thread at 8 warps, and few loop trips even at
# V = 151936 (38). Tests pass a small block so that V spans several, ragged, tiles.
_BLOCK = 4096
_NUM_WARPS = 8


@triton.jit
def _stats_kernel(
    x_ptr, stride_x, tgt_ptr, lse_ptr, ent_ptr, zt_ptr, Vt, v0, T,
    ENTROPY: tl.constexpr, BLOCK: tl.constexpr
):
    row = tl.program_id(0).to(tl.int64)
    x_row = x_ptr + row * stride_x
    offs0 = tl.arange(0, BLOCK)
    m = tl.full((), float("-inf"), tl.float32)
    s = tl.zeros((), tl.float32)
    t = tl.zeros((), tl.float32)
    for start in range(0, Vt, BLOCK):
        offs = start + offs0
        valid = offs < Vt
        z = tl.load(x_row + offs, mask=valid, other=float("-inf")).to(tl.float32) / T
        # Every tile has a valid column and logits are finite, so m_new is finite.
        m_new = tl.maximum(m, tl.max(z, axis=0))
        alpha = tl.exp(m - m_new)  # 0 on the first step (m = -inf)
        w = tl.exp(z - m_new)  # 0 on masked columns
        if ENTROPY:
            d = tl.where(valid, z - m_new, 0.0)
            # s == 0 on the first step, where m - m_new is -inf (0 * -inf would be NaN).
            shift = s * tl.where(s > 0.0, m - m_new, 0.0)
            t = alpha * (t + shift) + tl.sum(w * d, axis=0)
        s = s * alpha + tl.sum(w, axis=0)
        m = m_new
    log_s = tl.log(s)
    tl.store(lse_ptr + row, m + log_s)
    if ENTROPY:
        tl.store(ent_ptr + row, log_s - t / s)
    # Targets outside the tile (another tile's, or ignore_index) give 0: the caller sums
    # the tiles' values, exactly one of which is the target's.
    local = tl.load(tgt_ptr + row).to(tl.int64) - v0
    inside = (local >= 0) & (local < Vt)
    zt = tl.load(x_row + tl.where(inside, local, 0), mask=inside, other=0.0).to(tl.float32) / T
    tl.store(zt_ptr + row, tl.where(inside, zt, 0.0))


@triton.jit
def _grad_kernel(
    x_ptr, stride_x, dx_ptr, stride_dx, tgt_ptr, lse_ptr, ent_ptr, glp_ptr, gent_ptr, Vt, v0, T,
    HAS_LOGP: tl.constexpr, HAS_ENT: tl.constexpr, BLOCK: tl.constexpr
):
    row = tl.program_id(0).to(tl.int64)
    x_row = x_ptr + row * stride_x
    dx_row = dx_ptr + row * stride_dx
    lse = tl.load(lse_ptr + row)
    local = tl.load(tgt_ptr + row).to(tl.int64) - v0
    g_lp = 0.0
    if HAS_LOGP:
        # ignore_index (any negative target) contributes no gradient.
        g_lp = tl.where(local + v0 >= 0, tl.load(glp_ptr + row).to(tl.float32), 0.0)
    g_ent = 0.0
    ent = 0.0
    if HAS_ENT:
        g_ent = tl.load(gent_ptr + row).to(tl.float32)
        ent = tl.load(ent_ptr + row)
    offs0 = tl.arange(0, BLOCK)
    for start in range(0, Vt, BLOCK):
        offs = start + offs0
        valid = offs < Vt
        z = tl.load(x_row + offs, mask=valid, other=0.0).to(tl.float32) / T
        logp = z - lse
        p = tl.exp(logp)
        d = tl.zeros((BLOCK,), tl.float32)
        if HAS_LOGP:
            d = g_lp * (tl.where(offs == local, 1.0, 0.0) - p)
        if HAS_ENT:
            d -= g_ent * p * (logp + ent)
        d = d / T
        tl.store(dx_row + offs, d.to(dx_ptr.dtype.element_ty), mask=valid)


def tile_stats_triton(x, targets, v0, temperature, entropy, *, block: int = _BLOCK):
    """(lse, entropy or None, z at target or 0) per row of the tile ``x`` [n, Vt]."""
    n, Vt = x.shape
    lse = torch.empty(n, dtype=torch.float32, device=x.device)
    ent = torch.empty(n, dtype=torch.float32, device=x.device) if entropy else None
    zt = torch.empty(n, dtype=torch.float32, device=x.device)
    if n:
        _stats_kernel[(n,)](
            x, x.stride(0), targets, lse, ent if entropy else lse, zt, Vt, v0, float(temperature),
            ENTROPY=entropy, BLOCK=block, num_warps=_NUM_WARPS,
        )
    return lse, ent, zt


def tile_grad_triton(x, targets, v0, temperature, lse, ent, g_logp, g_ent, *, out=None, block: int = _BLOCK):
    """The logits gradient of the tile ``x`` [n, Vt] into ``out`` (default: a new tensor in
    ``x.dtype``; ``out=x`` overwrites the tile in place)."""
    n, Vt = x.shape
    if out is None:
        out = torch.empty_like(x)
    if n:
        _grad_kernel[(n,)](
            x, x.stride(0), out, out.stride(0), targets, lse,
            ent if ent is not None else lse,
            g_logp if g_logp is not None else lse,
            g_ent if g_ent is not None else lse,
            Vt, v0, float(temperature),
            HAS_LOGP=g_logp is not None, HAS_ENT=g_ent is not None, BLOCK=block, num_warps=_NUM_WARPS,
        )
    return out
