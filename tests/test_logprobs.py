"""token_logprobs / linear_token_logprobs: every backend equals the torch reference, forward
and backward, and bad input gets a clear error naming the argument."""

import pytest
import torch

import mta_kernels.logprobs as lp
from conftest import DEVICE
from mta_kernels.logprobs.linear_chunked import linear_token_logprobs_chunked
from mta_kernels.logprobs.reference import linear_token_logprobs_reference, token_logprobs_reference
from mta_kernels.logprobs.token_triton import token_logprobs_triton

BACKENDS = ["reference", "triton"]  # triton runs interpreted on CPU
# Under the interpreter, a small block gives several ragged tiles per row (V = 301 = 4*64 + 45).
BLOCK = 4096 if DEVICE == "cuda" else 64
N, V, H = 9, 301, 24


def make_inputs(n=N, v=V, *, scale=3.0, dtype=torch.float32, seed=0, ignore=True):
    g = torch.Generator().manual_seed(seed)
    logits = (torch.randn(n, v, generator=g) * scale).to(device=DEVICE, dtype=dtype)
    targets = torch.randint(0, v, (n,), generator=g).to(DEVICE)
    if ignore and n > 2:
        targets[2] = lp.IGNORE_INDEX
    g_logp = torch.randn(n, generator=g).to(DEVICE)  # per-token upstream gradients, as RL losses give
    g_ent = torch.randn(n, generator=g).to(DEVICE)
    return logits, targets, g_logp, g_ent


def run_token(backend, logits, targets, temperature, entropy):
    if backend == "triton":
        return token_logprobs_triton(logits, targets, temperature, entropy, block=BLOCK)
    return token_logprobs_reference(logits, targets, temperature=temperature, return_entropy=entropy)


def values_and_grads(fn, leaves, g_logp, g_ent, entropy):
    leaves = [x.detach().clone().requires_grad_(True) if x is not None else None for x in leaves]
    out = fn(*leaves)
    outs = out if entropy else (out,)
    loss = (outs[0] * g_logp).sum() + ((outs[1] * g_ent).sum() if entropy else 0)
    loss.backward()
    return [o.detach() for o in outs], [x.grad for x in leaves if x is not None]


