"""The sampling Triton kernels (one-program and split-row) compile to sm_80 / sm_90 machine
code, no GPU needed.

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
from mta_kernels.sampling import triton_kernels as tk, triton_split_row as sr

family, dtype, capability = sys.argv[1], sys.argv[2], int(sys.argv[3])
types = {"logits_ptr": "*" + dtype, "out_ptr": "*fp32", "uniform_ptr": "*fp32", "token_ptr": "*i64",
         "logprob_ptr": "*fp32", "temp_ptr": "*fp32", "top_k_ptr": "*i64", "top_p_ptr": "*fp32",
         "min_p_ptr": "*fp32", "ws_f": "*fp32", "ws_i": "*i32", "B": "i32", "V": "i32", "n_chunks": "i32",
         "CHUNK_LEN": "i32"}
limits = {"K_MAX": sr.K_MAX, "PROBE": sr.PROBE, "TIE_SLACK": sr.TIE_SLACK, "BLOCK": tk._BLOCK}
merge = limits | {"CHUNKS_BLOCK": 64}
kernels = {
    "filter": [(tk._filter_kernel, {"BLOCK": tk._BLOCK})],
    "sample": [(tk._sample_kernel, {"BLOCK": tk._BLOCK})],
    "split": [
        (sr._chunk_kernel, limits),
        (sr._merge_sample_kernel, merge),
        # B = 1 and a single chunk: Triton passes integer arguments equal to 1 as constexpr.
        (sr._merge_sample_kernel, merge | {"B": 1, "n_chunks": 1, "CHUNKS_BLOCK": 1}),
        (sr._merge_filter_kernel, merge),
        (sr._write_filtered_kernel, {k: limits[k] for k in ("K_MAX", "TIE_SLACK", "BLOCK")}),
    ],
}
for fn, constexprs in kernels[family]:
    signature = {name: "constexpr" if name in constexprs else types[name] for name in fn.arg_names}
    compiled = triton.compile(ASTSource(fn=fn, signature=signature, constexprs=constexprs),
                              target=GPUTarget("cuda", capability, 32), options={"num_warps": 8})
    assert len(compiled.asm["cubin"]) > 0 and f"sm_{capability}" in compiled.asm["ptx"]
print("compiled", family, dtype, capability)
"""


@pytest.mark.parametrize("capability", [80, 90])
@pytest.mark.parametrize("dtype", ["fp32", "bf16", "fp16"])
@pytest.mark.parametrize("family", ["filter", "sample", "split"])  # split: the four split-row kernels
def test_kernel_compiles_for_gpu(family, dtype, capability):
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env.setdefault("TRITON_DEFAULT_FP_FUSION", "1")
    proc = subprocess.run(
        [sys.executable, "-c", COMPILE, family, dtype, str(capability)], env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"compiled {family} {dtype} {capability}" in proc.stdout
