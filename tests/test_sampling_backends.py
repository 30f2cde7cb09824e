"""Every sampling backend equals the torch reference, including at the edges."""

import pytest
import torch

import mta_kernels as mk
from conftest import DEVICE
from mta_kernels.sampling import filter_logits_reference, sample_reference
from mta_kernels.sampling.triton_kernels import filter_logits_triton, sample_triton
from sampling_cases import make_logits, per_row_params

KERNEL_BACKENDS = [b for b in mk.available_backends(DEVICE) if b != "reference"]
if "triton" not in KERNEL_BACKENDS:
    KERNEL_BACKENDS.append("triton")  # interpreted on CPU

# Under the interpreter, small blocks give several tiles per row on small vocabularies.
TRITON_BLOCK = 1024 if DEVICE == "cuda" else 256


def run_filter(backend, logits, params):
    if backend == "triton":
        return filter_logits_triton(logits, *params, block=TRITON_BLOCK)
    return torch.ops.mta.filter_logits(logits, *params)


def run_sample(backend, logits, params, uniform):
    if backend == "triton":
        return sample_triton(logits, *params, uniform, block=TRITON_BLOCK)
    return torch.ops.mta.sample(logits, *params, uniform)


def params_for(B, V, temperature=1.0, top_k=0, top_p=1.0, min_p=0.0):
    return [
        torch.full((B,), temperature, dtype=torch.float32, device=DEVICE),
        torch.full((B,), top_k, dtype=torch.int64, device=DEVICE),
        torch.full((B,), top_p, dtype=torch.float32, device=DEVICE),
        torch.full((B,), min_p, dtype=torch.float32, device=DEVICE),
    ]


