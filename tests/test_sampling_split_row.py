"""The split-row Triton path (many programs per row) equals the reference and the one-program kernel.

Small shapes for the interpreter: chunks of 256 tokens, and the candidate limits shrunk
(``PROBE``, ``K_MAX``, ``TIE_SLACK``) so every path a row can take -- served from the
candidates, drawn by chunk masses when nothing is cut, or the full-row fallback for
overflow, large k and wide nuclei -- shows up at V ~ 1000. Each case also checks which path
the row took.
"""

import pytest
import torch

import mta_kernels as mk
from conftest import DEVICE
from mta_kernels.sampling import filter_logits_reference, sample_reference
from mta_kernels.sampling import triton_kernels as dispatch
from mta_kernels.sampling import triton_split_row as split_row
from mta_kernels.sampling.triton_kernels import sample_triton
from mta_kernels.sampling.triton_split_row import BY_CHUNKS, FULL_ROW
from sampling_cases import make_logits, per_row_params

CHUNK = 256
BLOCK = 1024 if DEVICE == "cuda" else CHUNK  # the interpreter is slow: one tile per chunk
PROBE, K_MAX, TIE_SLACK = 16, 64, 4

# The interpreter evaluates both sides of tl.where: exp(z - max) at z = max = +inf warns.
pytestmark = pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")


@pytest.fixture(autouse=True)
def small_limits(monkeypatch):
    monkeypatch.setattr(split_row, "PROBE", PROBE)
    monkeypatch.setattr(split_row, "K_MAX", K_MAX)
    monkeypatch.setattr(split_row, "TIE_SLACK", TIE_SLACK)


def params_for(B, temperature=1.0, top_k=0, top_p=1.0, min_p=0.0):
    return [
        torch.full((B,), temperature, dtype=torch.float32, device=DEVICE),
        torch.full((B,), top_k, dtype=torch.int64, device=DEVICE),
        torch.full((B,), top_p, dtype=torch.float32, device=DEVICE),
        torch.full((B,), min_p, dtype=torch.float32, device=DEVICE),
    ]


def uniforms(B, seed=0):
    return torch.rand(B, generator=torch.Generator(DEVICE).manual_seed(seed), device=DEVICE)


def check_split(logits, params, *, seed=0, block=BLOCK):
    """Split-row sample and filter equal the reference; returns (tokens, rows_served)."""
    B = logits.shape[0]
    uniform = uniforms(B, seed)
    tokens, logprobs, ws = split_row.run_sample_split_row(logits, *params, uniform, chunk=CHUNK, block=block)
    ref_tokens, ref_logprobs = sample_reference(logits, *params, uniform)
    assert torch.equal(tokens, ref_tokens)
    torch.testing.assert_close(logprobs, ref_logprobs, rtol=1e-5, atol=1e-5)
    served = ws.rows_served()

    out, ws = split_row.run_filter_logits_split_row(logits, *params, chunk=CHUNK, block=block)
    ref = filter_logits_reference(logits, *params)
    kept = torch.isfinite(ref)
    assert torch.equal(torch.isfinite(out), kept)
    torch.testing.assert_close(out[kept], ref[kept])
    # filter draws nothing: rows with nothing to cut are "cut" on the full row at no cost
    assert torch.equal(ws.rows_served(), served.clamp_min(FULL_ROW))
    return tokens, served


def logits_of(kind, B, V, seed):
    if kind == "peaked":  # a few dominant tokens: a top-p nucleus inside the candidates
        logits = make_logits(B, V, "normal1", seed=seed, device=DEVICE)
        logits[:, [5, 300, 777]] += torch.tensor([12.0, 11.5, 11.0], device=DEVICE)
        return logits
    if kind == "sparse":  # chunks with fewer finite tokens than k: all of them are candidates
        logits = make_logits(B, V, "gumbel", seed=seed, device=DEVICE)
        logits[:, torch.arange(V, device=DEVICE) % 8 != 0] = float("-inf")
        return logits
    return make_logits(B, V, kind, seed=seed, device=DEVICE)


