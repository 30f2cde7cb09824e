"""The RL ops' kernels, declared once (see :class:`mta_kernels._backend.Op`).

Only ``policy_loss`` has a kernel; ``group_advantages`` and ``pass_at_k`` are torch on
every device (a handful of elementwise ops on [B, G] or per-problem counts).
"""

from __future__ import annotations

from mta_kernels._backend import Op
from mta_kernels.rl.reference import policy_loss_reference

__all__ = ["POLICY_LOSS"]

#: ``fn(logprobs, old_logprobs, advantages, mask, clip_low, clip_high, dual_clip, agg,
#: log_ratio_clamp) -> (loss, stats)`` on checked, contiguous inputs. The fused Triton
#: kernel on CUDA; the torch reference on CPU (no C++ body).
POLICY_LOSS = Op(
    "policy_loss",
    {"reference": policy_loss_reference, "triton": "mta_kernels.rl.triton_kernels:policy_loss_triton"},
    preferred={"cuda": ("triton",)},
)
