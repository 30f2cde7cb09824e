"""The Triton kernels compile to sm_80 / sm_90 machine code, no GPU needed.

The interpreter (TRITON_INTERPRET=1) checks the kernels' logic on CPU but accepts code the
real compiler rejects; compiling ahead of time for a GPU target (Triton ships ptxas) closes
that gap in CI. It runs in a subprocess because this test session imported the kernels
interpreted.
"""

import os
import subprocess
import sys

import pytest

COMPILE = """
import sys, triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from mta_kernels.sampling import triton_kernels as tk

kernel, dtype, capability = sys.argv[1], sys.argv[2], int(sys.argv[3])
params = {"temp_ptr": "*fp32", "top_k_ptr": "*i64", "top_p_ptr": "*fp32", "min_p_ptr": "*fp32",
          "V": "i32", "BLOCK": "constexpr"}
if kernel == "filter":
    fn, pointers = tk._filter_kernel, {"logits_ptr": "*" + dtype, "out_ptr": "*fp32"}
else:
    fn, pointers = tk._sample_kernel, {"logits_ptr": "*" + dtype, "uniform_ptr": "*fp32",
                                       "token_ptr": "*i64", "logprob_ptr": "*fp32"}
compiled = triton.compile(ASTSource(fn=fn, signature=pointers | params, constexprs={"BLOCK": tk._BLOCK}),
                          target=GPUTarget("cuda", capability, 32), options={"num_warps": 8})
assert len(compiled.asm["cubin"]) > 0 and f"sm_{capability}" in compiled.asm["ptx"]
print("compiled", kernel, dtype, capability)
"""


@pytest.mark.parametrize("capability", [80, 90])
@pytest.mark.parametrize("dtype", ["fp32", "bf16", "fp16"])
@pytest.mark.parametrize("kernel", ["filter", "sample"])
def test_kernel_compiles_for_gpu(kernel, dtype, capability):
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env.setdefault("TRITON_DEFAULT_FP_FUSION", "1")
    proc = subprocess.run(
        [sys.executable, "-c", COMPILE, kernel, dtype, str(capability)], env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"compiled {kernel} {dtype} {capability}" in proc.stdout
