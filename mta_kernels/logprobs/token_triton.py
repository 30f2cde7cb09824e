"""``token_logprobs`` on CUDA: the autograd Function over the two Triton tile kernels.

Forward and backward each read the logits once (``triton_kernels.py``); only [N] fp32 stats
are saved. The Triton module is imported on first use, so this module imports without
Triton.
"""

from __future__ import annotations

import torch

from mta_kernels.logprobs.autograd import finish_forward

__all__ = ["token_logprobs_triton"]


class _TokenLogprobsTriton(torch.autograd.Function):
    """Forward: one read of the logits (logsumexp, entropy, target logit). Backward: one
    more read, writing the logits gradient in the logits dtype. Saves only [N] stats."""

    @staticmethod
    def forward(ctx, logits, targets, temperature, want_entropy, block):
        from mta_kernels.logprobs.triton_kernels import tile_stats_triton

        lse, ent, zt = tile_stats_triton(logits, targets, 0, temperature, want_entropy, block=block)
        ctx.save_for_backward(logits, targets, lse, ent if want_entropy else lse)
        ctx.temperature, ctx.want_entropy, ctx.block = temperature, want_entropy, block
        return finish_forward(ctx, zt, lse, ent, targets, want_entropy)

    @staticmethod
    def backward(ctx, g_logp, g_ent):
        from mta_kernels.logprobs.triton_kernels import tile_grad_triton

        logits, targets, lse, ent = ctx.saved_tensors
        if not ctx.want_entropy:
            g_ent = None
        if g_logp is None and g_ent is None:
            return None, None, None, None, None
        dlogits = tile_grad_triton(
            logits, targets, 0, ctx.temperature, lse, ent,
            None if g_logp is None else g_logp.float().contiguous(),
            None if g_ent is None else g_ent.float().contiguous(),
            block=ctx.block,
        )
        return dlogits, None, None, None, None


def token_logprobs_triton(logits, targets, temperature, return_entropy, *, block: int | None = None):
    """The ``triton`` kernel of ``TOKEN_LOGPROBS``: ``token_logprobs`` on checked inputs
    (N >= 1); ``block`` columns per kernel step (default ``triton_kernels._BLOCK``; tests
    pass a small one so that a row spans several ragged tiles)."""
    from mta_kernels.logprobs import triton_kernels

    logp, ent = _TokenLogprobsTriton.apply(
        logits, targets, temperature, return_entropy, block or triton_kernels._BLOCK
    )
    return (logp, ent) if return_entropy else logp
