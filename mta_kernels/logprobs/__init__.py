"""Token log-probabilities and entropy for RL: ``token_logprobs`` and its fused linear form.

Three layers: this module (checks and dispatch) -> the autograd Functions, one module each
(``token_triton.py``: ``token_logprobs`` on the Triton kernels; ``linear_chunked.py``: the
chunk loop of the linear form, over either backend's tile functions; ``autograd.py``: what
they share) and the Triton kernels in ``triton_kernels.py`` (CUDA) -> the torch reference
in ``reference.py`` (the CPU path, the test oracle and the benchmark baseline).

Ignored targets: ``targets == -100`` (``IGNORE_INDEX``, as verl / Hugging Face label
padding) gives ``logp = 0`` and no gradient through ``logp``. The entropy of such a row is
still computed and differentiable: it depends on the logits only, and verl computes the
entropy of every position and masks afterwards.
"""

from __future__ import annotations

import torch

from mta_kernels._validation import (
    POSITIVE_FINITE,
    check_bool,
    check_float_2d,
    check_logits_2d,
    check_number,
    check_optional_int,
)
from mta_kernels.logprobs.linear_chunked import linear_token_logprobs_chunked
from mta_kernels.logprobs.ops import LINEAR_TOKEN_LOGPROBS, TOKEN_LOGPROBS
from mta_kernels.logprobs.reference import IGNORE_INDEX, linear_token_logprobs_reference, token_logprobs_reference

__all__ = [
    "IGNORE_INDEX",
    "token_logprobs",
    "linear_token_logprobs",
    "token_logprobs_reference",
    "linear_token_logprobs_reference",
]


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
    kernel = TOKEN_LOGPROBS.kernel(logits.device) if logits.shape[0] else TOKEN_LOGPROBS.fn("reference")
    return kernel(logits, targets, temperature, return_entropy)


# ---------------------------------------------------------------------------------------
# linear_token_logprobs
# ---------------------------------------------------------------------------------------


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
    keeps no [N, V] tensor; see ``linear_chunked._LinearTokenLogprobs`` for why the gradients are not
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
    tiles = LINEAR_TOKEN_LOGPROBS.kernel(hidden.device)()
    return linear_token_logprobs_chunked(
        hidden.contiguous(), weight.contiguous(), bias, targets, temperature, return_entropy,
        chunk_size, vocab_chunk_size, tiles,
    )