@pytest.mark.parametrize(
    "kind,temperature,top_k,top_p,min_p,served",
    [
        ("normal1", 0.7, 50, 0.9, 0.0, 50),  # the benchmark's parameters
        ("normal5", 1.0, 1, 1.0, 0.0, 1),  # k = 1
        ("gumbel", 1.0, 40, 0.9, 0.05, 40),  # all three filters
        ("sparse", 0.9, 60, 0.8, 0.0, 60),  # fewer finite tokens than k per chunk
        ("normal1", 1e-30, 10, 0.9, 0.0, 10),  # z overflows to +-inf
        ("normal1", 1e-40, 10, 0.9, 0.0, FULL_ROW),  # the row max overflows: greedy (issue 14)
        ("normal5", 1e-40, 0, 1.0, 0.0, FULL_ROW),  # ... with nothing cut
        ("normal1", 1e4, 20, 0.5, 0.0, 20),  # near uniform
        ("peaked", 0.7, 0, 0.9, 0.0, PROBE),  # top-p only, nucleus within the probe
        ("normal1", 1.0, 0, 1e-6, 0.0, PROBE),  # tiny top_p keeps the argmax
        ("peaked", 1.0, 0, 1.0, 0.05, PROBE),  # min-p only
        ("normal1", 0.7, 5000, 0.9, 0.0, FULL_ROW),  # k > V is off; a wide nucleus
        ("normal1", 0.7, 0, 0.9, 0.0, FULL_ROW),  # wide nucleus: below the probe's reach
        ("normal1", 0.7, 0, 0.9, 0.5, FULL_ROW),  # ... even when min-p cuts above the probe
        ("peaked", 1.0, 0, 0.9, 0.01, PROBE),  # narrow nucleus and min-p
        ("normal1", 1.0, 0, 1.0, 0.0, BY_CHUNKS),  # nothing filtered
        ("sparse", 1.7, -1, 1.0, 0.0, BY_CHUNKS),  # ... with chunks all -inf
        ("normal1", 0.7, K_MAX + 1, 0.9, 0.0, FULL_ROW),  # k above K_MAX
        ("normal1", 0.0, 10, 0.5, 0.1, FULL_ROW),  # greedy ignores the filters
    ],
)
def test_parameters_equal_reference_and_take_the_expected_path(kind, temperature, top_k, top_p, min_p, served):
    B, V = 2, 1000  # 4 chunks, the last one short
    logits = logits_of(kind, B, V, seed=top_k + 7)
    _, rows = check_split(logits, params_for(B, temperature, top_k, top_p, min_p))
    assert rows.tolist() == [served] * B


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_per_row_params_equal_reference(dtype):
    """Mixed rows in one launch, with chunks of several tiles (block 64)."""
    B, V = 6, 1001
    logits = make_logits(B, V, "normal5", seed=3, dtype=dtype, device=DEVICE)
    temperature, top_k, top_p, min_p = per_row_params(B, V, seed=3, device=DEVICE)
    top_k[1::2] = torch.tensor([5, 50, 64], device=DEVICE)  # some rows served from candidates
    _, rows = check_split(logits, [temperature, top_k, top_p, min_p], block=64)
    assert (rows > 0).any() and (rows == FULL_ROW).any()


def test_ties_at_the_kth_value():
    """Ties at a chunk's k-th value within TIE_SLACK are served; beyond it the row overflows
    into the full-row path. Both equal the reference."""
    B, V, k = 2, 1000, 10
    logits = make_logits(B, V, "normal1", seed=4, device=DEVICE)
    kth = logits[0, :CHUNK].topk(k).values[-1]
    logits[0, 100:103] = torch.where(logits[0, 100:103] < kth, kth, logits[0, 100:103])  # ties at chunk 0's k-th
    logits[1, 256:512] = 3.0  # chunk 1 of row 1: all tied far above the rest
    params = params_for(B, 0.9, k, 0.95)
    _, rows = check_split(logits, params)
    assert rows.tolist() == [k, FULL_ROW]

    _, _, ws = split_row.run_sample_split_row(logits, *params, uniforms(B), chunk=CHUNK, block=BLOCK)
    counts = ws.chunk_counts()
    assert k < counts[0, 0] == (logits[0, :CHUNK] >= kth).sum() and (counts[0] <= k + TIE_SLACK).all()
    assert counts[1, 1] == CHUNK > k + TIE_SLACK


def test_nan_inf_and_ties():
    V = 1000
    logits = make_logits(7, V, "normal1", seed=5, device=DEVICE)
    logits[0] = float("-inf")  # no finite logit
    logits[1] = float("nan")  # all NaN: same as all -inf
    logits[2, ::2] = float("nan")  # NaN entries are never kept
    logits[3, :] = 1.0  # all tied
    logits[4, 510:520] = 9.0  # tie at the top, 10 wide, across no chunk border
    logits[5, :-1] = float("-inf")  # a single finite token, the last
    logits[5, 7] = float("inf")  # ... and a +inf one
    logits[6, :700] = float("-inf")  # whole chunks without a finite logit
    tokens, _ = check_split(logits, params_for(7, 0.8, 5, 0.5))
    assert tokens[0] == -1 and tokens[1] == -1
    assert tokens[2] % 2 == 1
    assert 510 <= tokens[4] < 520
    assert tokens[5] == 7
    assert tokens[6] >= 700


