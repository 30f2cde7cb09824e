"""The logprobs Triton kernels compile to sm_80 / sm_90 machine code, no GPU needed.

As in test_triton_compile.py: the interpreter checks the kernels' logic but accepts code the
real compiler rejects, so every constexpr variant the dispatcher can launch is compiled
ahead of time (Triton ships ptxas), for each logits dtype. One subprocess per target,
because this test session imported the kernels interpreted.
"""

import os
import subprocess
import sys

import pytest

COMPILE = """
import sys, triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from mta_kernels.logprobs import triton_kernels as tk

capability = int(sys.argv[1])
target = GPUTarget("cuda", capability, 32)
count = 0

def build(fn, signature, constexprs):
    global count
    signature = signature | {name: "constexpr" for name in constexprs}
    compiled = triton.compile(ASTSource(fn=fn, signature=signature, constexprs=constexprs),
                              target=target, options={"num_warps": tk._NUM_WARPS})
    assert len(compiled.asm["cubin"]) > 0 and f"sm_{capability}" in compiled.asm["ptx"]
    count += 1

for dtype in ("fp32", "bf16", "fp16"):
    for tgt in ("i64", "i32"):
        for entropy in (False, True):
            build(tk._stats_kernel,
                  {"x_ptr": "*" + dtype, "stride_x": "i32", "tgt_ptr": "*" + tgt, "lse_ptr": "*fp32",
                   "ent_ptr": "*fp32", "zt_ptr": "*fp32", "Vt": "i32", "v0": "i32", "T": "fp32"},
                  {"ENTROPY": entropy, "BLOCK": tk._BLOCK})
        for has_logp, has_ent in ((True, False), (False, True), (True, True)):
            build(tk._grad_kernel,
                  {"x_ptr": "*" + dtype, "stride_x": "i32", "dx_ptr": "*" + dtype, "stride_dx": "i32",
                   "tgt_ptr": "*" + tgt, "lse_ptr": "*fp32", "ent_ptr": "*fp32", "glp_ptr": "*fp32",
                   "gent_ptr": "*fp32", "Vt": "i32", "v0": "i32", "T": "fp32"},
                  {"HAS_LOGP": has_logp, "HAS_ENT": has_ent, "BLOCK": tk._BLOCK})
print("compiled", count, capability)
"""


@pytest.mark.parametrize("capability", [80, 90])
def test_logprobs_kernels_compile_for_gpu(capability):
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    proc = subprocess.run([sys.executable, "-c", COMPILE, str(capability)], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"compiled 30 {capability}" in proc.stdout
