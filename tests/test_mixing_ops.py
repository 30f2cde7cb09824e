"""mk.mix_logits / mk.mix_and_sample on every backend: formulas, dtypes, weights, plausibility,
edges, the sampled distribution and bad inputs."""

import math

import pytest
import torch
from scipy.stats import chisquare

import mta_kernels as mk
from conftest import DEVICE
from sampling_cases import make_logits

NEG_INF = float("-inf")
# Backends the mixing ops have on this device (Triton through the interpreter on CPU).
BACKENDS = [b for b in mk.available_backends(DEVICE) if b in ("triton", "cpp", "reference")]

pytestmark = [
    pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning"),
    pytest.mark.filterwarnings("ignore:divide by zero encountered:RuntimeWarning"),
]


def models(K=3, B=4, V=300, dtypes=(torch.float32,), seed=0):
    return [
        make_logits(B, V, "normal5" if k % 2 else "normal1", seed=seed + k, dtype=dtypes[k % len(dtypes)], device=DEVICE)
        for k in range(K)
    ]


def formula(xs, weights, temperature, normalize, plausibility=0.0):
    """s = Σ w_k f(x_k / T_k) written out plainly, with the plausibility mask on model 0."""
    s = 0
    for x, w, t in zip(xs, weights, temperature):
        z = x.double() / t
        s = s + w * (torch.log_softmax(z, dim=-1) if normalize else z)
    if plausibility > 0:
        p0 = torch.softmax(xs[0].double() / temperature[0], dim=-1)
        s = torch.where(p0 >= plausibility * p0.max(dim=-1, keepdim=True).values, s, NEG_INF)
    return s.float()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("plausibility", [0.0, 0.1, 1.0])
def test_mix_logits_is_the_formula(backend, normalize, plausibility, force_backend):
    force_backend(backend)
    xs = models()
    weights, temperature = [1.0, 0.7, -0.4], [0.8, 1.0, 1.5]
    out = mk.mix_logits(xs, weights, normalize=normalize, temperature=temperature, plausibility=plausibility)
    expected = formula(xs, weights, temperature, normalize, plausibility)
    assert out.dtype == torch.float32 and out.shape == xs[0].shape
    assert torch.equal(out == NEG_INF, expected == NEG_INF)
    torch.testing.assert_close(out[out > NEG_INF], expected[expected > NEG_INF], rtol=1e-5, atol=1e-4)
    if plausibility == 1.0:  # only model 0's argmax survives
        kept = (out > NEG_INF).nonzero()[:, 1]
        assert torch.equal(kept, xs[0].argmax(dim=1))


@pytest.mark.parametrize("backend", BACKENDS)
def test_mixed_dtypes_and_stacked_input(backend, force_backend):
    force_backend(backend)
    xs = models(dtypes=(torch.float32, torch.bfloat16, torch.float16))
    out = mk.mix_logits(xs, [0.5, 0.3, 0.2])
    expected = formula([x.float() for x in xs], [0.5, 0.3, 0.2], [1, 1, 1], True)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-4)
    stacked = torch.stack([x.to(torch.bfloat16) for x in xs])  # a [K, B, V] tensor
    torch.testing.assert_close(mk.mix_logits(stacked, [0.5, 0.3, 0.2]), mk.mix_logits(list(stacked), [0.5, 0.3, 0.2]))


@pytest.mark.parametrize("backend", BACKENDS)
def test_weights_per_model_and_per_row(backend, force_backend):
    force_backend(backend)
    xs = models(K=2, B=3)
    per_row = torch.tensor([[1.0, 2.0, 0.5], [-1.0, 0.0, 0.25]], device=DEVICE)  # [K, B]
    out = mk.mix_logits(xs, per_row, normalize=False)
    for b in range(3):
        row = formula([x[b:b + 1] for x in xs], per_row[:, b].tolist(), [1, 1], False)
        torch.testing.assert_close(out[b:b + 1], row)
    as_list = mk.mix_logits(xs, [2.0, -1.0], normalize=False)
    as_tensor = mk.mix_logits(xs, torch.tensor([2.0, -1.0], device=DEVICE), normalize=False)
    torch.testing.assert_close(as_list, as_tensor)
    torch.testing.assert_close(as_list, 2 * xs[0] - xs[1])


