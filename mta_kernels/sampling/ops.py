"""The sampling ops' kernels, declared once (see :class:`mta_kernels._backend.Op`)."""

from __future__ import annotations

from mta_kernels._backend import Op
from mta_kernels.sampling.reference import filter_logits_reference, sample_reference

__all__ = ["FILTER_LOGITS", "SAMPLE"]

# Triton on CUDA. The CUDA C++ sampler is experimental: it runs only when forced
# (MTA_BACKEND=cuda) until a GPU run measures it faster than the Triton kernels.
FILTER_LOGITS = Op(
    "filter_logits",
    {
        "reference": filter_logits_reference,
        "triton": "mta_kernels.sampling.triton_kernels:filter_logits_triton",
        "cpp": "mta::filter_logits",
        "cuda": "mta::filter_logits",
    },
    preferred={"cuda": ("triton",), "cpu": ("cpp",)},
)
#: ``fn(logits, temperature, top_k, top_p, min_p, uniform) -> (tokens, logprobs)`` on
#: checked inputs: contiguous [B >= 1, V] logits and the [B] rows of ``sampling_rows``.
SAMPLE = Op(
    "sample",
    {
        "reference": sample_reference,
        "triton": "mta_kernels.sampling.triton_kernels:sample_triton",
        "cpp": "mta::sample",
        "cuda": "mta::sample",
    },
    preferred={"cuda": ("triton",), "cpu": ("cpp",)},
)
