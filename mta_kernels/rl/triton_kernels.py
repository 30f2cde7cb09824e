"""Triton kernel for policy_loss: forward and backward in one pass over the tokens.

One program per (row, block of ``BLOCK`` tokens). Each reads ``logprobs``,
``old_logprobs``, the mask (and per-token advantages when given) once, and writes

* ``d loss / d logprobs`` for its tokens (fp32), already divided by the aggregation
  normaliser; the autograd backward only multiplies it by ``grad_output``;
* four partial sums: the loss and the three stats (clip fraction, approximate KL,
  dual-clip fraction), each already divided by its normaliser. ``partials.sum(0)`` in torch
  finishes them: a fixed-order reduction, so results are deterministic (no atomics).

The normalisers need the mask counts before any token is weighed: ``mask.sum(1)`` and its
total are computed first (two small torch reductions over the mask, 1 byte a token for a
bool mask). Nothing synchronises with the host.

The derivative copies autograd's rules for the reference exactly, ties included:
``clamp`` passes the gradient on the closed interval ``[lo, hi]``; ``maximum``/``minimum``
split it in half between equal operands. So kernel and reference agree to rounding even
when a ratio sits exactly on a clip bound (e.g. ``logprobs == old_logprobs`` with a clip of
0: ratio 1 on both bounds).
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl
from triton.language.extra import libdevice

__all__ = ["policy_loss_triton", "AGG_CODES"]

AGG_CODES = {"token-mean": 0, "seq-mean-token-sum": 1, "seq-mean-token-mean": 2}

_BLOCK = 1024

# libdevice's expf (the one torch's CUDA exp calls), not tl.exp's ex2.approx: the clip
# decisions then match the reference bit for bit, even for a ratio one ulp from a bound.
# The interpreter has no libdevice; there tl.exp is numpy's exp.
_ACCURATE_EXP = tl.constexpr(os.environ.get("TRITON_INTERPRET") != "1")


@triton.jit
def _policy_loss_kernel(
    lp_ptr, old_ptr, adv_ptr, mask_ptr, counts_ptr, total_ptr, grad_ptr, partial_ptr,
    B, T, n_blocks, clip_lo, clip_hi, dual_c, log_ratio_clamp,
    ADV_PER_TOKEN: tl.constexpr, DUAL: tl.constexpr, CLAMP: tl.constexpr, AGG: tl.constexpr,
    WRITE_GRAD: tl.constexpr, BLOCK: tl.constexpr,
):
    b = tl.program_id(0)
    j = tl.program_id(1)
    offs = j * BLOCK + tl.arange(0, BLOCK)
    inb = offs < T
    row = b.to(tl.int64) * T

    lp = tl.load(lp_ptr + row + offs, mask=inb, other=0.0).to(tl.float32)
    old = tl.load(old_ptr + row + offs, mask=inb, other=0.0).to(tl.float32)
    m = tl.load(mask_ptr + row + offs, mask=inb, other=0).to(tl.float32)
    if ADV_PER_TOKEN:
        a = tl.load(adv_ptr + row + offs, mask=inb, other=0.0).to(tl.float32)
    else:
        # broadcast now: scalar-with-block boolean ops trip the interpreter
        a = tl.load(adv_ptr + b).to(tl.float32) + tl.zeros((BLOCK,), tl.float32)
    active = m != 0.0

    # Normalisers: a zero count counts as 1 (its terms are all zero anyway).
    total = tl.load(total_ptr)
    total = tl.where(total > 0.0, total, 1.0)
    if AGG == 0:
        w = 1.0 / total
    elif AGG == 1:
        w = 1.0 / B
    else:
        cnt = tl.load(counts_ptr + b)
        w = 1.0 / (B * tl.where(cnt > 0.0, cnt, 1.0))

    log_ratio = lp - old
    dlog = tl.full((BLOCK,), 1.0, tl.float32)
    if CLAMP:
        dlog = ((log_ratio >= -log_ratio_clamp) & (log_ratio <= log_ratio_clamp)).to(tl.float32)
        log_ratio = tl.minimum(tl.maximum(log_ratio, -log_ratio_clamp), log_ratio_clamp)
    if _ACCURATE_EXP:
        ratio = libdevice.exp(log_ratio)
    else:
        ratio = tl.exp(log_ratio)

    # pg1 = -A r, pg2 = -A clip(r); derivatives with respect to r.
    pg1 = -a * ratio
    pg2 = -a * tl.minimum(tl.maximum(ratio, clip_lo), clip_hi)
    d1 = -a
    d2 = tl.where((ratio >= clip_lo) & (ratio <= clip_hi), -a, 0.0)
    pg = tl.maximum(pg1, pg2)
    dpg = tl.where(pg1 > pg2, d1, tl.where(pg1 < pg2, d2, 0.5 * (d1 + d2)))
    clipped = pg2 > pg1
    if DUAL:
        pg3 = -a * dual_c
        negative = a < 0.0
        dual = (pg > pg3) & negative
        dpg3 = tl.where(pg < pg3, dpg, tl.where(pg > pg3, 0.0, 0.5 * dpg))
        pg = tl.where(negative, tl.minimum(pg, pg3), pg)
        dpg = tl.where(negative, dpg3, dpg)
        dual_sum = tl.sum(tl.where(active & dual, m, 0.0), axis=0)
    else:
        dual_sum = tl.sum(tl.zeros((BLOCK,), tl.float32), axis=0)

    if WRITE_GRAD:
        # d loss / d logprobs = w * m * d pg / d r * r * d clamp
        g = tl.where(active, (w * m) * dpg * ratio * dlog, 0.0)
        tl.store(grad_ptr + row + offs, g, mask=inb)

    pid = b * n_blocks + j
    inv_total = 1.0 / total
    tl.store(partial_ptr + pid * 4 + 0, tl.sum(tl.where(active, (w * m) * pg, 0.0), axis=0))
    tl.store(partial_ptr + pid * 4 + 1, tl.sum(tl.where(active & clipped, m, 0.0), axis=0) * inv_total)
    tl.store(partial_ptr + pid * 4 + 2, tl.sum(tl.where(active, -m * log_ratio, 0.0), axis=0) * inv_total)
    tl.store(partial_ptr + pid * 4 + 3, dual_sum * inv_total)


def _mask_view(mask: torch.Tensor) -> torch.Tensor:
    # Triton loads bool pointers as int1 inconsistently across versions; a uint8 view is free.
    return mask.view(torch.uint8) if mask.dtype == torch.bool else mask


def default_block(B: int, T: int) -> int:
    """Token block per program: 1024 once there are enough programs to fill an H100
    (2 x 132 SMs), smaller blocks for small batches so more SMs share the work."""
    for block in (1024, 512, 256):
        if B * triton.cdiv(T, block) >= 264:
            return block
    return 128


def policy_loss_forward_triton(
    logprobs, old_logprobs, advantages, mask, clip_low, clip_high, dual_clip, agg, log_ratio_clamp,
    *, write_grad: bool, block: int | None = None,
):
    """Launch the kernel. Returns ``(loss [], stats [3], grad [B, T] fp32 or None)``.

    Inputs are validated and contiguous; ``advantages`` is [B] or [B, T].
    """
    B, T = logprobs.shape
    device = logprobs.device
    block = block or default_block(B, T)
    n_blocks = triton.cdiv(T, block)
    m = _mask_view(mask)
    counts = mask.sum(dim=1, dtype=torch.float32)
    total = counts.sum()
    grad = torch.empty((B, T), dtype=torch.float32, device=device) if write_grad else None
    partials = torch.empty((B * n_blocks, 4), dtype=torch.float32, device=device)
    _policy_loss_kernel[(B, n_blocks)](
        logprobs, old_logprobs, advantages, m, counts, total, grad if write_grad else partials, partials,
        B, T, n_blocks, 1.0 - clip_low, 1.0 + clip_high,
        float(dual_clip) if dual_clip is not None else 0.0,
        float(log_ratio_clamp) if log_ratio_clamp is not None else 0.0,
        ADV_PER_TOKEN=advantages.dim() == 2, DUAL=dual_clip is not None, CLAMP=log_ratio_clamp is not None,
        AGG=AGG_CODES[agg], WRITE_GRAD=write_grad, BLOCK=block, num_warps=4,
    )
    sums = partials.sum(dim=0)
    return sums[0], sums[1:], grad


class PolicyLossFunction(torch.autograd.Function):
    """Fused forward + backward: the forward kernel writes ``d loss / d logprobs``; the
    backward scales it by ``grad_output``. Gradients flow to ``logprobs`` only
    (``old_logprobs``, advantages and mask are data, as in every PPO trainer)."""

    @staticmethod
    def forward(ctx, logprobs, old_logprobs, advantages, mask, clip_low, clip_high, dual_clip, agg,
                log_ratio_clamp, block):
        write_grad = ctx.needs_input_grad[0]
        loss, stats, grad = policy_loss_forward_triton(
            logprobs, old_logprobs, advantages, mask, clip_low, clip_high, dual_clip, agg, log_ratio_clamp,
            write_grad=write_grad, block=block,
        )
        ctx.logprobs_dtype = logprobs.dtype
        if write_grad:
            ctx.save_for_backward(grad)
        ctx.mark_non_differentiable(stats)
        return loss, stats

    @staticmethod
    def backward(ctx, grad_loss, grad_stats):
        (grad,) = ctx.saved_tensors
        return ((grad * grad_loss).to(ctx.logprobs_dtype),) + (None,) * 9


def policy_loss_triton(
    logprobs, old_logprobs, advantages, mask, clip_low, clip_high, dual_clip, agg, log_ratio_clamp=20.0,
    *, block: int | None = None,
):
    """Fused policy loss on validated input; same return as ``policy_loss_reference``."""
    loss, stats = PolicyLossFunction.apply(
        logprobs, old_logprobs, advantages, mask, clip_low, clip_high, dual_clip, agg, log_ratio_clamp, block
    )
    return loss, {"clip_fraction": stats[0], "approx_kl": stats[1], "dual_clip_fraction": stats[2]}
