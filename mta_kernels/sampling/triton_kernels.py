"""The Triton sampling entry points: one program per row, or split rows at small batches.

``ops.py`` declares :func:`sample_triton` and :func:`filter_logits_triton` as the ops'
Triton backend. Each picks, per call, between

* ``triton_row.py``: one program per row; enough programs to fill the GPU once B is
  moderate, and the fewest passes over memory;
* ``triton_split_row.py``: each row cut into chunks over many programs, then merged; the
  path for small batches, where one program per row would leave most SMs idle.

Both return the same tokens for the same uniforms. The kernels are built on the helpers
of ``triton_primitives.py``; imports run one way: primitives <- row, split-row <- here.
"""

from __future__ import annotations

import functools

import torch

from mta_kernels.sampling import triton_split_row as split_row
from mta_kernels.sampling.triton_primitives import BLOCK
from mta_kernels.sampling.triton_row import filter_logits_row, sample_row

__all__ = ["ROWS_PER_SM", "filter_logits_triton", "prefers_split_row", "sample_triton", "sm_count"]

# Split when one program per row would leave at least 3/4 of the SMs idle: B <= 33 on an
# H100 (132 SMs). CPU (the interpreter) uses the H100's count so tests see the GPU rule.
ROWS_PER_SM = 0.25
_H100_SMS = 132


@functools.lru_cache(maxsize=None)
def _cached_sm_count(device_type: str, index: int | None) -> int:
    if device_type == "cuda":
        return torch.cuda.get_device_properties(index).multi_processor_count
    return _H100_SMS


def sm_count(device: torch.device | str) -> int:
    """Streaming multiprocessors of ``device`` (cached); an H100's 132 off CUDA."""
    device = torch.device(device)
    return _cached_sm_count(device.type, device.index)


def prefers_split_row(batch: int, vocab: int, device: torch.device | str) -> bool:
    """Whether ``sample`` / ``filter_logits`` take the split-row path for this shape.

    Split when the vocabulary spans at least two chunks and ``batch <= ROWS_PER_SM * SMs``
    (B <= 33 on an H100): there one program per row leaves most SMs idle. A starting point
    from the kernels' structure; re-tune it with ``benchmarks/bench_sampling.py`` on a GPU.
    Callers override it with the ``split`` argument of :func:`sample_triton`.
    """
    return vocab >= 2 * split_row.CHUNK and 0 < batch <= ROWS_PER_SM * sm_count(device)


def filter_logits_triton(logits, temperature, top_k, top_p, min_p, *, block: int = BLOCK, split: bool | None = None):
    """Filtered logits [B, V] fp32 from normalised [B] parameters (see ``reference.py``).

    Parameters
    ----------
    logits : Tensor
        [B, V] contiguous, fp32 / bf16 / fp16, on a CUDA device (or the CPU under
        ``TRITON_INTERPRET=1``).
    temperature, top_k, top_p, min_p : Tensor
        [B] rows (fp32, int64, fp32, fp32) as ``_validation.sampling_rows`` builds them.
    block : int
        Tokens per tile.
    split : bool, optional
        Run each row over many programs (``triton_split_row.py``) or one (``triton_row.py``);
        None lets :func:`prefers_split_row` decide from B, V and the GPU's SM count.

    Returns
    -------
    Tensor
        [B, V] fp32: ``logits / temperature`` where kept, ``-inf`` elsewhere.
    """
    B, V = logits.shape
    if prefers_split_row(B, V, logits.device) if split is None else split:
        return split_row.filter_logits_split_row(logits, temperature, top_k, top_p, min_p, block=block)
    return filter_logits_row(logits, temperature, top_k, top_p, min_p, block=block)


def sample_triton(
    logits, temperature, top_k, top_p, min_p, uniform, *, block: int = BLOCK, split: bool | None = None
):
    """Tokens [B] int64 and their logprobs [B] fp32, one draw per row from ``uniform`` [B].

    Arguments as in :func:`filter_logits_triton`, plus ``uniform``: [B] fp32 in [0, 1), the
    row's draw, picking the token by inverse CDF in vocabulary order. Both paths (``split``)
    return the same tokens: -1 (logprob -inf) for a row with no finite logit.
    """
    B, V = logits.shape
    if prefers_split_row(B, V, logits.device) if split is None else split:
        return split_row.sample_split_row(logits, temperature, top_k, top_p, min_p, uniform, block=block)
    return sample_row(logits, temperature, top_k, top_p, min_p, uniform, block=block)
