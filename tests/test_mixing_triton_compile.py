"""The mixing Triton kernels compile to sm_80 / sm_90 machine code, no GPU needed (see
triton_aot.py for why, and for how signatures are derived)."""

import pytest
import torch

from triton_aot import compile_for_gpu, run_without_interpreter

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def compile_mixing(dtypes: str, capability: str, k: str) -> None:
    """Compile every constexpr variant for ``k`` models of the given logits dtypes (run
    without the interpreter)."""
    from mta_kernels._validation import sampling_rows
    from mta_kernels.mixing import triton_kernels as mt
    from mta_kernels.mixing.inputs import mix_inputs
    from mta_kernels.sampling import triton_split_row as split_row

    dtypes, k, B, V, chunk, cpu = dtypes.split(","), int(k), 2, 151936, split_row.CHUNK, torch.device("cpu")
    # The per-model and per-row tensors as the op's checks build them (tiny logits: only dtypes matter).
    models = [torch.zeros(B, 1, dtype=DTYPES[dtypes[min(i, len(dtypes) - 1)]]) for i in range(8)]
    inputs = mix_inputs(models[:k], 1.0, True, 1.0, 0.1, None)
    _, top_k, top_p, min_p = sampling_rows(1.0, 50, 0.9, 0.0, B, cpu)
    ws = split_row.workspace(B, V, chunk, cpu, k_max=64)
    examples = {f"x{i}": x for i, x in enumerate(models)} | {f"s{i}": V for i in range(8)}
    examples |= {
        "w_ptr": inputs.weights, "temp_ptr": inputs.temperature, "t_min_ptr": inputs.temperature.amin(dim=0),
        "alpha_ptr": inputs.plausibility,
        "stats_ptr": torch.float32, "out_ptr": torch.float32, "ws_f": ws.floats, "ws_i": ws.ints,
        "top_k_ptr": top_k, "top_p_ptr": top_p, "min_p_ptr": min_p, "B": B, "V": V, "CHUNK_LEN": chunk,
    }
    limits = {"K_MAX": ws.k_max, "PROBE": split_row.PROBE, "TIE_SLACK": ws.tie_slack, "BLOCK": 1024, "CHUNKS_BLOCK": 64}
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
    for kernel, constexprs in variants:
        compile_for_gpu(kernel, examples, constexprs, int(capability), num_warps=8)
    print("compiled", k, capability)


@pytest.mark.parametrize("capability", [80, 90])
@pytest.mark.parametrize(("dtypes", "k"), [("fp32,bf16,fp16", 3), ("bf16", 8), ("fp16", 1)])
def test_mixing_kernels_compile_for_gpu(dtypes, k, capability):
    out = run_without_interpreter("test_mixing_triton_compile:compile_mixing", dtypes, capability, k)
    assert f"compiled {k} {capability}" in out
