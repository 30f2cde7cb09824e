"""Token log-probabilities and entropy for RL: ``token_logprobs`` and its fused linear form.

Three layers: this module (checks, dispatch, the autograd Functions and the chunk loop of
the linear form) -> the Triton kernels in ``triton_kernels.py`` (CUDA) -> the torch
reference in ``reference.py`` (the CPU path, the test oracle and the benchmark baseline).

Ignored targets: ``targets == -100`` (``IGNORE_INDEX``, as verl / Hugging Face label
padding) gives ``logp = 0`` and no gradient through ``logp``. The entropy of such a row is
still computed and differentiable: it depends on the logits only, and verl computes the
entropy of every position and masks afterwards.
"""

from __future__ import annotations

import torch

from mta_kernels._backend import Op
from mta_kernels._validation import (
    POSITIVE_FINITE,
    check_bool,
    check_float_2d,
    check_logits_2d,
    check_number,
    check_optional_int,
)
from mta_kernels.logprobs.reference import (
    IGNORE_INDEX,
    linear_token_logprobs_reference,
    merge_tile_stats,
    tile_grad_reference,
    tile_stats_reference,
    token_logprobs_reference,
)

__all__ = [
    "IGNORE_INDEX",
    "token_logprobs",
    "linear_token_logprobs",
    "token_logprobs_reference",
    "linear_token_logprobs_reference",
]

# Default chunk of the linear form: the logits of one chunk stay under this many bytes
# (in the fp32 working precision on CPU, where the torch tile math also makes about two
# temporary of that size; in the logits dtype on GPU, where the kernels work in place).
_GPU_CHUNK_BYTES = 256 * 2**20
_CPU_CHUNK_BYTES = 256 * 2**20
_MIN_CHUNK_ROWS = 16  # below this, split the vocabulary instead of the tokens further


def _check_targets(targets: object, n: int, vocab: int, device: torch.device) -> torch.Tensor:
    """[N] int32/int64 on ``device``, every value in [0, V) or ``IGNORE_INDEX``.

    The range check costs one device-to-host copy on CUDA; it is skipped while a CUDA graph
    is captured or under torch.compile (the kernels then treat any negative target as
    ignored and never read outside the row).
    """
    if not isinstance(targets, torch.Tensor):
        raise TypeError(f"targets must be a torch.Tensor, got {type(targets).__name__}")
    if targets.dim() != 1 or targets.shape[0] != n:
        raise ValueError(f"targets must have shape [N] with N={n}, got shape {tuple(targets.shape)}")
    if targets.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"targets must be an int64 or int32 tensor, got {targets.dtype}")
    if targets.device != device:
        raise ValueError(f"targets is on {targets.device} but the logits are on {device}")
    capturing = device.type == "cuda" and torch.cuda.is_current_stream_capturing()
    if n and not capturing and not torch.compiler.is_compiling():
        bad = ((targets < 0) & (targets != IGNORE_INDEX)) | (targets >= vocab)
        if bool(bad.any()):
            i = int(bad.nonzero()[0, 0])
            raise ValueError(
                f"targets must be in [0, {vocab}) or {IGNORE_INDEX} (ignore_index); "
                f"targets[{i}] = {int(targets[i])}"
            )
    return targets.contiguous()


# ---------------------------------------------------------------------------------------
# token_logprobs
# ---------------------------------------------------------------------------------------