def check_backend(backend, logits, params, *, seed=0):
    ref = filter_logits_reference(logits, *params)
    out = run_filter(backend, logits, params)
    assert torch.equal(torch.isfinite(out), torch.isfinite(ref))
    assert torch.equal(out, ref) or torch.allclose(out[torch.isfinite(ref)], ref[torch.isfinite(ref)])
    uniform = torch.rand(logits.shape[0], generator=torch.Generator(DEVICE).manual_seed(seed), device=DEVICE)
    tokens, logprobs = run_sample(backend, logits, params, uniform)
    ref_tokens, ref_logprobs = sample_reference(logits, *params, uniform)
    assert torch.equal(tokens, ref_tokens)
    torch.testing.assert_close(logprobs, ref_logprobs, rtol=1e-5, atol=1e-5)
    return tokens


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("V", [1, 7, 256, 1001])
def test_per_row_params_equal_reference(backend, dtype, V):
    B = 10
    logits = make_logits(B, V, "normal5", seed=V, dtype=dtype, device=DEVICE)
    check_backend(backend, logits, per_row_params(B, V, seed=V, device=DEVICE))


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
@pytest.mark.parametrize(
    "temperature,top_k,top_p,min_p",
    [
        (1.0, 0, 1.0, 0.0),  # nothing filtered
        (0.7, 1, 1.0, 0.0),  # k = 1
        (0.7, 700, 1.0, 0.0),  # k = V: off
        (0.7, 5000, 1.0, 0.0),  # k > V: off
        (1.0, 0, 1e-6, 0.0),  # tiny top_p keeps the argmax
        (1.0, 50, 0.9, 0.05),  # all three filters
        (1.0, 0, 1.0, 1.0),  # min_p = 1 keeps the max (and its ties)
        (1e-4, 0, 0.9, 0.0),  # extreme low temperature
        (1e-30, 0, 1.0, 0.0),  # z overflows to +-inf
        (1e4, 20, 0.5, 0.0),  # extreme high temperature: near uniform
        (0.0, 10, 0.5, 0.1),  # greedy ignores the filters
    ],
)
def test_edge_parameters_equal_reference(backend, temperature, top_k, top_p, min_p):
    B, V = 4, 700
    logits = make_logits(B, V, "normal1", seed=11, device=DEVICE)
    check_backend(backend, logits, params_for(B, V, temperature, top_k, top_p, min_p))


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
@pytest.mark.parametrize(
    "temperature,scale,top_k,top_p",
    [
        (1e-40, 1.0, 0, 1.0),  # x / T overflows fp32 for |x| > 3.4e-2
        (1e-45, 1.0, 50, 0.9),  # the smallest subnormal fp32
        (1e-10, 1e30, 0, 1.0),  # logits near 1e30
        (1e-38, 1.0, 5, 1.0),  # some rows overflow, some do not
        (1e-30, 1e10, 0, 0.5),
    ],
)
def test_tiny_temperatures_are_greedy(backend, temperature, scale, top_k, top_p):
    """Issue 14 item 5: the limit T -> 0+ is greedy on every backend, with no NaN or +inf in
    the filtered row (mk.sample took a uniform draw over the overflowed tokens, filter_logits
    returned +inf), and every backend still returns the reference's token for the same draw."""
    B, V = 5, 300
    logits = make_logits(B, V, "normal1", seed=7, device=DEVICE) * scale
    logits[1] = -logits[1].abs() - scale  # all negative: x / T underflows to -inf everywhere
    logits[2, 10] = logits[2, 200] = logits[2].max() * 2  # a tie at the top: the first argmax
    logits[3, ::3] = float("nan")
    params = params_for(B, V, temperature, top_k, top_p, 0.0)
    for seed in range(3):
        tokens = check_backend(backend, logits, params, seed=seed)
        assert torch.equal(tokens, logits.nan_to_num(nan=float("-inf")).argmax(dim=1))
    filtered = run_filter(backend, logits, params)
    assert not filtered.isnan().any() and not filtered.isposinf().any()
    assert torch.equal(filtered.argmax(dim=1), tokens)


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
def test_nan_inf_and_ties(backend):
    V = 300
    logits = make_logits(6, V, "normal1", seed=5, device=DEVICE)
    logits[0] = float("-inf")  # no finite logit
    logits[1] = float("nan")  # all NaN: same as all -inf
    logits[2, ::2] = float("nan")  # NaN entries are never kept
    logits[3, :] = 1.0  # all tied
    logits[4, 10:20] = 9.0  # tie at the top, 10 wide
    logits[5, :-1] = float("-inf")  # a single finite token, the last
    logits[5, 7] = float("inf")  # ... and a +inf one
    params = params_for(6, V, 0.8, 5, 0.5, 0.0)
    tokens = check_backend(backend, logits, params)
    assert tokens[0] == -1 and tokens[1] == -1
    assert tokens[2] % 2 == 1
    assert 10 <= tokens[4] < 20
    assert tokens[5] == 7


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
def test_greedy_takes_first_argmax(backend):
    V = 500
    logits = make_logits(3, V, "normal1", seed=2, device=DEVICE)
    logits[0, 3] = logits[0, 400] = 50.0
    params = params_for(3, V, 0.0)
    tokens = check_backend(backend, logits, params)
    assert tokens.tolist() == [3, *logits[1:].argmax(1).tolist()]
    filtered = run_filter(backend, logits, params)
    assert torch.isfinite(filtered).sum().item() == 3 and filtered[0, 3] == 50.0


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
def test_many_draws_equal_reference(backend):
    """Same uniforms -> same tokens, over many rows of one distribution."""
    B, V = 64, 97
    logits = make_logits(1, V, "gumbel", seed=9, device=DEVICE).expand(B, V).contiguous()
    check_backend(backend, logits, params_for(B, V, 0.9, 40, 0.8, 0.01), seed=4)


@pytest.mark.skipif(DEVICE != "cuda", reason="needs a GPU: B*V > 2^31 index arithmetic on device")
def test_index_overflow_rows():
    B, V = 16385, 131072  # B*V just over 2^31
    logits = torch.randn(B, V, device="cuda", dtype=torch.bfloat16)
    tokens = mk.sample(logits, 0.7, 50, 0.9, generator=torch.Generator("cuda").manual_seed(0))
    assert tokens.min() >= 0 and tokens.max() < V
    last = logits[-1:].float()
    assert torch.isfinite(mk.filter_logits(last, 0.7, 50, 0.9)[0, tokens[-1]])


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
@pytest.mark.parametrize("top_k", [1023, 1024, 1025, 2500])
def test_large_top_k_equal_reference(backend, top_k):
    """k around the C++ heap/nth_element switch, and far past it."""
    B, V = 3, 4000
    logits = make_logits(B, V, "gumbel", seed=top_k, device=DEVICE)
    logits[1, :2000] = float("-inf")  # fewer finite values than k for k = 2500
    check_backend(backend, logits, params_for(B, V, 0.9, top_k, 0.97, 0.0))
