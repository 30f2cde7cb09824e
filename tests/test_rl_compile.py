"""The policy-loss Triton kernel compiles to sm_80 / sm_90 machine code, no GPU needed.

As in test_triton_compile.py: the interpreter checks the kernel's logic but accepts code the
real compiler rejects, so every constexpr variant the dispatcher can launch is compiled
ahead of time (Triton ships ptxas). Signatures come from triton_aot.py; one subprocess per
target, because this test session imported the kernels interpreted.
"""

import pytest
import torch

from triton_aot import compile_for_gpu, run_without_interpreter


def compile_policy_loss(capability: str) -> None:
    """Compile the kernel's variants (run without the interpreter)."""
    from mta_kernels.rl import triton_kernels as tk

    count = 0
    variants = [  # (logprobs dtype, mask dtype, per-token advantages, dual, clamp, agg, write grad)
        (torch.float32, torch.uint8, False, False, True, 0, True),
        (torch.float32, torch.uint8, True, True, True, 1, True),
        (torch.float32, torch.float32, False, True, False, 2, True),
        (torch.bfloat16, torch.uint8, True, False, True, 2, False),
        (torch.float16, torch.int64, False, True, True, 0, True),
    ]
    for logprobs, mask, per_token, dual, clamp, agg, write_grad in variants:
        # B sequences of T tokens in n_blocks blocks; the clip bounds and clamps are floats.
        examples = {
            "lp_ptr": logprobs, "old_ptr": logprobs, "adv_ptr": torch.float32, "mask_ptr": mask,
            "counts_ptr": torch.float32, "total_ptr": torch.float32, "grad_ptr": torch.float32,
            "partial_ptr": torch.float32, "B": 64, "T": 4096, "n_blocks": 4,
            "clip_lo": 0.8, "clip_hi": 1.2, "dual_c": 3.0, "log_ratio_clamp": 20.0,
        }
        constexprs = {"ADV_PER_TOKEN": per_token, "DUAL": dual, "CLAMP": clamp, "AGG": agg,
                      "WRITE_GRAD": write_grad, "BLOCK": tk._BLOCK}
        compile_for_gpu(tk._policy_loss_kernel, examples, constexprs, int(capability), num_warps=4)
        count += 1
    print("compiled", count, capability)


@pytest.mark.parametrize("capability", [80, 90])
def test_policy_loss_kernel_compiles_for_gpu(capability):
    out = run_without_interpreter("test_rl_compile:compile_policy_loss", capability)
    assert f"compiled 5 {capability}" in out