def _finish(zt: torch.Tensor, lse: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return torch.where(targets >= 0, zt - lse, torch.zeros_like(lse))


class _TokenLogprobsTriton(torch.autograd.Function):
    """Forward: one read of the logits (logsumexp, entropy, target logit). Backward: one
    more read, writing the logits gradient in the logits dtype. Saves only [N] stats."""

    @staticmethod
    def forward(ctx, logits, targets, temperature, want_entropy, block):
        from mta_kernels.logprobs.triton_kernels import tile_stats_triton

        lse, ent, zt = tile_stats_triton(logits, targets, 0, temperature, want_entropy, block=block)
        logp = _finish(zt, lse, targets)
        ctx.save_for_backward(logits, targets, lse, ent if want_entropy else lse)
        ctx.temperature, ctx.want_entropy, ctx.block = temperature, want_entropy, block
        ctx.set_materialize_grads(False)
        if want_entropy:
            return logp, ent
        ctx.mark_non_differentiable(zt)
        return logp, zt  # second output unused

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


def token_logprobs(
    logits: torch.Tensor,
    targets: torch.Tensor,
    *,
    temperature: float = 1.0,
    return_entropy: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Log-probability of each target token, and optionally the entropy, under
    ``softmax(logits / temperature)``.

    Differentiable with respect to ``logits`` through both outputs. On CUDA two Triton
    kernels (forward: one read of the logits with an online logsumexp; backward: one more
    read writing the gradient in the logits dtype) and no [N, V] temporary beyond that
    gradient; on CPU the torch reference (``log_softmax`` + ``gather``).

    Parameters
    ----------
    logits : Tensor [N, V], float32 / bfloat16 / float16
        Finite values (a masked ``-inf`` logit is not supported).
    targets : Tensor [N], int64 / int32
        Token ids in ``[0, V)``, or ``-100`` (ignore_index) for positions to skip.
    temperature : float
        ``> 0``; the logits are divided by it first (verl divides the logits by the rollout
        temperature before its log-softmax).
    return_entropy : bool
        Also return the entropy of ``softmax(logits / temperature)``.

    Returns
    -------
    logp : Tensor [N] float32
        ``log_softmax(logits / T)[i, targets[i]]``; 0 with zero gradient where
        ``targets == -100``.
    entropy : Tensor [N] float32, only if ``return_entropy``
        Computed for every row, ignored ones included.

    Raises
    ------
    TypeError, ValueError
        Bad shapes, dtypes, devices, temperature, or a target outside ``[0, V)`` that is not
        ``-100``; the message names the argument.

    Examples
    --------
    >>> import torch, mta_kernels.logprobs as lp
    >>> lp.token_logprobs(torch.tensor([[0.0, 0.0], [0.0, 0.0]]), torch.tensor([1, -100]))
    tensor([-0.6931,  0.0000])
    """
    logits = check_logits_2d(logits, shape="[N, V]")
    temperature = check_number(temperature, "temperature", POSITIVE_FINITE)
    return_entropy = check_bool(return_entropy, "return_entropy")
    targets = _check_targets(targets, logits.shape[0], logits.shape[1], logits.device)
    kernel = TOKEN_LOGPROBS.kernel(logits.device) if logits.shape[0] else _token_logprobs_torch
    return kernel(logits, targets, temperature, return_entropy)


def _token_logprobs_torch(logits, targets, temperature, return_entropy):
    return token_logprobs_reference(logits, targets, temperature=temperature, return_entropy=return_entropy)


def _token_logprobs_triton(logits, targets, temperature, return_entropy, *, block: int | None = None):
    from mta_kernels.logprobs import triton_kernels

    logp, ent = _TokenLogprobsTriton.apply(
        logits, targets, temperature, return_entropy, block or triton_kernels._BLOCK
    )
    return (logp, ent) if return_entropy else logp


#: ``fn(logits, targets, temperature, return_entropy)`` on checked inputs (N >= 1).
#: Triton on CUDA; the torch reference on CPU (no C++ body).
TOKEN_LOGPROBS = Op(
    "token_logprobs",
    {"reference": _token_logprobs_torch, "triton": _token_logprobs_triton},
    preferred={"cuda": ("triton",)},
)


# ---------------------------------------------------------------------------------------
# linear_token_logprobs
# ---------------------------------------------------------------------------------------


def _default_chunks(n: int, vocab: int, dtype: torch.dtype, device: torch.device) -> tuple[int, int]:
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
        logp = _finish(zt, lse, targets)
        ctx.save_for_backward(hidden, weight, bias, targets, lse, ent)
        ctx.config = (temperature, want_entropy, chunk, vchunk)
        ctx.set_materialize_grads(False)
        if want_entropy:
            return logp, ent
        ctx.mark_non_differentiable(zt)
        return logp, zt  # second output unused

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


def _triton_tiles(block: int | None = None):
    from mta_kernels.logprobs import triton_kernels as tk

    b = block or tk._BLOCK

    def stats(x, tg, v0, temperature, entropy):
        return tk.tile_stats_triton(x, tg, v0, temperature, entropy, block=b)

    def grad(x, tg, v0, temperature, lse, ent, glp, gent):
        return tk.tile_grad_triton(x, tg, v0, temperature, lse, ent, glp, gent, out=x, block=b)

    return stats, grad


def _reference_tiles(block: int | None = None):
    return tile_stats_reference, tile_grad_reference


#: ``fn(block=None) -> (stats, grad)``: the per-tile functions the chunked linear form runs
#: on each chunk of logits. Triton on CUDA; the torch tile math on CPU.
LINEAR_TOKEN_LOGPROBS = Op(
    "linear_token_logprobs",
    {"reference": _reference_tiles, "triton": _triton_tiles},
    preferred={"cuda": ("triton",)},
)


def linear_token_logprobs(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    *,
    bias: torch.Tensor | None = None,
    temperature: float = 1.0,
    return_entropy: bool = False,
    chunk_size: int | None = None,
    vocab_chunk_size: int | None = None,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """``token_logprobs(hidden @ weight.T + bias, targets)`` without ever holding the
    [N, V] logits: peak memory is bounded by one chunk of logits.

    Differentiable with respect to ``hidden``, ``weight`` and ``bias`` through both
    outputs, for any per-token upstream gradient (advantages, masks). The backward pass
    recomputes each chunk's logits (4 matmuls in all, against 3 for the naive form) and
    keeps no [N, V] tensor; see ``_LinearTokenLogprobs`` for why the gradients are not
    precomputed in the forward as in Liger's fused linear cross entropy.

    Parameters
    ----------
    hidden : Tensor [N, H], float32 / bfloat16 / float16
    weight : Tensor [V, H], same dtype and device (the LM head, ``lm_head.weight``)
    targets : Tensor [N], int64 / int32
        In ``[0, V)`` or ``-100`` (ignore_index).
    bias : Tensor [V], optional, same dtype and device
    temperature : float
        ``> 0``.
    return_entropy : bool
        Also return the entropy.
    chunk_size : int, optional
        Tokens per chunk. Default: the largest power of two whose logits chunk stays under
        256 MB in the logits dtype on GPU (512 tokens for bf16 at V = 151936) and 256 MB of
        fp32 on CPU.
    vocab_chunk_size : int, optional
        Vocabulary columns per chunk, merged with an online logsumexp / entropy. Default:
        the whole vocabulary, unless even 16 tokens of it exceed the budget.

    Returns
    -------
    logp : Tensor [N] float32
    entropy : Tensor [N] float32, only if ``return_entropy``
        As :func:`token_logprobs`. The logits are computed in the inputs' dtype (a bf16
        matmul gives bf16 logits, as the naive form does); all softmax math is fp32.

    Examples
    --------
    >>> import torch, mta_kernels.logprobs as lp
    >>> h, w = torch.eye(2), torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    >>> lp.linear_token_logprobs(h, w, torch.tensor([0, 2]))
    tensor([-0.5514, -1.5514])
    """
    hidden = check_float_2d(hidden, "hidden", "[N, H]")
    weight = check_float_2d(weight, "weight", "[V, H]")
    if weight.dtype != hidden.dtype:
        raise TypeError(f"weight must have the dtype of hidden ({hidden.dtype}), got {weight.dtype}")
    if weight.device != hidden.device:
        raise ValueError(f"weight is on {weight.device} but hidden is on {hidden.device}")
    if weight.shape[1] != hidden.shape[1]:
        raise ValueError(
            f"weight must have shape [V, H] with H={hidden.shape[1]} (from hidden), got shape {tuple(weight.shape)}"
        )
    n, vocab = hidden.shape[0], weight.shape[0]
    if vocab == 0:
        raise ValueError(f"weight has an empty vocabulary (shape {tuple(weight.shape)})")
    if bias is not None:
        if not isinstance(bias, torch.Tensor):
            raise TypeError(f"bias must be a torch.Tensor or None, got {type(bias).__name__}")
        if bias.shape != (vocab,):
            raise ValueError(f"bias must have shape [V] with V={vocab}, got shape {tuple(bias.shape)}")
        if bias.dtype != hidden.dtype:
            raise TypeError(f"bias must have the dtype of hidden ({hidden.dtype}), got {bias.dtype}")
        if bias.device != hidden.device:
            raise ValueError(f"bias is on {bias.device} but hidden is on {hidden.device}")
        bias = bias.contiguous()
    temperature = check_number(temperature, "temperature", POSITIVE_FINITE)
    return_entropy = check_bool(return_entropy, "return_entropy")
    chunk_size = check_optional_int(chunk_size, "chunk_size", 1)
    vocab_chunk_size = check_optional_int(vocab_chunk_size, "vocab_chunk_size", 1)
    targets = _check_targets(targets, n, vocab, hidden.device)
    if n == 0:
        empty = (hidden.sum(1) + weight.sum() * 0).float()  # keeps the graph for autograd
        return (empty, empty.clone()) if return_entropy else empty
    return _linear_token_logprobs(
        hidden.contiguous(), weight.contiguous(), bias, targets, temperature, return_entropy,
        chunk_size, vocab_chunk_size, LINEAR_TOKEN_LOGPROBS.backend(hidden.device),
    )


def _linear_token_logprobs(
    hidden, weight, bias, targets, temperature, return_entropy, chunk_size, vocab_chunk_size, backend,
    *, block: int | None = None,
):
    n, vocab = hidden.shape[0], weight.shape[0]
    default_chunk, default_vchunk = _default_chunks(n, vocab, hidden.dtype, hidden.device)
    chunk = chunk_size or default_chunk
    vchunk = vocab_chunk_size or (default_vchunk if chunk_size is None else vocab)
    stats, grad = LINEAR_TOKEN_LOGPROBS.fn(backend)(block)
    logp, ent = _LinearTokenLogprobs.apply(
        hidden, weight, bias, targets, temperature, return_entropy, chunk, vchunk, (stats, grad)
    )
    return (logp, ent) if return_entropy else logp
