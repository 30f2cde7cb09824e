"""``linear_token_logprobs``: the chunked autograd Function and its chunk sizing.

``token_logprobs(hidden @ weight.T + bias)`` without the [N, V] logits: each chunk of tokens
(and of the vocabulary when V alone is over budget) is one matmul into a reused buffer, then
the per-tile functions of the chosen backend (``(stats, grad)``: the Triton kernels on CUDA,
the torch tile math of ``reference.py`` on CPU).
"""

from __future__ import annotations

import torch

from mta_kernels.logprobs.autograd import finish_forward
from mta_kernels.logprobs.reference import merge_tile_stats, tile_grad_reference, tile_stats_reference

__all__ = ["default_chunks", "linear_token_logprobs_chunked", "reference_tiles", "triton_tiles"]

# Default chunk of the linear form: the logits of one chunk stay under this many bytes
# (in the fp32 working precision on CPU, where the torch tile math also makes about two
# temporary of that size; in the logits dtype on GPU, where the kernels work in place).
_GPU_CHUNK_BYTES = 256 * 2**20
_CPU_CHUNK_BYTES = 256 * 2**20
_MIN_CHUNK_ROWS = 16  # below this, split the vocabulary instead of the tokens further


def default_chunks(n: int, vocab: int, dtype: torch.dtype, device: torch.device) -> tuple[int, int]:
    """(token chunk, vocabulary chunk) so one chunk of logits stays under the budget."""
    if device.type == "cuda":
        budget, itemsize = _GPU_CHUNK_BYTES, dtype.itemsize
    else:
        budget, itemsize = _CPU_CHUNK_BYTES, 4
    rows = budget // (vocab * itemsize)
    if rows >= _MIN_CHUNK_ROWS:
        rows = 1 << (rows.bit_length() - 1)  # a power of two: regular matmul shapes
        return max(1, min(n, rows)), vocab
    return max(1, min(n, _MIN_CHUNK_ROWS)), max(1, budget // (_MIN_CHUNK_ROWS * itemsize))


def _logits_tile(h, weight, bias, v0, v1, out):
    """``h @ weight[v0:v1].T (+ bias[v0:v1])`` into ``out``, a reused scratch buffer."""
    w = weight[v0:v1]
    if bias is None:
        return torch.mm(h, w.t(), out=out)
    return torch.addmm(bias[v0:v1], h, w.t(), out=out)


def _scratch(buffer, rows, cols):
    return buffer.view(-1)[: rows * cols].view(rows, cols)


class _LinearTokenLogprobs(torch.autograd.Function):
    """Chunked ``token_logprobs(hidden @ weight.T + bias)``.

    Forward, per chunk of tokens (and of the vocabulary if V alone exceeds the budget): one
    matmul into a reused buffer, then the stats (logsumexp, entropy, target logit), merged
    across vocabulary chunks. Only [N] fp32 stats are saved beside the inputs.

    Backward recomputes each chunk's logits, turns them into the logits gradient in place
    and projects it: ``dhidden = dlogits @ W``, ``dW += dlogits.T @ hidden``,
    ``db += dlogits.sum(0)``. Liger's fused linear cross entropy instead computes these in
    the forward and scales them by ``grad_output`` in backward; that is only right for a
    *scalar* loss. Our outputs are per token and RL losses weight tokens differently
    (advantages, masks), and ``sum_i g_i dlogits_i^T h_i`` cannot be recovered from
    ``sum_i dlogits_i^T h_i`` (Liger-Kernel PR #1298 fixes exactly this bug for its
    ``reduction="none"``). The recomputation costs one extra matmul per chunk.
    Gradients of weight and bias accumulate in fp32 across chunks.
    """

    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, temperature, want_entropy, chunk, vchunk, tile_fns):
        tile_stats, ctx.tile_grad = tile_fns
        n = hidden.shape[0]
        vocab = weight.shape[0]
        dev = hidden.device
        lse = torch.empty(n, dtype=torch.float32, device=dev)
        ent = torch.empty(n, dtype=torch.float32, device=dev) if want_entropy else None
        zt = torch.empty(n, dtype=torch.float32, device=dev)
        buffer = torch.empty(min(chunk, n) * min(vchunk, vocab), dtype=hidden.dtype, device=dev)
        for n0 in range(0, n, chunk):
            n1 = min(n, n0 + chunk)
            h, tg = hidden[n0:n1], targets[n0:n1]
            acc = None
            for v0 in range(0, vocab, vchunk):
                v1 = min(vocab, v0 + vchunk)
                x = _logits_tile(h, weight, bias, v0, v1, _scratch(buffer, n1 - n0, v1 - v0))
                stats = tile_stats(x, tg, v0, temperature, want_entropy)
                if acc is None:
                    acc = list(stats)
                else:
                    acc[0], acc[1] = merge_tile_stats(acc[0], acc[1], stats[0], stats[1])
                    acc[2] = acc[2] + stats[2]
            lse[n0:n1] = acc[0]
            zt[n0:n1] = acc[2]
            if want_entropy:
                ent[n0:n1] = acc[1]
        ctx.save_for_backward(hidden, weight, bias, targets, lse, ent)
        ctx.config = (temperature, want_entropy, chunk, vchunk)
        return finish_forward(ctx, zt, lse, ent, targets, want_entropy)

    @staticmethod
    def backward(ctx, g_logp, g_ent):
        hidden, weight, bias, targets, lse, ent = ctx.saved_tensors
        temperature, want_entropy, chunk, vchunk = ctx.config
        tile_grad = ctx.tile_grad
        if not want_entropy:
            g_ent = None
        need_h, need_w, need_b = ctx.needs_input_grad[:3]
        if (g_logp is None and g_ent is None) or not (need_h or need_w or need_b):
            return (None,) * 9
        n, H = hidden.shape
        vocab = weight.shape[0]
        dev, dtype = hidden.device, hidden.dtype
        if g_logp is not None:  # ignored rows contribute nothing through logp
            g_logp = torch.where(targets >= 0, g_logp.float(), 0.0).contiguous()
        if g_ent is not None:
            g_ent = g_ent.float().contiguous()
        dh = torch.empty_like(hidden) if need_h else None
        fp32_w = weight.dtype == torch.float32
        dw = torch.zeros(weight.shape, dtype=torch.float32, device=dev) if need_w else None
        db = torch.zeros(vocab, dtype=torch.float32, device=dev) if need_b else None
        single = vchunk >= vocab
        dh_acc = None
        if need_h and not single:
            dh_acc = torch.empty(min(chunk, n), H, dtype=torch.float32, device=dev)
        buffer = torch.empty(min(chunk, n) * min(vchunk, vocab), dtype=dtype, device=dev)
        for n0 in range(0, n, chunk):
            n1 = min(n, n0 + chunk)
            rows = slice(n0, n1)
            h, tg = hidden[rows], targets[rows]
            glp = None if g_logp is None else g_logp[rows]
            gen = None if g_ent is None else g_ent[rows]
            e = None if ent is None else ent[rows]
            if dh_acc is not None:
                acc_h = dh_acc[: n1 - n0].zero_()
            for v0 in range(0, vocab, vchunk):
                v1 = min(vocab, v0 + vchunk)
                x = _logits_tile(h, weight, bias, v0, v1, _scratch(buffer, n1 - n0, v1 - v0))
                d = tile_grad(x, tg, v0, temperature, lse[rows], e, glp, gen)  # in place on GPU
                w = weight[v0:v1]
                if need_h:
                    if single:
                        torch.mm(d, w, out=dh[rows])
                    elif dtype == torch.float32:
                        acc_h.addmm_(d, w)
                    else:
                        acc_h.add_(d @ w)
                if need_w:
                    if fp32_w:
                        dw[v0:v1].addmm_(d.t(), h)
                    else:
                        dw[v0:v1].add_(d.t() @ h)
                if need_b:
                    db[v0:v1].add_(d.sum(0, dtype=torch.float32))
            if dh_acc is not None:
                dh[rows] = acc_h
        return (
            dh,
            None if dw is None else dw.to(weight.dtype),
            None if db is None else db.to(bias.dtype),
            None, None, None, None, None, None,
        )


