"""The sampling Triton kernels (one-program and split-row) compile to sm_80 / sm_90 machine
code, no GPU needed (see triton_aot.py for why, and for how signatures are derived)."""

import pytest
import torch

from triton_aot import compile_for_gpu, run_without_interpreter

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def compile_sampling(family: str, dtype: str, capability: str) -> None:
    """Compile every kernel of ``family`` for ``dtype`` logits (run without the interpreter)."""
    from mta_kernels._validation import sampling_rows
    from mta_kernels.sampling import triton_row as row, triton_split_row as split_row
    from mta_kernels.sampling.triton_primitives import BLOCK

    B, V, chunk, cpu = 2, 151936, split_row.CHUNK, torch.device("cpu")
    ws = split_row.workspace(B, V, chunk, cpu)
    temperature, top_k, top_p, min_p = sampling_rows(0.7, 50, 0.9, 0.05, B, cpu)  # as the ops pass them
    examples = {
        "logits_ptr": DTYPES[dtype], "out_ptr": torch.float32, "uniform_ptr": torch.float32,
        "token_ptr": torch.int64, "logprob_ptr": torch.float32,
        "temp_ptr": temperature, "top_k_ptr": top_k, "top_p_ptr": top_p, "min_p_ptr": min_p,
        "ws_f": ws.floats, "ws_i": ws.ints, "B": B, "V": V, "n_chunks": ws.n_chunks, "CHUNK_LEN": chunk,
    }
    limits = {"K_MAX": ws.k_max, "PROBE": split_row.PROBE, "TIE_SLACK": ws.tie_slack, "BLOCK": BLOCK}
    merge = limits | {"CHUNKS_BLOCK": 64}
    kernels = {
        "filter": [(row._filter_kernel, {"BLOCK": BLOCK})],
        "sample": [(row._sample_kernel, {"BLOCK": BLOCK})],
        "split": [
            (split_row._chunk_kernel, limits),
            (split_row._merge_sample_kernel, merge),
            # B = 1 and a single chunk: Triton passes integer arguments equal to 1 as constexpr.
            (split_row._merge_sample_kernel, merge | {"B": 1, "n_chunks": 1, "CHUNKS_BLOCK": 1}),
            (split_row._merge_filter_kernel, merge),
            (split_row._write_filtered_kernel, {k: limits[k] for k in ("K_MAX", "TIE_SLACK", "BLOCK")}),
        ],
    }
    for kernel, constexprs in kernels[family]:
        compile_for_gpu(kernel, examples, constexprs, int(capability), num_warps=8)
    print("compiled", family, dtype, capability)


@pytest.mark.parametrize("capability", [80, 90])
@pytest.mark.parametrize("dtype", ["fp32", "bf16", "fp16"])
@pytest.mark.parametrize("family", ["filter", "sample", "split"])  # split: the four split-row kernels
def test_kernel_compiles_for_gpu(family, dtype, capability):
    out = run_without_interpreter("test_triton_compile:compile_sampling", family, dtype, capability)
    assert f"compiled {family} {dtype} {capability}" in out
