"""The braking op's kernels, declared once (see :class:`mta_kernels._backend.Op`)."""

from __future__ import annotations

from mta_kernels._backend import Op
from mta_kernels.braking.reference import braking_step_reference

__all__ = ["BRAKING_STEP"]

#: ``fn(logits, last_tokens, counters, flags, tables, table_layout, config) -> None`` on
#: checked inputs in the packed layout of :mod:`mta_kernels.braking.layout`: updates logits,
#: counters and flags in place. The C++ op on the CPU, the CUDA kernel on the GPU.
BRAKING_STEP = Op(
    "braking_step",
    {
        "reference": braking_step_reference,
        "cpp": "mta::braking_step",
        "cuda": "mta::braking_step",
    },
    preferred={"cuda": ("cuda",), "cpu": ("cpp",)},
)
