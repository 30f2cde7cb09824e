"""mta_kernels: fused GPU kernels (Triton / CUDA) with CPU fallbacks.

>>> import mta_kernels as mk
>>> tokens = mk.sample(logits, temperature=0.7, top_k=50, top_p=0.9)   # doctest: +SKIP

Every op validates its input, then dispatches: CUDA tensor -> GPU kernel, CPU tensor -> C++
op (or the torch reference). ``MTA_BACKEND=reference|triton|cuda|cpp`` forces a backend.
"""

from mta_kernels._backend import BACKENDS, available_backends
from mta_kernels._extension import extension_error, extension_loaded
from mta_kernels.braking import BrakingConfig, BrakingController, BrakingState, MarkerTables, braking_step
from mta_kernels.logprobs import linear_token_logprobs, token_logprobs
from mta_kernels.mixing import mix_and_sample, mix_logits, wsd_switch_point
from mta_kernels.rl import group_advantages, pass_at_k, policy_loss
from mta_kernels.sampling import Sampler, filter_logits, sample

__version__ = "0.1.0"

__all__ = [
    "BACKENDS",
    "BrakingConfig",
    "BrakingController",
    "BrakingState",
    "MarkerTables",
    "Sampler",
    "braking_step",
    "available_backends",
    "extension_error",
    "extension_loaded",
    "filter_logits",
    "group_advantages",
    "linear_token_logprobs",
    "mix_and_sample",
    "mix_logits",
    "pass_at_k",
    "policy_loss",
    "sample",
    "token_logprobs",
    "wsd_switch_point",
]