def triton_tiles(block: int | None = None):
    """The ``triton`` kernel of ``LINEAR_TOKEN_LOGPROBS``: ``(stats, grad)`` tile functions
    over the Triton kernels, ``block`` columns per step; the gradient overwrites its tile."""
    from mta_kernels.logprobs import triton_kernels as tk

    b = block or tk._BLOCK

    def stats(x, tg, v0, temperature, entropy):
        return tk.tile_stats_triton(x, tg, v0, temperature, entropy, block=b)

    def grad(x, tg, v0, temperature, lse, ent, glp, gent):
        return tk.tile_grad_triton(x, tg, v0, temperature, lse, ent, glp, gent, out=x, block=b)

    return stats, grad


def reference_tiles(block: int | None = None):
    """The ``reference`` kernel of ``LINEAR_TOKEN_LOGPROBS``: the torch tile math (``block``
    is unused; the signature is the op's)."""
    return tile_stats_reference, tile_grad_reference


def linear_token_logprobs_chunked(
    hidden, weight, bias, targets, temperature, return_entropy, chunk_size, vocab_chunk_size, tiles
):
    """``linear_token_logprobs`` on checked inputs (N >= 1): the default chunk sizes, then
    :class:`_LinearTokenLogprobs` with ``tiles``, the ``(stats, grad)`` pair of
    :func:`triton_tiles` or :func:`reference_tiles`."""
    n, vocab = hidden.shape[0], weight.shape[0]
    default_chunk, default_vchunk = default_chunks(n, vocab, hidden.dtype, hidden.device)
    chunk = chunk_size or default_chunk
    vchunk = vocab_chunk_size or (default_vchunk if chunk_size is None else vocab)
    logp, ent = _LinearTokenLogprobs.apply(
        hidden, weight, bias, targets, temperature, return_entropy, chunk, vchunk, tiles
    )
    return (logp, ent) if return_entropy else logp
