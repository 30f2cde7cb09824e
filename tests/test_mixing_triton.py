"""The mixing Triton kernels against the reference, path by path.

Small shapes for the interpreter: chunks of 256 tokens and the split-row sampler's candidate
limits shrunk, so that every way a row can be finished -- from candidates, by chunk masses
when nothing is cut, or on the full row of the mixture -- shows up at V ~ 1000.
"""

import pytest
import torch

from conftest import DEVICE
from mta_kernels.mixing import triton_kernels as mt
from mta_kernels.mixing.inputs import mix_inputs
from mta_kernels.mixing.reference import factored_mixture, mix_and_sample_reference, mix_logits_reference
from mta_kernels.sampling import triton_split_row as split_row
from mta_kernels.sampling.triton_split_row import BY_CHUNKS, FULL_ROW
from sampling_cases import make_logits

CHUNK = 256
PROBE, K_MAX, TIE_SLACK = 16, 64, 4
NEG_INF = float("-inf")

pytestmark = [
    pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning"),
    pytest.mark.filterwarnings("ignore:divide by zero encountered:RuntimeWarning"),
]


@pytest.fixture(autouse=True)
def small_limits(monkeypatch):
    monkeypatch.setattr(split_row, "PROBE", PROBE)
    monkeypatch.setattr(split_row, "K_MAX", K_MAX)
    monkeypatch.setattr(split_row, "TIE_SLACK", TIE_SLACK)


def inputs_for(K=3, B=4, V=1000, dtypes=(torch.float32,), normalize=True, plausibility=0.0, weights=None, seed=0):
    xs = [
        make_logits(B, V, ("normal1", "normal5", "gumbel")[k % 3], seed=seed + k, dtype=dtypes[k % len(dtypes)], device=DEVICE)
        for k in range(K)
    ]
    weights = weights if weights is not None else [1.0] + [(-0.5) ** k for k in range(1, K)]
    return mix_inputs(xs, weights, normalize, [0.8 + 0.1 * k for k in range(K)], plausibility, None)


def row_params(B, top_k=0, top_p=1.0, min_p=0.0):
    def row(v, dtype):
        return v.to(DEVICE) if isinstance(v, torch.Tensor) else torch.full((B,), v, dtype=dtype, device=DEVICE)

    return row(top_k, torch.int64), row(top_p, torch.float32), row(min_p, torch.float32)


def check(inputs, top_k=0, top_p=1.0, min_p=0.0, *, top_k_hint=None, seed=0):
    """Triton equals the reference; returns how each row was served."""
    B = inputs.batch
    params = row_params(B, top_k, top_p, min_p)
    uniform = torch.rand(B, generator=torch.Generator(DEVICE).manual_seed(seed), device=DEVICE)
    tokens, logprobs, mixed, ws = mt.run_mix_and_sample_triton(
        inputs, *params, uniform, top_k_hint=top_k_hint, chunk=CHUNK, block=CHUNK
    )
    ref_tokens, ref_logprobs = mix_and_sample_reference(
        inputs.logits, inputs.weights, inputs.normalize, inputs.temperature, inputs.plausibility, *params, uniform
    )
    assert torch.equal(tokens, ref_tokens)
    torch.testing.assert_close(logprobs, ref_logprobs, rtol=1e-4, atol=1e-4)
    # The stored mixture is the factored one (s' = the scores times T_min, no normalisers):
    # the sampler needs neither the normalisers nor a division by a tiny temperature.
    factored, _ = factored_mixture(inputs.logits, inputs.weights, inputs.temperature, inputs.plausibility)
    torch.testing.assert_close(mixed, factored, rtol=1e-5, atol=1e-5)
    return ws.rows_served().cpu()


@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("plausibility", [0.0, 0.2])
@pytest.mark.parametrize("dtypes", [(torch.float32,), (torch.bfloat16, torch.float16, torch.float32)])
def test_mix_logits_kernel_equals_reference(normalize, plausibility, dtypes):
    inputs = inputs_for(dtypes=dtypes, normalize=normalize, plausibility=plausibility)
    out = mt.mix_logits_triton(inputs, chunk=CHUNK, block=CHUNK)
    ref = mix_logits_reference(inputs.logits, inputs.weights, normalize, inputs.temperature, inputs.plausibility)
    assert torch.equal(out == NEG_INF, ref == NEG_INF)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def test_top_k_rows_are_served_from_candidates_with_a_small_room():
    inputs = inputs_for(B=3, plausibility=0.05)
    assert mt.candidate_room(10) == PROBE  # room for max(PROBE, next_pow2(10)) candidates per chunk
    served = check(inputs, top_k=10, top_p=0.9, top_k_hint=10)
    assert (served == 10).all()  # each chunk kept its 10 largest


def test_top_p_only_and_uncut_rows():
    inputs = inputs_for(B=4)
    served = check(inputs, top_p=torch.tensor([0.3, 1.0, 1.0, 0.5]), min_p=torch.tensor([0.0, 0.0, 0.2, 0.0]))
    assert served[1] == BY_CHUNKS  # nothing cut: drawn from the chunk masses
    assert served[0] in (PROBE, FULL_ROW) and served[3] in (PROBE, FULL_ROW)


def test_rows_left_to_the_full_row_path():
    # top_k above the room of the launch, and a flat mixture whose nucleus is far wider than the probe.
    inputs = inputs_for(B=2, weights=[0.01, 0.0, 0.0])
    served = check(inputs, top_k=torch.tensor([200, 0]), top_p=torch.tensor([1.0, 0.95]))
    assert (served == FULL_ROW).all()


@pytest.mark.parametrize("K", [1, 8])
def test_one_and_eight_models_with_per_row_weights(K):
    B = 3
    weights = torch.linspace(-1, 1, K * B, device=DEVICE).reshape(K, B)
    weights[0] = 1.0
    inputs = inputs_for(K=K, B=B, V=600, dtypes=(torch.float32, torch.bfloat16), weights=weights, plausibility=0.1)
    check(inputs, top_k=torch.tensor([5, 0, 30]), top_p=torch.tensor([1.0, 0.8, 0.9]), seed=K)
    out = mt.mix_logits_triton(inputs, chunk=CHUNK, block=CHUNK)
    ref = mix_logits_reference(inputs.logits, inputs.weights, True, inputs.temperature, inputs.plausibility)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def test_single_row_truncated_vocabularies_and_a_partial_chunk():
    wide = make_logits(1, 1100, device=DEVICE)  # a view cut to 1000 keeps the row stride 1100
    narrow = make_logits(1, 1000, "normal5", seed=1, dtype=torch.bfloat16, device=DEVICE)
    inputs = mix_inputs([wide, narrow], [1.0, -0.3], True, 1.0, 0.1, 1000)
    assert inputs.logits[0].stride(0) == 1100
    check(inputs, top_k=7, top_p=0.9, top_k_hint=7)
    check(inputs)  # temperature-only row: by chunk masses


def test_rows_with_nothing_left():
    inputs = inputs_for(B=3, plausibility=0.1)
    inputs.logits[0][1] = NEG_INF  # model 0 empty: plausibility keeps nothing
    inputs.logits[2][2] = NEG_INF  # a weighted model empty: every mixed score -inf
    B = inputs.batch
    params = row_params(B, top_k=5)
    tokens, logprobs, *_ = mt.run_mix_and_sample_triton(
        inputs, *params, torch.rand(B, device=DEVICE), chunk=CHUNK, block=CHUNK
    )
    assert tokens[1] == -1 and tokens[2] == -1 and tokens[0] >= 0
    assert logprobs[1] == NEG_INF and logprobs[2] == NEG_INF
