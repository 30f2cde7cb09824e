"""The mixing ops' kernels, declared once (see :class:`mta_kernels._backend.Op`).

Every kernel takes the checked :class:`~mta_kernels.mixing.inputs.MixInputs` of one call:
``mix_logits``' as ``fn(inputs) -> [B, V] fp32``, ``mix_and_sample``'s as
``fn(inputs, top_k, top_p, min_p, uniform, top_k_hint) -> (tokens, logprobs)`` with the
``[B]`` sampling rows and one uniform draw per row (B >= 1).
"""

from __future__ import annotations

import torch

from mta_kernels._backend import Op
from mta_kernels.mixing.inputs import MixInputs
from mta_kernels.mixing.reference import factored_mixture, mix_and_sample_reference, mix_logits_reference
from mta_kernels.sampling.ops import SAMPLE

__all__ = ["MAX_FUSED_MODELS", "MIX_AND_SAMPLE", "MIX_LOGITS", "mix_then_sample"]

# The Triton kernels take one pointer argument per model.
MAX_FUSED_MODELS = 8


def _mix_logits_torch(inputs: MixInputs) -> torch.Tensor:
    return mix_logits_reference(inputs.logits, inputs.weights, inputs.normalize, inputs.temperature, inputs.plausibility)


def _mix_and_sample_torch(inputs: MixInputs, top_k, top_p, min_p, uniform, top_k_hint=None):
    return mix_and_sample_reference(
        inputs.logits, inputs.weights, inputs.normalize, inputs.temperature, inputs.plausibility,
        top_k, top_p, min_p, uniform,
    )


def _mix_and_sample_cpp(inputs: MixInputs, top_k, top_p, min_p, uniform, top_k_hint=None):
    return torch.ops.mta.mix_and_sample(
        inputs.logits, inputs.weights, inputs.temperature, inputs.plausibility, top_k, top_p, min_p, uniform
    )


def mix_then_sample(inputs: MixInputs, top_k, top_p, min_p, uniform, top_k_hint=None):
    """The mixture as ``mix_and_sample`` samples it (``s'`` at temperature ``T_min``,
    :func:`~mta_kernels.mixing.reference.factored_mixture`) in torch, then the fused sampler
    of the device: the path for more models than the fused mixing kernels take."""
    mixed, t_min = factored_mixture(inputs.logits, inputs.weights, inputs.temperature, inputs.plausibility)
    return SAMPLE.kernel(inputs.device)(mixed, t_min.contiguous(), top_k, top_p, min_p, uniform)


# mix_logits has no C++ body: on CPU tensors its "cpp" backend is the vectorised torch mix
# (kept so that MTA_BACKEND=cpp runs every mixing op).
MIX_LOGITS = Op(
    "mix_logits",
    {
        "reference": _mix_logits_torch,
        "triton": "mta_kernels.mixing.triton_kernels:mix_logits_triton",
        "cpp": _mix_logits_torch,
    },
    preferred={"cuda": ("triton",), "cpu": ("cpp",)},
)
MIX_AND_SAMPLE = Op(
    "mix_and_sample",
    {
        "reference": _mix_and_sample_torch,
        "triton": "mta_kernels.mixing.triton_kernels:mix_and_sample_triton",
        "cpp": _mix_and_sample_cpp,
    },
    preferred={"cuda": ("triton",), "cpu": ("cpp",)},
)
