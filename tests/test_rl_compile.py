"""The policy-loss Triton kernel compiles to sm_80 / sm_90 machine code, no GPU needed.

As in test_triton_compile.py: the interpreter checks the kernel's logic but accepts code the
real compiler rejects, so every constexpr variant the dispatcher can launch is compiled
ahead of time (Triton ships ptxas). One subprocess per target, because this test session
imported the kernels interpreted.
"""

import os
import subprocess
import sys

import pytest

COMPILE = """
import itertools, sys, triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from mta_kernels.rl import triton_kernels as tk

capability = int(sys.argv[1])
scalars = {"B": "i32", "T": "i32", "n_blocks": "i32", "clip_lo": "fp32", "clip_hi": "fp32",
           "dual_c": "fp32", "log_ratio_clamp": "fp32"}
count = 0
variants = [  # (logprobs dtype, mask dtype, per-token advantages, dual, clamp, agg, write grad)
    ("fp32", "u8", False, False, True, 0, True),
    ("fp32", "u8", True, True, True, 1, True),
    ("fp32", "fp32", False, True, False, 2, True),
    ("bf16", "u8", True, False, True, 2, False),
    ("fp16", "i64", False, True, True, 0, True),
]
for lp, mask, per_token, dual, clamp, agg, write_grad in variants:
    pointers = {"lp_ptr": "*" + lp, "old_ptr": "*" + lp, "adv_ptr": "*fp32", "mask_ptr": "*" + mask,
                "counts_ptr": "*fp32", "total_ptr": "*fp32", "grad_ptr": "*fp32", "partial_ptr": "*fp32"}
    constexprs = {"ADV_PER_TOKEN": per_token, "DUAL": dual, "CLAMP": clamp, "AGG": agg,
                  "WRITE_GRAD": write_grad, "BLOCK": tk._BLOCK}
    signature = pointers | scalars | {name: "constexpr" for name in constexprs}
    compiled = triton.compile(ASTSource(fn=tk._policy_loss_kernel, signature=signature, constexprs=constexprs),
                              target=GPUTarget("cuda", capability, 32), options={"num_warps": 4})
    assert len(compiled.asm["cubin"]) > 0 and f"sm_{capability}" in compiled.asm["ptx"]
    count += 1
print("compiled", count, capability)
"""


@pytest.mark.parametrize("capability", [80, 90])
def test_policy_loss_kernel_compiles_for_gpu(capability):
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    proc = subprocess.run(
        [sys.executable, "-c", COMPILE, str(capability)], env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"compiled 5 {capability}" in proc.stdout
