"""The logprobs Triton kernels compile to sm_80 / sm_90 machine code, no GPU needed.

As in test_triton_compile.py: the interpreter checks the kernels' logic but accepts code the
real compiler rejects, so every constexpr variant the dispatcher can launch is compiled
ahead of time (Triton ships ptxas), for each logits dtype. Signatures come from
triton_aot.py; one subprocess per target, because this test session imported the kernels
interpreted.
"""

import pytest
import torch

from triton_aot import compile_for_gpu, run_without_interpreter


def compile_logprobs(capability: str) -> None:
    """Compile every variant of both kernels for every logits and target dtype (run without
    the interpreter)."""
    from mta_kernels.logprobs import triton_kernels as tk

    count = 0
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        for targets in (torch.int64, torch.int32):
            # A tile of logits [n, Vt] with row stride 151936 from column v0, at temperature T.
            examples = {
                "x_ptr": dtype, "stride_x": 151936, "dx_ptr": dtype, "stride_dx": 151936, "tgt_ptr": targets,
                "lse_ptr": torch.float32, "ent_ptr": torch.float32, "zt_ptr": torch.float32,
                "glp_ptr": torch.float32, "gent_ptr": torch.float32, "Vt": 4096, "v0": 8192, "T": 0.7,
            }
            for entropy in (False, True):
                constexprs = {"ENTROPY": entropy, "BLOCK": tk._BLOCK}
                compile_for_gpu(tk._stats_kernel, examples, constexprs, int(capability), tk._NUM_WARPS)
                count += 1
            for has_logp, has_ent in ((True, False), (False, True), (True, True)):
                constexprs = {"HAS_LOGP": has_logp, "HAS_ENT": has_ent, "BLOCK": tk._BLOCK}
                compile_for_gpu(tk._grad_kernel, examples, constexprs, int(capability), tk._NUM_WARPS)
                count += 1
    print("compiled", count, capability)


@pytest.mark.parametrize("capability", [80, 90])
def test_logprobs_kernels_compile_for_gpu(capability):
    out = run_without_interpreter("test_logprobs_compile:compile_logprobs", capability)
    assert f"compiled 30 {capability}" in out