@pytest.mark.parametrize("backend", BACKENDS)
def test_edges_nan_inf_weight_zero_and_empty_rows(backend, force_backend):
    force_backend(backend)
    xs = models(K=2, B=4, V=64)
    xs[0][0, 5] = float("nan")  # NaN counts as -inf
    xs[1][1, :] = NEG_INF  # a weight-0 model's -inf is ignored...
    xs[0][2, :] = NEG_INF  # ...model 0 with nothing finite empties the mixture
    xs[1][3, 7] = NEG_INF  # and a weighted -inf removes the token
    weights = torch.tensor([[1.0, 1.0, 1.0, 1.0], [0.5, 0.0, 0.5, 0.5]], device=DEVICE)
    out = mk.mix_logits(xs, weights)
    assert out[0, 5] == NEG_INF and torch.isfinite(out[0, :5]).all()
    torch.testing.assert_close(out[1], torch.log_softmax(xs[0][1], dim=-1))
    assert (out[2] == NEG_INF).all()
    assert out[3, 7] == NEG_INF and torch.isfinite(out[3, 8:]).all()
    assert not out.isnan().any()
    tokens = mk.mix_and_sample(xs, weights, generator=torch.Generator(DEVICE).manual_seed(0))
    assert tokens[2] == -1 and (tokens[[0, 1, 3]] >= 0).all()
    assert tokens[0] != 5 and tokens[3] != 7


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("temperature", [1e-45, 1e-40, 1e-30, 1e-4, 1e4, 1e30])
def test_extreme_temperatures_stay_finite_and_sample_the_limit(backend, temperature, force_backend):
    force_backend(backend)
    xs = models(K=2, B=3, V=100)
    for normalize in (True, False):
        out = mk.mix_logits(xs, [1.0, 0.0], temperature=temperature, normalize=normalize, plausibility=0.1)
        assert not out.isnan().any() and not out.isposinf().any()
        if normalize and temperature <= 1e-4:  # log-probabilities keep the ranking; raw x / T saturates
            assert torch.equal(out.argmax(dim=1), xs[0].argmax(dim=1))
    tokens = mk.mix_and_sample(xs, [1.0, 0.0], temperature=temperature, generator=torch.Generator(DEVICE).manual_seed(0))
    if temperature <= 1e-4:  # the limit is model 0's argmax
        assert torch.equal(tokens, xs[0].argmax(dim=1))
    assert ((tokens >= 0) & (tokens < 100)).all()


@pytest.mark.parametrize("backend", BACKENDS)
def test_tiny_temperatures_sample_the_argmax_of_the_mixture(backend, force_backend):
    """Issue 14 item 5: with x_k / T_k overflowing fp32 every positive logit saturated, and
    mix_and_sample turned uniform over them. The limit of vanishing temperatures is the
    argmax of sum_k w_k x_k (equal temperatures), or of the coldest models' terms."""
    force_backend(backend)
    xs = models(K=2, B=4, V=300)
    plain = [x.float() for x in xs]
    for seed in range(3):
        g = torch.Generator(DEVICE).manual_seed(seed)
        for normalize in (True, False):
            tokens, logprobs = mk.mix_and_sample(xs, [1.0, 0.5], temperature=1e-40, normalize=normalize,
                                                 generator=g, return_logprobs=True)
            assert torch.equal(tokens, (plain[0] + 0.5 * plain[1]).argmax(dim=1))
            assert torch.equal(logprobs, torch.zeros_like(logprobs))
        colder = mk.mix_and_sample(xs, [1.0, 0.5], temperature=[1e-40, 1.0], generator=g)
        assert torch.equal(colder, plain[0].argmax(dim=1))
        # Contrastive decoding at a tiny temperature: only the expert's argmax is plausible.
        contrastive = mk.mix_and_sample(xs, [1.0, -1.0], temperature=1e-40, plausibility=0.1, generator=g)
        assert torch.equal(contrastive, plain[0].argmax(dim=1))


