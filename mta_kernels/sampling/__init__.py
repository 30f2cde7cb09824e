"""Fused sampling: temperature / top-k / top-p / min-p filtering and sampling without sorting.

Three layers: this module (checks) -> the kernels declared in ``ops.py`` (Triton in
``triton_kernels.py``, C++/CUDA in ``csrc/``) -> the torch reference in ``reference.py``.
:class:`Sampler` is the decode loop's form: checks and backend choice once, per token only
the kernel.
"""

from __future__ import annotations

import torch

from mta_kernels._validation import check_generator, check_logits_2d, sampling_rows
from mta_kernels.sampling.ops import FILTER_LOGITS, SAMPLE
from mta_kernels.sampling.reference import filter_logits_reference, sample_reference
from mta_kernels.sampling.sampler import Sampler

__all__ = ["FILTER_LOGITS", "SAMPLE", "Sampler", "filter_logits", "sample", "filter_logits_reference", "sample_reference"]

def filter_logits(
    logits: torch.Tensor,
    temperature: float | torch.Tensor = 1.0,
    top_k: int | torch.Tensor = 0,
    top_p: float | torch.Tensor = 1.0,
    min_p: float | torch.Tensor = 0.0,
) -> torch.Tensor:
    """Apply temperature, top-k, top-p and min-p; removed entries become ``-inf``.

    Same result as transformers' Temperature -> TopK -> TopP -> MinP warpers (ties at a cut
    are kept together; the warpers keep an arbitrary subset of them).

    Parameters
    ----------
    logits : Tensor [B, V], float32 / bfloat16 / float16
        NaN entries count as ``-inf``.
    temperature : float or Tensor [B]
        ``z = logits / temperature``; ``0`` is greedy: only the (first) argmax is kept, with
        its unscaled value. Must be in ``[0, inf)``.
    top_k : int or Tensor [B]
        Keep the ``k`` largest; ``k <= 0`` or ``k >= V`` turns it off.
    top_p : float or Tensor [B]
        Keep the smallest set of largest tokens whose probability (softmax over what top-k
        kept) reaches ``top_p``; at least one token. In ``(0, 1]``; ``1`` is off.
    min_p : float or Tensor [B]
        Keep tokens with ``p >= min_p * p_max``. In ``[0, 1]``; ``0`` is off.

    Returns
    -------
    Tensor [B, V] float32

    Examples
    --------
    >>> import torch, mta_kernels as mk
    >>> mk.filter_logits(torch.tensor([[1.0, 3.0, 2.0]]), top_k=2)
    tensor([[-inf, 3., 2.]])
    """
    logits = check_logits_2d(logits)
    params = sampling_rows(temperature, top_k, top_p, min_p, logits.shape[0], logits.device)
    if logits.shape[0] == 0:
        return torch.empty(logits.shape, dtype=torch.float32, device=logits.device)
    return FILTER_LOGITS.kernel(logits.device)(logits, *params)


def sample(
    logits: torch.Tensor,
    temperature: float | torch.Tensor = 1.0,
    top_k: int | torch.Tensor = 0,
    top_p: float | torch.Tensor = 1.0,
    min_p: float | torch.Tensor = 0.0,
    *,
    generator: torch.Generator | None = None,
    return_logprobs: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Draw one token per row from ``softmax(filter_logits(logits, ...))``.

    One ``U[0, 1)`` draw per row (``torch.rand`` with ``generator``, on the logits' device)
    picks the token by inverse CDF in vocabulary order, so the result is reproducible with a
    seeded generator and every backend returns the same token for the same draw (up to float
    rounding exactly at a CDF boundary). No sorted copy of the vocabulary is made on GPU and
    nothing synchronises with the host (tensor-parameter range checks aside, see
    ``per_row_param``).

    Parameters
    ----------
    logits, temperature, top_k, top_p, min_p
        As in :func:`filter_logits`.
    generator : torch.Generator, optional
        On the logits' device.
    return_logprobs : bool
        Also return the chosen token's log-probability under the processed distribution
        (0 for greedy rows).

    Returns
    -------
    tokens : Tensor [B] int64
        ``-1`` for a row with no finite logit (all ``-inf`` or NaN).
    logprobs : Tensor [B] float32, only if ``return_logprobs``
        ``-inf`` for such a row.

    Examples
    --------
    >>> import torch, mta_kernels as mk
    >>> g = torch.Generator().manual_seed(0)
    >>> mk.sample(torch.tensor([[0.0, 9.0, 0.0]]), temperature=0.0, generator=g)
    tensor([1])
    """
    logits = check_logits_2d(logits)
    B, device = logits.shape[0], logits.device
    params = sampling_rows(temperature, top_k, top_p, min_p, B, device)
    check_generator(generator, device)
    uniform = torch.rand(B, generator=generator, device=device, dtype=torch.float32)
    if B == 0:
        tokens, logprobs = torch.empty(0, dtype=torch.int64, device=device), uniform
    else:
        tokens, logprobs = SAMPLE.kernel(device)(logits, *params, uniform)
    return (tokens, logprobs) if return_logprobs else tokens
