"""One-program-per-row Triton kernels for filter_logits and sample: no sort.

Per row, in passes over the logits (each a read of the row; the row stays in L2 for the
later passes at moderate batch sizes), with the helpers of ``triton_primitives.py``:

1. max, first argmax of the raw logits (greedy rows, and those a tiny temperature makes
   greedy, stop here);
2. top-k threshold: exact radix select of the k-th largest on an order-preserving uint32 key
   of ``z``, 4 bits per pass (16-bucket count histograms), stopping early as soon as the
   bucket holding the cut is kept whole or holds a single token;
3. top-p threshold: the same radix walk on a *mass* histogram (``exp(z - max)`` of the
   tokens top-k kept), looking for the token whose inclusion brings the mass from the top
   to ``top_p * Z``;
4. min-p is a closed form: ``z >= max + log(min_p)``;
5. ``sample``: the kept mass ``Z``, then an inverse-CDF scan in vocabulary order with the
   row's uniform draw (the same rule as the reference, so both pick the same token).

At small batch sizes one program per row leaves most of the GPU idle; ``triton_kernels.py``
then takes the split-row kernels of ``triton_split_row.py`` instead.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from mta_kernels.sampling.triton_primitives import (
    BLOCK,
    inverse_cdf_draw,
    load_row_params,
    load_z,
    max_and_scale,
    order_key,
    row_cut,
    row_max_argmax,
    token_logprob,
)

__all__ = ["filter_logits_row", "sample_row"]


@triton.jit
def _filter_kernel(
    logits_ptr, out_ptr, temp_ptr, top_k_ptr, top_p_ptr, min_p_ptr, V, BLOCK: tl.constexpr
):
    pid = tl.program_id(0)
    row_ptr = logits_ptr + pid.to(tl.int64) * V
    out_row = out_ptr + pid.to(tl.int64) * V
    greedy, t, top_k, top_p, min_p = load_row_params(pid, temp_ptr, top_k_ptr, top_p_ptr, min_p_ptr)
    x_max, arg = row_max_argmax(row_ptr, V, BLOCK)
    greedy, t, m = max_and_scale(greedy, t, x_max)
    key_cut = tl.zeros((), tl.int64)
    z_min = float("-inf")
    # Greedy rows keep the index range [arg, arg]; others [0, V).
    first = tl.where(greedy != 0, arg, 0)
    last = tl.where(greedy != 0, arg, V - 1)
    if (greedy == 0) & (m > float("-inf")):
        key_cut, z_min = row_cut(row_ptr, V, t, m, top_k, top_p, min_p, -1.0, BLOCK)
    offs0 = tl.arange(0, BLOCK)
    for start in range(0, V, BLOCK):
        offs = start + offs0
        z = load_z(row_ptr, offs, V, t)
        keep = (z > float("-inf")) & (order_key(z) >= key_cut) & (z >= z_min) & (offs >= first) & (offs <= last)
        tl.store(out_row + offs, tl.where(keep, z, float("-inf")), mask=offs < V)


@triton.jit
def _sample_kernel(
    logits_ptr, uniform_ptr, token_ptr, logprob_ptr, temp_ptr, top_k_ptr, top_p_ptr, min_p_ptr,
    V, BLOCK: tl.constexpr
):
    pid = tl.program_id(0)
    row_ptr = logits_ptr + pid.to(tl.int64) * V
    greedy, t, top_k, top_p, min_p = load_row_params(pid, temp_ptr, top_k_ptr, top_p_ptr, min_p_ptr)
    x_max, arg = row_max_argmax(row_ptr, V, BLOCK)
    greedy, t, m = max_and_scale(greedy, t, x_max)
    token = arg.to(tl.int64)
    logprob = 0.0
    if m == float("-inf"):
        token = tl.full((), -1, tl.int64)
        logprob = float("-inf")
    elif greedy == 0:
        key_cut, z_min = row_cut(row_ptr, V, t, m, top_k, top_p, min_p, -1.0, BLOCK)
        pos, total = inverse_cdf_draw(row_ptr, V, t, m, key_cut, z_min, tl.load(uniform_ptr + pid), BLOCK)
        token = pos.to(tl.int64)
        logprob = token_logprob(load_z(row_ptr, pos, V, t), m, total)
    tl.store(token_ptr + pid, token)
    tl.store(logprob_ptr + pid, logprob)


def filter_logits_row(logits, temperature, top_k, top_p, min_p, *, block: int = BLOCK):
    """Filtered logits, one program per row.

    Parameters
    ----------
    logits : Tensor
        [B, V] contiguous, fp32 / bf16 / fp16.
    temperature, top_k, top_p, min_p : Tensor
        [B] normalised rows (fp32, int64, fp32, fp32; see ``reference.py``).
    block : int
        Tokens per tile (a power of two).

    Returns
    -------
    Tensor
        [B, V] fp32: ``z = logits / temperature`` where kept, ``-inf`` elsewhere.
    """
    B, V = logits.shape
    out = torch.empty((B, V), dtype=torch.float32, device=logits.device)
    if B:
        _filter_kernel[(B,)](logits, out, temperature, top_k, top_p, min_p, V, BLOCK=block, num_warps=8)
    return out


def sample_row(logits, temperature, top_k, top_p, min_p, uniform, *, block: int = BLOCK):
    """One draw per row from ``softmax(filter_logits_row(...))``, one program per row.

    Parameters are those of :func:`filter_logits_row`, plus ``uniform`` : [B] fp32 in
    [0, 1), the row's draw.

    Returns
    -------
    tokens : Tensor
        [B] int64; -1 for a row with no finite logit.
    logprobs : Tensor
        [B] fp32, of the token under the filtered distribution (0 for greedy rows, -inf
        for a row with no finite logit).
    """
    B, V = logits.shape
    tokens = torch.empty(B, dtype=torch.int64, device=logits.device)
    logprobs = torch.empty(B, dtype=torch.float32, device=logits.device)
    if B:
        _sample_kernel[(B,)](
            logits, uniform, tokens, logprobs, temperature, top_k, top_p, min_p, V, BLOCK=block, num_warps=8
        )
    return tokens, logprobs
