"""The mixing Triton kernels compile to sm_80 / sm_90 machine code, no GPU needed (see
test_triton_compile.py for why: the interpreter accepts code the real compiler rejects)."""

import os
import subprocess
import sys

import pytest

COMPILE = """
import sys, triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from mta_kernels.mixing import triton_kernels as mt
from mta_kernels.sampling import triton_split_row as sr

dtypes, capability, k = sys.argv[1].split(","), int(sys.argv[2]), int(sys.argv[3])
types = {f"x{i}": "*" + dtypes[min(i, len(dtypes) - 1)] for i in range(8)}
types |= {f"s{i}": "i32" for i in range(8)}
types |= {name: "*fp32" for name in ("w_ptr", "temp_ptr", "alpha_ptr", "stats_ptr", "out_ptr", "ws_f", "top_p_ptr", "min_p_ptr")}
types |= {"ws_i": "*i32", "top_k_ptr": "*i64", "B": "i32", "V": "i32", "CHUNK_LEN": "i32"}
limits = {"K_MAX": 64, "PROBE": sr.PROBE, "TIE_SLACK": sr.TIE_SLACK, "BLOCK": 1024, "CHUNKS_BLOCK": 64}
variants = [
    (mt._model_stats_kernel, {"K_STATS": k, "BLOCK": 1024}),
    (mt._model_stats_kernel, {"K_STATS": 1, "BLOCK": 1024}),
]
for normalize in (True, False):
    for plausibility in (True, False):
        for summarise in (True, False):
            flags = {"K": k, "K_STATS": k if normalize else 1, "NORMALIZE": normalize,
                     "PLAUSIBILITY": plausibility, "SUMMARISE": summarise}
            variants.append((mt._mix_chunk_kernel, limits | flags))
for fn, constexprs in variants:
    signature = {name: "constexpr" if name in constexprs else types[name] for name in fn.arg_names}
    compiled = triton.compile(ASTSource(fn=fn, signature=signature, constexprs=constexprs),
                              target=GPUTarget("cuda", capability, 32), options={"num_warps": 8})
    assert len(compiled.asm["cubin"]) > 0 and f"sm_{capability}" in compiled.asm["ptx"]
print("compiled", k, capability)
"""


@pytest.mark.parametrize("capability", [80, 90])
@pytest.mark.parametrize(("dtypes", "k"), [("fp32,bf16,fp16", 3), ("bf16", 8), ("fp16", 1)])
def test_mixing_kernels_compile_for_gpu(dtypes, k, capability):
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env.setdefault("TRITON_DEFAULT_FP_FUSION", "1")
    proc = subprocess.run(
        [sys.executable, "-c", COMPILE, dtypes, str(capability), str(k)], env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"compiled {k} {capability}" in proc.stdout