def test_empty_batch_and_vocabulary_truncation():
    empty = [torch.empty(0, 10, device=DEVICE)] * 2
    assert mk.mix_logits(empty, [1.0, 1.0]).shape == (0, 10)
    tokens, logprobs = mk.mix_and_sample(empty, [1.0, 1.0], return_logprobs=True)
    assert tokens.shape == (0,) and logprobs.shape == (0,)
    wide, narrow = make_logits(2, 320, device=DEVICE), make_logits(2, 300, seed=1, device=DEVICE)
    out = mk.mix_logits([wide, narrow], [1.0, 1.0], vocab_size=300)
    torch.testing.assert_close(out, formula([wide[:, :300], narrow], [1, 1], [1, 1], True))
    token = mk.mix_and_sample([wide, narrow], [1.0, 1.0], vocab_size=300, top_k=1)
    assert torch.equal(token, out.argmax(dim=1))


@pytest.mark.parametrize("backend", BACKENDS)
def test_mix_and_sample_equals_sampling_the_mixture(backend, force_backend):
    """Same generator -> the same draw as mk.sample on mix_logits, per-row parameters included."""
    force_backend(backend)
    B = 6
    xs = models(K=3, B=B, V=700, dtypes=(torch.float32, torch.bfloat16))
    weights = torch.rand(3, B, generator=torch.Generator().manual_seed(0)).to(DEVICE) - 0.3
    plausibility = torch.tensor([0.0, 0.1, 0.0, 0.3, 0.0, 0.05], device=DEVICE)
    top_k = torch.tensor([0, 20, 5, 0, 700, 1], device=DEVICE)
    top_p = torch.tensor([1.0, 0.9, 1.0, 0.7, 0.95, 1.0], device=DEVICE)
    min_p = torch.tensor([0.0, 0.0, 0.1, 0.0, 0.02, 0.0], device=DEVICE)
    for normalize in (True, False):
        kwargs = dict(normalize=normalize, temperature=[0.7, 1.0, 1.3], plausibility=plausibility)
        tokens, logprobs = mk.mix_and_sample(
            xs, weights, **kwargs, top_k=top_k, top_p=top_p, min_p=min_p, return_logprobs=True,
            generator=torch.Generator(DEVICE).manual_seed(3),
        )
        mixed = mk.mix_logits(xs, weights, **kwargs)
        ref_tokens, ref_logprobs = mk.sample(
            mixed, 1.0, top_k, top_p, min_p, return_logprobs=True, generator=torch.Generator(DEVICE).manual_seed(3)
        )
        assert torch.equal(tokens, ref_tokens)
        torch.testing.assert_close(logprobs, ref_logprobs, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("backend", [b for b in BACKENDS if b != "triton" or DEVICE == "cuda"])
@pytest.mark.parametrize(
    "normalize,plausibility,top_k,top_p",
    [(True, 0.0, 0, 1.0), (True, 0.1, 0, 0.9), (False, 0.0, 8, 1.0), (True, 0.05, 0, 1.0)],
)
def test_sampled_distribution_matches_the_mixture(backend, normalize, plausibility, top_k, top_p, force_backend):
    """Chi-square: mix_and_sample's draws against softmax(filter(mix_logits))."""
    force_backend(backend)
    draws, V = 40_000, 30
    xs = [make_logits(1, V, kind, seed=s, device=DEVICE) for s, kind in enumerate(("normal1", "normal5", "gumbel"))]
    weights, temperature = [1.0, -0.5, 0.5], [0.9, 1.2, 1.0]
    probs = torch.softmax(
        mk.filter_logits(
            mk.mix_logits(xs, weights, normalize=normalize, temperature=temperature, plausibility=plausibility),
            1.0, top_k, top_p,
        )[0].double(), dim=0,
    ).cpu()
    batch = [x.expand(draws, V).contiguous() for x in xs]
    tokens = mk.mix_and_sample(
        batch, weights, normalize=normalize, temperature=temperature, plausibility=plausibility,
        top_k=top_k, top_p=top_p, generator=torch.Generator(DEVICE).manual_seed(1234),
    )
    counts = torch.bincount(tokens.cpu(), minlength=V).double()
    kept = probs > 0
    assert counts[~kept].sum() == 0, "drew a removed token"
    assert chisquare(counts[kept].numpy(), (probs[kept] * draws).numpy()).pvalue > 1e-4


def test_more_models_than_the_fused_kernels_take():
    xs = models(K=mk.mixing.MAX_FUSED_MODELS + 1, B=2, V=50)
    weights = [1.0 / len(xs)] * len(xs)
    out = mk.mix_logits(xs, weights)
    torch.testing.assert_close(out, formula(xs, weights, [1] * len(xs), True), rtol=1e-5, atol=1e-4)
    tokens = mk.mix_and_sample(xs, weights, top_k=1)
    assert torch.equal(tokens, out.argmax(dim=1))


def test_contrastive_decoding_prefers_what_the_amateur_misses():
    expert = torch.tensor([[2.0, 1.9, -5.0, 0.0]], device=DEVICE)
    amateur = torch.tensor([[2.0, 0.0, -9.0, 0.0]], device=DEVICE)
    # Token 2 has the top contrastive score but is implausible under the expert (p < 0.1 p_max).
    assert mk.mix_and_sample([expert, amateur], [1.0, -1.0], plausibility=0.0, top_k=1).item() == 2
    assert mk.mix_and_sample([expert, amateur], [1.0, -1.0], plausibility=0.1, top_k=1).item() == 1


@pytest.mark.parametrize(
    "call,error,match",
    [
        (lambda xs: mk.mix_logits([], [1.0]), ValueError, "no model"),
        (lambda xs: mk.mix_logits(xs[0], [1.0]), ValueError, r"\[K, B, V\]"),
        (lambda xs: mk.mix_logits("logits", [1.0]), TypeError, "logits must be"),
        (lambda xs: mk.mix_logits([xs[0], xs[1][:1]], [1.0, 1.0]), ValueError, r"logits\[1\] has 1 rows"),
        (lambda xs: mk.mix_logits([xs[0], xs[1][:, :250]], [1.0, 1.0]), ValueError, "logits\\[0\\] has 300, logits\\[1\\] has 250.*vocab_size"),
        (lambda xs: mk.mix_logits(xs[:2], [1.0, 1.0], vocab_size=301), ValueError, "vocab_size must be in"),
        (lambda xs: mk.mix_logits(xs[:2], [1.0, 1.0], vocab_size=2.5), TypeError, "vocab_size must be an int"),
        (lambda xs: mk.mix_logits([xs[0].long(), xs[1]], [1.0, 1.0]), TypeError, r"logits\[0\] must be float32"),
        (lambda xs: mk.mix_logits(xs, [1.0, 1.0]), ValueError, "weights must be .* got 2 numbers"),
        (lambda xs: mk.mix_logits(xs, [1.0, math.nan, 1.0]), ValueError, "weights must be in"),
        (lambda xs: mk.mix_logits(xs, [1.0, math.inf, 1.0]), ValueError, "weights must be in"),
        (lambda xs: mk.mix_logits(xs, torch.ones(3, 5, device=DEVICE)), ValueError, "weights must be .* got shape"),
        (lambda xs: mk.mix_logits(xs, "equal"), TypeError, "weights must be"),
        (lambda xs: mk.mix_logits(xs, 1.0, temperature=0.0), ValueError, "temperature must be in"),
        (lambda xs: mk.mix_logits(xs, 1.0, temperature=[1.0, -1.0, 1.0]), ValueError, "temperature must be in"),
        (lambda xs: mk.mix_logits(xs, 1.0, plausibility=1.5), ValueError, "plausibility must be in"),
        (lambda xs: mk.mix_logits(xs, 1.0, plausibility=torch.full((3,), -0.1, device=DEVICE)), ValueError, "plausibility must be in"),
        (lambda xs: mk.mix_logits(xs, 1.0, normalize=1), TypeError, "normalize must be a bool"),
        (lambda xs: mk.mix_and_sample(xs, 1.0, top_p=0.0), ValueError, "top_p must be in"),
        (lambda xs: mk.mix_and_sample(xs, 1.0, top_k=2.5), TypeError, "top_k must be an integer"),
    ],
)
def test_bad_inputs_raise_clear_errors(call, error, match):
    with pytest.raises(error, match=match):
        call(models(K=3, B=3))


@pytest.mark.skipif(DEVICE != "cuda", reason="needs a second device kind")
def test_models_on_different_devices_are_an_error():
    xs = models(K=2, B=2)
    with pytest.raises(ValueError, match=r"logits\[1\] is on cpu"):
        mk.mix_logits([xs[0], xs[1].cpu()], [1.0, 1.0])
