"""The log-probability ops' kernels, declared once (see :class:`mta_kernels._backend.Op`).

Triton on CUDA; the torch reference on CPU (no C++ body).
"""

from __future__ import annotations

from mta_kernels._backend import Op
from mta_kernels.logprobs.linear_chunked import reference_tiles, triton_tiles
from mta_kernels.logprobs.reference import token_logprobs_reference
from mta_kernels.logprobs.token_triton import token_logprobs_triton

__all__ = ["LINEAR_TOKEN_LOGPROBS", "TOKEN_LOGPROBS"]


def _token_logprobs_torch(logits, targets, temperature, return_entropy):
    return token_logprobs_reference(logits, targets, temperature=temperature, return_entropy=return_entropy)


#: ``fn(logits, targets, temperature, return_entropy)`` on checked inputs (N >= 1).
TOKEN_LOGPROBS = Op(
    "token_logprobs",
    {"reference": _token_logprobs_torch, "triton": token_logprobs_triton},
    preferred={"cuda": ("triton",)},
)

#: ``fn(block=None) -> (stats, grad)``: the per-tile functions the chunked linear form runs
#: on each chunk of logits.
LINEAR_TOKEN_LOGPROBS = Op(
    "linear_token_logprobs",
    {"reference": reference_tiles, "triton": triton_tiles},
    preferred={"cuda": ("triton",)},
)