def test_greedy_takes_first_argmax_across_chunks():
    V = 1000
    logits = make_logits(3, V, "normal1", seed=2, device=DEVICE)
    logits[0, 600] = logits[0, 900] = 50.0  # tie in two chunks: the first chunk's
    logits[1, 300] = logits[1, 301] = 50.0  # tie inside one chunk
    params = params_for(3, 0.0)
    tokens, _ = check_split(logits, params)
    assert tokens.tolist() == [600, 300, int(logits[2].argmax())]
    filtered = split_row.filter_logits_split_row(logits, *params, chunk=CHUNK, block=BLOCK)
    assert torch.isfinite(filtered).sum().item() == 3 and filtered[0, 600] == 50.0


def test_same_tokens_as_one_program_kernel():
    """Same uniforms -> same tokens from both Triton paths, over many rows of one distribution."""
    B, V = 8, 600
    logits = make_logits(1, V, "gumbel", seed=9, device=DEVICE).expand(B, V).contiguous()
    params = params_for(B, 0.9, 40, 0.8, 0.01)
    uniform = uniforms(B, seed=4)
    split = sample_triton(logits, *params, uniform, block=BLOCK, split=True)
    one = sample_triton(logits, *params, uniform, block=BLOCK, split=False)
    assert torch.equal(split[0], one[0])
    torch.testing.assert_close(split[1], one[1], rtol=1e-6, atol=1e-6)
    check_split(logits, params, seed=4)


def test_empty_batch():
    logits = torch.empty(0, 1000, device=DEVICE)
    params = params_for(0, 0.7, 5, 0.9)
    tokens, logprobs = split_row.sample_split_row(logits, *params, uniforms(0), chunk=CHUNK, block=BLOCK)
    assert tokens.shape == (0,) and tokens.dtype == torch.int64 and logprobs.dtype == torch.float32
    assert split_row.filter_logits_split_row(logits, *params, chunk=CHUNK, block=BLOCK).shape == (0, 1000)


def test_public_sample_takes_the_split_path_and_is_reproducible(monkeypatch, force_backend):
    monkeypatch.setattr(split_row, "CHUNK", CHUNK)
    calls = []
    real = split_row.sample_split_row
    monkeypatch.setattr(split_row, "sample_split_row", lambda *a, **k: calls.append(1) or real(*a, **k))
    B, V = 2, 3 * CHUNK
    logits = make_logits(B, V, "normal1", seed=1, device=DEVICE)
    kwargs = dict(temperature=0.7, top_k=50, top_p=0.9, return_logprobs=True)

    def draw(backend):
        force_backend(backend)
        return mk.sample(logits, **kwargs, generator=torch.Generator(DEVICE).manual_seed(123))

    tokens, logprobs = draw("triton")
    assert calls == [1]
    again, _ = draw("triton")
    # The one-program path on the same draws: mk.sample's checked rows, split=False.
    sampler = mk.Sampler(B, DEVICE, kwargs["temperature"], kwargs["top_k"], kwargs["top_p"])
    uniform = torch.rand(B, generator=torch.Generator(DEVICE).manual_seed(123), device=DEVICE)
    one_program, _ = sample_triton(logits, *sampler.params, uniform, split=False)
    assert calls == [1, 1]
    ref_tokens, ref_logprobs = draw("reference")
    assert torch.equal(tokens, again) and torch.equal(tokens, one_program) and torch.equal(tokens, ref_tokens)
    torch.testing.assert_close(logprobs, ref_logprobs, rtol=1e-5, atol=1e-5)


def test_heuristic_splits_small_batches_only():
    most = int(dispatch.ROWS_PER_SM * dispatch.sm_count(DEVICE))
    V = 151936
    assert dispatch.prefers_split_row(1, V, DEVICE)
    assert dispatch.prefers_split_row(most, V, DEVICE)
    assert not dispatch.prefers_split_row(most + 1, V, DEVICE)
    assert not dispatch.prefers_split_row(256, V, DEVICE)
    assert not dispatch.prefers_split_row(1, 2 * split_row.CHUNK - 1, DEVICE)  # one chunk: nothing to split
    assert not dispatch.prefers_split_row(0, V, DEVICE)
    if DEVICE == "cpu":
        assert most == 33  # the H100's rule: B <= 33
