"""Every C++ op is a well-formed torch.library op: ``torch.library.opcheck`` checks the
schema (mutation annotations included), the fake (meta) impl and the autograd / functional
registrations against the real kernel, on the CPU and, where the op has a CUDA body and a
GPU is present, on the GPU."""

import pytest
import torch

import mta_kernels as mk
from conftest import DEVICE
from mta_kernels.braking import BrakingConfig, BrakingState, MarkerTables
from sampling_cases import make_logits, per_row_params

pytestmark = pytest.mark.skipif(not mk.extension_loaded(), reason=f"extension not built: {mk.extension_error()}")

# The ops with a CUDA body; mix_and_sample is CPU only (CUDA tensors take the Triton kernels).
CUDA_OPS_DEVICES = ["cpu", "cuda"] if "cuda" in mk.available_backends(DEVICE) else ["cpu"]


def _sampling_args(B=4, V=64, device="cpu"):
    logits = make_logits(B, V, "normal1", seed=0, device=device)
    return logits, per_row_params(B, V, seed=0, device=device)


@pytest.mark.parametrize("device", CUDA_OPS_DEVICES)
def test_opcheck_filter_logits(device):
    logits, params = _sampling_args(device=device)
    torch.library.opcheck(torch.ops.mta.filter_logits.default, (logits, *params))


@pytest.mark.parametrize("device", CUDA_OPS_DEVICES)
def test_opcheck_sample(device):
    logits, params = _sampling_args(device=device)
    torch.library.opcheck(torch.ops.mta.sample.default, (logits, *params, torch.rand(4, device=device)))


def test_opcheck_mix_and_sample():
    B, V, K = 4, 64, 3
    g = torch.Generator().manual_seed(0)
    # Models in different dtypes; one a row-strided view (the op takes any row stride).
    logits = [
        torch.randn(B, V, generator=g),
        torch.randn(B, V, generator=g).to(torch.bfloat16),
        torch.randn(B, 2 * V, generator=g)[:, :V],
    ]
    weights = torch.tensor([[1.0], [-0.5], [0.25]]).expand(K, B).contiguous()
    temperature = torch.tensor([[1.0], [0.7], [1.3]]).expand(K, B).contiguous()
    plausibility = torch.tensor([0.0, 0.1, 0.0, 0.5])
    _, (_, top_k, top_p, min_p) = _sampling_args(B, V)
    uniform = torch.rand(B, generator=g)
    torch.library.opcheck(
        torch.ops.mta.mix_and_sample.default,
        (logits, weights, temperature, plausibility, top_k, top_p, min_p, uniform),
    )


@pytest.mark.parametrize("device", CUDA_OPS_DEVICES)
def test_opcheck_braking_step(device):
    tables = MarkerTables.from_token_ids([[3, 4]], [6], 1, [7, 8, 9, 1], 12).to(device)
    B = 3
    state = BrakingState.new(B, device)
    cfg = BrakingConfig(max_thinking_tokens=torch.tensor([0, 5, 5], device=device), end_think_margin=1.0)
    args = (torch.randn(B, 12, device=device), torch.tensor([3, 4, -1], device=device), state.counters,
            state.flags, tables.packed, tables.layout, cfg.normalised(B, torch.device(device)).clone())
    torch.library.opcheck(torch.ops.mta.braking_step.default, args)