# ---------------------------------------------------------------------------------------
# token_logprobs
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("temperature", [1.0, 0.7])
@pytest.mark.parametrize("entropy", [False, True])
def test_token_logprobs_fp32_matches_reference(backend, temperature, entropy):
    logits, targets, g_logp, g_ent = make_inputs()
    ref_out, (ref_grad,) = values_and_grads(
        lambda x: token_logprobs_reference(x, targets, temperature=temperature, return_entropy=entropy),
        [logits], g_logp, g_ent, entropy,
    )
    out, (grad,) = values_and_grads(
        lambda x: run_token(backend, x, targets, temperature, entropy), [logits], g_logp, g_ent, entropy
    )
    for a, b in zip(out, ref_out):
        assert a.dtype == torch.float32 and a.shape == (N,)
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-5, atol=1e-6)
    assert out[0][2] == 0  # ignore_index
    assert torch.all(grad[2] == 0) or entropy  # no gradient through an ignored logp


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_token_logprobs_half_matches_reference(backend, dtype):
    logits, targets, g_logp, g_ent = make_inputs(dtype=dtype)
    ref_out, (ref_grad,) = values_and_grads(
        lambda x: token_logprobs_reference(x, targets, temperature=0.7, return_entropy=True),
        [logits], g_logp, g_ent, True,
    )
    out, (grad,) = values_and_grads(lambda x: run_token(backend, x, targets, 0.7, True), [logits], g_logp, g_ent, True)
    # Both upcast the same half-precision logits and do all math in fp32: the outputs agree
    # to fp32 rounding. The gradient is rounded once to the logits dtype from fp32 values
    # that may differ in their last fp32 bits, so it may land one half-precision ulp apart
    # (2^-8 relative for bf16, 2^-11 for fp16).
    for a, b in zip(out, ref_out):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    assert grad.dtype == dtype
    ulp = 2.0**-7 if dtype == torch.bfloat16 else 2.0**-10
    torch.testing.assert_close(grad.float(), ref_grad.float(), rtol=ulp, atol=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_token_logprobs_bf16_vs_fp32_reference(backend):
    """bf16 logits against the fp32 reference on the unrounded logits."""
    logits, targets, g_logp, g_ent = make_inputs()
    logp32, ent32 = token_logprobs_reference(logits, targets, return_entropy=True)
    logp16, ent16 = run_token(backend, logits.bfloat16(), targets, 1.0, True)
    # Rounding to bf16 moves each logit by at most |x| * 2^-9; logp = z_t - lse moves by at
    # most twice the largest such change, the entropy (a mean of log p) by as much.
    bound = 2 * logits.abs().max().item() * 2.0**-9
    torch.testing.assert_close(logp16, logp32, rtol=0, atol=bound)
    torch.testing.assert_close(ent16, ent32, rtol=0, atol=bound)


@pytest.mark.parametrize("backend", BACKENDS)
def test_token_logprobs_extreme_logits_stable(backend):
    logits, targets, g_logp, g_ent = make_inputs(ignore=False)
    logits[:, ::3] = 1e4
    logits[:, 1::3] = -1e4
    logits[0] = 1e4  # a uniform row: entropy log V
    ref_out, (ref_grad,) = values_and_grads(
        lambda x: token_logprobs_reference(x, targets, temperature=0.7, return_entropy=True),
        [logits], g_logp, g_ent, True,
    )
    out, (grad,) = values_and_grads(lambda x: run_token(backend, x, targets, 0.7, True), [logits], g_logp, g_ent, True)
    assert all(torch.isfinite(o).all() for o in out) and torch.isfinite(grad).all()
    # lse ~ 1.4e4 / T: fp32 keeps it to ~1e-3 absolute, the tolerance on logp.
    torch.testing.assert_close(out[0], ref_out[0], rtol=0, atol=4e-3)
    torch.testing.assert_close(out[1], ref_out[1], rtol=0, atol=1e-4)
    torch.testing.assert_close(out[1][0], torch.tensor(float(V)).log().to(DEVICE), rtol=1e-5, atol=1e-5)
    # p = exp(z - lse) inherits lse's fp32 rounding (one ulp at 1.4e4 is 1e-3) as a relative
    # error on every probability, in the reference as much as in the kernel.
    torch.testing.assert_close(grad, ref_grad, rtol=4e-3, atol=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_token_logprobs_one_output_used(backend):
    """Only the entropy (or only logp) feeds the loss: the other gradient is absent."""
    logits, targets, g_logp, g_ent = make_inputs()
    x = logits.clone().requires_grad_(True)
    _, ent = run_token(backend, x, targets, 1.0, True)
    (ent * g_ent).sum().backward()
    y = logits.clone().requires_grad_(True)
    _, ent_ref = token_logprobs_reference(y, targets, return_entropy=True)
    (ent_ref * g_ent).sum().backward()
    torch.testing.assert_close(x.grad, y.grad, rtol=1e-5, atol=1e-6)


def test_reference_gradcheck_fp64():
    logits, targets, _, _ = make_inputs(n=4, v=7, scale=2.0)
    logits = logits.double().requires_grad_(True)
    for t in (1.0, 0.6):
        assert torch.autograd.gradcheck(
            lambda x: token_logprobs_reference(x, targets, temperature=t, return_entropy=True), (logits,)
        )


def test_public_dispatch(force_backend):
    logits, targets, _, _ = make_inputs()
    ref = token_logprobs_reference(logits, targets, temperature=0.5)
    torch.testing.assert_close(lp.token_logprobs(logits, targets, temperature=0.5), ref, rtol=1e-5, atol=1e-5)
    force_backend("triton")
    torch.testing.assert_close(lp.token_logprobs(logits, targets, temperature=0.5), ref, rtol=1e-5, atol=1e-5)
    h, w = torch.randn(N, H, device=DEVICE), torch.randn(V, H, device=DEVICE)
    torch.testing.assert_close(
        lp.linear_token_logprobs(h, w, targets), lp.token_logprobs(h @ w.t(), targets), rtol=1e-5, atol=1e-5
    )
    force_backend("cpp")
    with pytest.raises(RuntimeError, match="no cpp kernel"):
        lp.token_logprobs(logits, targets)


def test_empty_batch():
    logits = torch.zeros(0, 5, device=DEVICE, requires_grad=True)
    targets = torch.zeros(0, dtype=torch.long, device=DEVICE)
    logp, ent = lp.token_logprobs(logits, targets, return_entropy=True)
    assert logp.shape == ent.shape == (0,)
    h = torch.zeros(0, 3, device=DEVICE, requires_grad=True)
    w = torch.zeros(5, 3, device=DEVICE, requires_grad=True)
    out = lp.linear_token_logprobs(h, w, targets)
    out.sum().backward()
    assert out.shape == (0,) and out.dtype == torch.float32


# ---------------------------------------------------------------------------------------
# linear_token_logprobs
# ---------------------------------------------------------------------------------------


def linear_case(dtype=torch.float32, seed=1, bias=True):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(N, H, generator=g).to(DEVICE, dtype)
    weight = (torch.randn(V, H, generator=g) / H**0.5 * 2).to(DEVICE, dtype)
    b = torch.randn(V, generator=g).to(DEVICE, dtype) if bias else None
    _, targets, g_logp, g_ent = make_inputs(seed=seed)
    return hidden, weight, b, targets, g_logp, g_ent


def run_linear(backend, hidden, weight, bias, targets, temperature, entropy, chunk, vchunk):
    tiles = lp.LINEAR_TOKEN_LOGPROBS.fn(backend)(BLOCK)
    return linear_token_logprobs_chunked(hidden, weight, bias, targets, temperature, entropy, chunk, vchunk, tiles)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "chunk,vchunk,temperature,entropy,bias",
    [
        (4, None, 0.7, True, True),  # N = 9 = 2*4 + 1 tokens
        (4, 100, 1.3, True, True),  # V = 301 = 3*100 + 1 columns, online merge
        (2, 128, 1.0, False, False),
        (None, None, 1.0, True, False),  # default chunking
    ],
)
def test_linear_matches_token_logprobs_fp32(backend, chunk, vchunk, temperature, entropy, bias):
    hidden, weight, b, targets, g_logp, g_ent = linear_case(bias=bias)
    leaves = [hidden, weight, b]

    def naive(h, w, bb=None):
        return linear_token_logprobs_reference(h, w, targets, bias=bb, temperature=temperature, return_entropy=entropy)

    def fused(h, w, bb=None):
        return run_linear(backend, h, w, bb, targets, temperature, entropy, chunk, vchunk)

    ref_out, ref_grads = values_and_grads(naive, leaves, g_logp, g_ent, entropy)
    out, grads = values_and_grads(fused, leaves, g_logp, g_ent, entropy)
    for a, r in zip(out, ref_out):
        torch.testing.assert_close(a, r, rtol=1e-5, atol=2e-5)
    assert len(grads) == len(ref_grads) == (3 if bias else 2)
    for a, r in zip(grads, ref_grads):
        torch.testing.assert_close(a, r, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_linear_bf16_matches_naive(backend):
    hidden, weight, b, targets, g_logp, g_ent = linear_case(dtype=torch.bfloat16)

    def naive(h, w, bb):
        return linear_token_logprobs_reference(h, w, targets, bias=bb, temperature=0.7, return_entropy=True)

    def fused(h, w, bb):
        return run_linear(backend, h, w, bb, targets, 0.7, True, 4, 100)

    ref_out, ref_grads = values_and_grads(naive, [hidden, weight, b], g_logp, g_ent, True)
    out, grads = values_and_grads(fused, [hidden, weight, b], g_logp, g_ent, True)
    # The chunked addmm and the naive matmul + bias each round the logits to bf16 (one ulp,
    # 2^-8 relative, apart at most): logp moves by up to two such ulps of the largest logit.
    bound = 2 * 2.0**-8 * (hidden.float() @ weight.float().t() + b.float()).abs().max().item() / 0.7
    for a, r in zip(out, ref_out):
        torch.testing.assert_close(a, r, rtol=0, atol=bound)
    # Gradients: dlogits are rounded to bf16 on both sides and summed over 9 tokens / 301
    # columns in matmuls with fp32 accumulation; ours accumulates the weight gradient in
    # fp32 across chunks, the naive one rounds once. A few bf16 ulps of the largest entry.
    for a, r in zip(grads, ref_grads):
        assert a.dtype == torch.bfloat16
        torch.testing.assert_close(a.float(), r.float(), rtol=2.0**-5, atol=2.0**-5 * r.float().abs().max().item())


@pytest.mark.parametrize("backend", BACKENDS)
def test_linear_extreme_logits_stable(backend):
    hidden, weight, b, targets, g_logp, g_ent = linear_case()
    b = b.sign() * 1e4  # logits near +-1e4
    leaves = [hidden, weight, b]
    ref_out, ref_grads = values_and_grads(
        lambda h, w, bb: linear_token_logprobs_reference(h, w, targets, bias=bb, return_entropy=True),
        leaves, g_logp, g_ent, True,
    )
    out, grads = values_and_grads(
        lambda h, w, bb: run_linear(backend, h, w, bb, targets, 1.0, True, 4, 100), leaves, g_logp, g_ent, True
    )
    assert all(torch.isfinite(o).all() for o in out) and all(torch.isfinite(g).all() for g in grads)
    # The logits themselves differ by an fp32 ulp at 1e4 (~1e-3) between the chunked
    # addmm and the naive mm + bias; logp and entropy move by a few such ulps.
    torch.testing.assert_close(out[0], ref_out[0], rtol=0, atol=4e-3)
    torch.testing.assert_close(out[1], ref_out[1], rtol=0, atol=4e-3)
    for a, r in zip(grads, ref_grads):
        torch.testing.assert_close(a, r, rtol=1e-3, atol=1e-3)


def test_linear_frozen_weight_and_no_grad():
    hidden, weight, b, targets, g_logp, _ = linear_case()
    h = hidden.clone().requires_grad_(True)
    (lp.linear_token_logprobs(h, weight, targets, bias=b, chunk_size=4) * g_logp).sum().backward()
    h2 = hidden.clone().requires_grad_(True)
    (lp.token_logprobs(h2 @ weight.t() + b, targets) * g_logp).sum().backward()
    torch.testing.assert_close(h.grad, h2.grad, rtol=1e-4, atol=1e-5)
    with torch.no_grad():
        out = lp.linear_token_logprobs(hidden, weight, targets, bias=b)
    torch.testing.assert_close(out, lp.token_logprobs(hidden @ weight.t() + b, targets), rtol=1e-5, atol=2e-5)


def test_default_chunks_bound_memory():
    from mta_kernels.logprobs.linear_chunked import default_chunks

    chunk, vchunk = default_chunks(16384, 151936, torch.bfloat16, torch.device("cuda"))
    assert vchunk == 151936 and chunk * 151936 * 2 <= 256 * 2**20 and chunk >= 256
    chunk, vchunk = default_chunks(4096, 49152, torch.float32, torch.device("cpu"))
    assert chunk * 49152 * 4 <= 256 * 2**20 and chunk >= 1024
    chunk, vchunk = default_chunks(64, 2**30, torch.float32, torch.device("cpu"))  # V alone too big
    assert chunk == 16 and vchunk * 16 * 4 <= 256 * 2**20


# ---------------------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------------------

LOGITS = torch.randn(3, 5, device=DEVICE)
TARGETS = torch.tensor([0, 4, -100], device=DEVICE)


@pytest.mark.parametrize(
    "logits,targets,kwargs,error,match",
    [
        ([[1.0]], TARGETS, {}, TypeError, "logits must be a torch.Tensor"),
        (torch.randn(5, device=DEVICE), TARGETS, {}, ValueError, r"logits must have shape \[N, V\]"),
        (LOGITS.double(), TARGETS, {}, TypeError, "logits must be float32"),
        (LOGITS, [0, 1, 2], {}, TypeError, "targets must be a torch.Tensor"),
        (LOGITS, TARGETS[:2], {}, ValueError, r"targets must have shape \[N\] with N=3"),
        (LOGITS, TARGETS.float(), {}, TypeError, "targets must be an int64 or int32"),
        (LOGITS, TARGETS.to("meta"), {}, ValueError, "targets is on meta"),
        (LOGITS, torch.tensor([0, 5, 1], device=DEVICE), {}, ValueError, r"targets\[1\] = 5"),
        (LOGITS, torch.tensor([0, -1, 1], device=DEVICE), {}, ValueError, r"in \[0, 5\) or -100"),
        (LOGITS, TARGETS, {"temperature": 0.0}, ValueError, "temperature must be a finite number > 0"),
        (LOGITS, TARGETS, {"temperature": float("inf")}, ValueError, "temperature"),
        (LOGITS, TARGETS, {"temperature": "1"}, TypeError, "temperature must be a number"),
        (LOGITS, TARGETS, {"return_entropy": 1}, TypeError, "return_entropy must be a bool"),
    ],
)
def test_token_logprobs_bad_input(logits, targets, kwargs, error, match):
    with pytest.raises(error, match=match):
        lp.token_logprobs(logits, targets, **kwargs)


HID = torch.randn(3, 4, device=DEVICE)
W = torch.randn(5, 4, device=DEVICE)


@pytest.mark.parametrize(
    "hidden,weight,kwargs,error,match",
    [
        (HID[0], W, {}, ValueError, r"hidden must have shape \[N, H\]"),
        (HID.long(), W, {}, TypeError, "hidden must be float32"),
        (HID, W[:, :3], {}, ValueError, r"weight must have shape \[V, H\] with H=4"),
        (HID, W.half(), {}, TypeError, "weight must have the dtype of hidden"),
        (HID, W.to("meta"), {}, ValueError, "weight is on meta"),
        (HID, W, {"bias": torch.zeros(4, device=DEVICE)}, ValueError, r"bias must have shape \[V\] with V=5"),
        (HID, W, {"bias": torch.zeros(5, device=DEVICE).half()}, TypeError, "bias must have the dtype"),
        (HID, W, {"bias": [0.0] * 5}, TypeError, "bias must be a torch.Tensor"),
        (HID, W, {"chunk_size": 0}, ValueError, "chunk_size must be a positive integer"),
        (HID, W, {"vocab_chunk_size": 2.5}, ValueError, "vocab_chunk_size must be a positive integer"),
        (HID, W, {"temperature": -1}, ValueError, "temperature"),
    ],
)
def test_linear_bad_input(hidden, weight, kwargs, error, match):
    with pytest.raises(error, match=match):
        lp.linear_token_logprobs(hidden, weight, TARGETS, **kwargs)


def test_linear_bad_targets():
    with pytest.raises(ValueError, match=r"targets\[0\] = 7"):
        lp.linear_token_logprobs(HID, W, torch.tensor([7, 0, 0], device=DEVICE))
