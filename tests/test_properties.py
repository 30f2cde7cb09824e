"""Property-based tests (hypothesis): every op against its torch reference on drawn inputs.

Hypothesis draws the structure of each case (B = 0 and 1 included, V not a multiple of any
block size, dtypes, scalar or per-row parameters, extreme values: NaN, +-inf, ties, logits
near 1e30, temperatures from 1e-45 to 1e30) and a seed for the bulk of the values. The
default backend of this machine and, on small shapes, the Triton kernels (interpreted on a
CPU) must agree with the reference: the same tokens for the same uniform draw, the same kept
sets, values within float tolerance; bad states raise instead of reading out of bounds.

Budget: the "ci" profile (the default) runs a fixed, derandomised handful of examples per
test, so the file takes about a minute on 2 cores; ``HYPOTHESIS_PROFILE=dev`` runs many more
(random, so a run explores new cases).
"""

from __future__ import annotations

import math
import os
import random
from contextlib import contextmanager
from fractions import Fraction

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mta_kernels as mk
from conftest import DEVICE
from mta_kernels._validation import per_row_param, sampling_rows
from mta_kernels.braking import BrakingConfig, BrakingState, MarkerTables, braking_step, braking_step_reference
from mta_kernels.logprobs.reference import linear_token_logprobs_reference, token_logprobs_reference
from mta_kernels.logprobs.token_triton import token_logprobs_triton
from mta_kernels.mixing.inputs import mix_inputs
from mta_kernels.mixing.reference import mix_and_sample_reference, mix_logits_reference
from mta_kernels.mixing.triton_kernels import mix_logits_triton, run_mix_and_sample_triton
from mta_kernels.rl.reference import pass_at_k_reference, policy_loss_reference
from mta_kernels.rl.triton_kernels import policy_loss_triton
from mta_kernels.sampling import filter_logits_reference, sample_reference
from mta_kernels.sampling import triton_split_row as split_row
from mta_kernels.sampling.triton_row import filter_logits_row, sample_row

_COMMON = dict(deadline=None, print_blob=True,
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("ci", max_examples=25, derandomize=True, **_COMMON)
settings.register_profile("dev", max_examples=400, **_COMMON)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
#: Triton under the interpreter is slow: its tests take a share of the profile's examples.
TRITON_EXAMPLES = max(5, settings().max_examples // 5)

pytestmark = [  # extreme values: the reference and the interpreter warn on inf arithmetic
    pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning"),
    pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning"),
    pytest.mark.filterwarnings("ignore:divide by zero encountered:RuntimeWarning"),
]

NEG_INF, INF, NAN = float("-inf"), float("inf"), float("nan")
DTYPES = (torch.float32, torch.bfloat16, torch.float16)
TEMPERATURES = (0.0, 1e-45, 1e-40, 1e-30, 1e-4, 0.3, 0.7, 1.0, 1.5, 1e4, 1e30)
SPECIALS = (NAN, INF, NEG_INF, 0.0, -0.0, 1e30, -1e30, 3.4e38)
# Triton tiles and split-row chunks for the interpreter: V up to a few tiles.
TRITON_BLOCK, TRITON_CHUNK, TRITON_MAX_V = 16, 32, 72


# --------------------------------------------------------------------------- strategies
@st.composite
def logit_rows(draw, *, max_b: int = 4, max_v: int = 300, dtypes=DTYPES, shape: tuple[int, int] | None = None):
    """A [B, V] logits tensor (``shape`` or drawn): seeded normal values at a drawn scale,
    drawn special entries, sometimes rounded to few values (ties)."""
    B, V = shape or (draw(st.sampled_from([0, 1, 1, 2, max_b])), draw(st.integers(1, max_v)))
    dtype = draw(st.sampled_from(dtypes))
    scale = draw(st.sampled_from([1.0, 5.0, 1e-3, 1e4, 1e30]))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    x = torch.randn(B, V, generator=g, dtype=torch.float64) * scale
    if draw(st.booleans()):
        x = x.round()  # ties
    flat = x.view(-1)
    if flat.numel():
        for _ in range(draw(st.integers(0, 6))):
            flat[draw(st.integers(0, flat.numel() - 1))] = draw(st.sampled_from(SPECIALS))
    return x.to(dtype).to(DEVICE)  # past a dtype's range: +-inf, another extreme value


def _one_or_rows(draw, B: int, values, *, integer: bool = False):
    """A scalar, or a [B] tensor of drawn values."""
    if B == 0 or draw(st.booleans()):
        return draw(values)
    rows = [draw(values) for _ in range(B)]
    return torch.tensor(rows, dtype=torch.int64 if integer else torch.float32, device=DEVICE)


@st.composite
def sampling_params(draw, B: int, V: int):
    """(temperature, top_k, top_p, min_p) as the public ops take them."""
    return (
        _one_or_rows(draw, B, st.sampled_from(TEMPERATURES)),
        _one_or_rows(draw, B, st.sampled_from([0, -1, 1, 2, 5, V - 1, V, V + 3]), integer=True),
        _one_or_rows(draw, B, st.sampled_from([1.0, 0.95, 0.5, 0.1, 1e-6])),
        _one_or_rows(draw, B, st.sampled_from([0.0, 0.0, 0.05, 0.5, 1.0])),
    )


def uniform_for(seed: int, B: int) -> torch.Tensor:
    """The draw mk.sample makes with ``torch.Generator(DEVICE).manual_seed(seed)``."""
    return torch.rand(B, generator=torch.Generator(DEVICE).manual_seed(seed), device=DEVICE)


def assert_same_filter(out: torch.Tensor, ref: torch.Tensor) -> None:
    """The same kept set; kept values equal up to float rounding; nothing NaN."""
    assert not out.isnan().any()
    kept = ref > NEG_INF
    assert torch.equal(out > NEG_INF, kept), (out, ref)
    torch.testing.assert_close(out[kept], ref[kept], rtol=1e-6, atol=0.0)


def assert_same_draws(tokens, logprobs, ref_tokens, ref_logprobs) -> None:
    assert torch.equal(tokens, ref_tokens), (tokens, ref_tokens)
    torch.testing.assert_close(logprobs, ref_logprobs, rtol=1e-4, atol=1e-4)


# --------------------------------------------------------------------------- sampling
@given(logits=logit_rows(), data=st.data(), seed=st.integers(0, 2**31 - 1))
def test_sampling_ops_equal_reference(logits, data, seed):
    """mk.filter_logits / mk.sample on this machine's default backend."""
    B, V = logits.shape
    params = data.draw(sampling_params(B, V))
    rows = sampling_rows(*params, B, logits.device)
    ref = filter_logits_reference(logits, *rows)
    out = mk.filter_logits(logits, *params)
    assert_same_filter(out, ref)
    tokens, logprobs = mk.sample(logits, *params, generator=torch.Generator(DEVICE).manual_seed(seed),
                                 return_logprobs=True)
    ref_tokens, ref_logprobs = sample_reference(logits, *rows, uniform_for(seed, B))
    assert_same_draws(tokens, logprobs, ref_tokens, ref_logprobs)
    # The draw is a kept token (-1 only for a row with nothing kept); no +inf appears in the
    # output of a row whose logits had none (a tiny temperature is greedy, not an overflow).
    drawn = tokens >= 0
    assert torch.equal(drawn, (ref > NEG_INF).any(dim=1))
    assert (out[drawn.nonzero()[:, 0], tokens[drawn]] > NEG_INF).all()
    had_inf = logits.float().isposinf().any(dim=1, keepdim=True)
    assert not (out.isposinf() & ~had_inf).any()


@contextmanager
def small_split_limits():
    """Candidate limits that a V ~ 80 row in chunks of 32 can exercise (and undo)."""
    saved = split_row.PROBE, split_row.K_MAX, split_row.TIE_SLACK
    split_row.PROBE, split_row.K_MAX, split_row.TIE_SLACK = 4, 8, 2
    try:
        yield
    finally:
        split_row.PROBE, split_row.K_MAX, split_row.TIE_SLACK = saved


@settings(max_examples=TRITON_EXAMPLES)
@given(logits=logit_rows(max_b=3, max_v=TRITON_MAX_V), data=st.data(), seed=st.integers(0, 2**31 - 1))
def test_triton_sampling_equals_reference(logits, data, seed):
    """Both Triton paths (one program per row, split rows) on small shapes."""
    B, V = logits.shape
    rows = sampling_rows(*data.draw(sampling_params(B, V)), B, logits.device)
    uniform = uniform_for(seed, B)
    ref = filter_logits_reference(logits, *rows)
    ref_draws = sample_reference(logits, *rows, uniform)
    assert_same_filter(filter_logits_row(logits, *rows, block=TRITON_BLOCK), ref)
    assert_same_draws(*sample_row(logits, *rows, uniform, block=TRITON_BLOCK), *ref_draws)
    with small_split_limits():
        out = split_row.filter_logits_split_row(logits, *rows, chunk=TRITON_CHUNK, block=TRITON_BLOCK)
        draws = split_row.sample_split_row(logits, *rows, uniform, chunk=TRITON_CHUNK, block=TRITON_BLOCK)
    assert_same_filter(out, ref)
    assert_same_draws(*draws, *ref_draws)


# --------------------------------------------------------------------------- mixing
@st.composite
def mixing_cases(draw, *, max_v: int = 200):
    """K models' logits (dtypes may differ), per-model or per-row weights and temperatures,
    normalize, plausibility, and the sampling filters."""
    K = draw(st.integers(1, 3))
    first = draw(logit_rows(max_b=3, max_v=max_v))
    models = [first] + [draw(logit_rows(shape=tuple(first.shape))) for _ in range(K - 1)]
    B, V = first.shape
    weight = st.sampled_from([1.0, 0.5, -1.0, 0.0, 2.0, -0.3])
    if B and draw(st.booleans()):
        weights = torch.tensor([[draw(weight) for _ in range(B)] for _ in range(K)], device=DEVICE)
    else:
        weights = [draw(weight) for _ in range(K)]
    positive = [t for t in TEMPERATURES if t > 0]
    temperature = [draw(st.sampled_from(positive)) for _ in range(K)]
    plausibility = _one_or_rows(draw, B, st.sampled_from([0.0, 0.0, 0.1, 0.5, 1.0]))
    filters = (
        _one_or_rows(draw, B, st.sampled_from([0, 1, 3, V + 1]), integer=True),
        _one_or_rows(draw, B, st.sampled_from([1.0, 0.9, 0.3])),
        _one_or_rows(draw, B, st.sampled_from([0.0, 0.1])),
    )
    return models, weights, temperature, draw(st.booleans()), plausibility, filters


def _checked_mix(models, weights, temperature, normalize, plausibility, filters):
    inputs = mix_inputs(models, weights, normalize, temperature, plausibility, None)
    B, device = inputs.batch, inputs.device
    rows = (per_row_param(filters[0], "top_k", B, device, integer=True),
            per_row_param(filters[1], "top_p", B, device), per_row_param(filters[2], "min_p", B, device))
    return inputs, rows


@given(case=mixing_cases(), seed=st.integers(0, 2**31 - 1))
def test_mixing_ops_equal_reference(case, seed):
    """mk.mix_logits / mk.mix_and_sample on this machine's default backend."""
    models, weights, temperature, normalize, plausibility, filters = case
    inputs, rows = _checked_mix(*case)
    kwargs = dict(normalize=normalize, temperature=temperature, plausibility=plausibility)
    ref = mix_logits_reference(inputs.logits, inputs.weights, normalize, inputs.temperature, inputs.plausibility)
    out = mk.mix_logits(models, weights, **kwargs)
    assert not out.isnan().any()
    assert torch.equal(out > NEG_INF, ref > NEG_INF) and torch.equal(out.isposinf(), ref.isposinf())
    tokens, logprobs = mk.mix_and_sample(models, weights, **kwargs, top_k=filters[0], top_p=filters[1],
                                         min_p=filters[2], return_logprobs=True,
                                         generator=torch.Generator(DEVICE).manual_seed(seed))
    ref_draws = mix_and_sample_reference(inputs.logits, inputs.weights, normalize, inputs.temperature,
                                         inputs.plausibility, *rows, uniform_for(seed, inputs.batch))
    assert_same_draws(tokens, logprobs, *ref_draws)


@settings(max_examples=TRITON_EXAMPLES)
@given(case=mixing_cases(max_v=TRITON_MAX_V), seed=st.integers(0, 2**31 - 1))
def test_triton_mixing_equals_reference(case, seed):
    models, weights, temperature, normalize, plausibility, filters = case
    inputs, rows = _checked_mix(*case)
    if inputs.batch == 0:
        return  # the public ops return before any kernel
    ref = mix_logits_reference(inputs.logits, inputs.weights, normalize, inputs.temperature, inputs.plausibility)
    out = mix_logits_triton(inputs, chunk=TRITON_CHUNK, block=TRITON_BLOCK)
    kept = ref > NEG_INF
    assert torch.equal(out > NEG_INF, kept)
    torch.testing.assert_close(out[kept], ref[kept], rtol=1e-5, atol=1e-4)
    uniform = uniform_for(seed, inputs.batch)
    with small_split_limits():
        tokens, logprobs, _, _ = run_mix_and_sample_triton(inputs, *rows, uniform, chunk=TRITON_CHUNK,
                                                           block=TRITON_BLOCK)
    ref_draws = mix_and_sample_reference(inputs.logits, inputs.weights, normalize, inputs.temperature,
                                         inputs.plausibility, *rows, uniform)
    assert_same_draws(tokens, logprobs, *ref_draws)


@given(B=st.integers(0, 3), T=st.integers(0, 12), window=st.integers(1, 5), gamma=st.sampled_from([0.1, 0.5, 0.8, 1.0, 2.0]),
       seed=st.integers(0, 2**31 - 1))
def test_wsd_switch_point_equals_a_plain_loop(B, T, window, gamma, seed):
    g = torch.Generator().manual_seed(seed)
    lp = torch.log(torch.rand(B, T, generator=g) * 0.6 + 0.4)  # probabilities around gamma
    lengths = torch.randint(0, T + 1, (B,), generator=g)
    got = mk.wsd_switch_point(lp.to(DEVICE), lengths.to(DEVICE), window=window, gamma=gamma).cpu()
    for b in range(B):
        want = int(lengths[b])
        for i in range(window, int(lengths[b]) + 1):
            if math.exp(sum(lp[b, i - window:i].double().tolist()) / window) >= gamma:
                want = i
                break
        assert int(got[b]) == want


# --------------------------------------------------------------------------- braking
@st.composite
def braking_cases(draw):
    rng = random.Random(draw(st.integers(0, 2**31 - 1)))
    V = draw(st.integers(12, 40))  # the logits' width; the class map may be narrower
    V_tab = V - draw(st.integers(0, 3))
    alphabet = rng.sample(range(3, V_tab), 3)
    patterns = [[rng.choice(alphabet) for _ in range(rng.randint(1, 4))] for _ in range(rng.randint(1, 5))]
    brake = [rng.randrange(2, V_tab) for _ in range(rng.randint(0, 3))] + [1]
    tables = MarkerTables.from_token_ids(patterns, [alphabet[0], V_tab - 1], 1, brake, V_tab)
    B = draw(st.sampled_from([0, 1, 3]))

    def trigger(values, integer=False):
        return None if draw(st.booleans()) else _one_or_rows(draw, B, st.sampled_from(values), integer=integer)

    cfg = BrakingConfig(max_thinking_tokens=trigger([-1, 0, 3, 10], True),
                        marker_ratio=trigger([0.0, 0.25, 0.3, 0.5, 1.0, INF]),
                        min_thinking_tokens=draw(st.sampled_from([0, 4, 20])),
                        max_steps=trigger([-1, 1, 3], True),
                        end_think_margin=trigger([-INF, 0.0, 0.5, 3.0]))
    in_think = torch.tensor([draw(st.booleans()) or b == 0 for b in range(B)], dtype=torch.bool)
    steps = [[rng.choice(alphabet + [-1, 1, 2, V - 1, V + 5]) for _ in range(B)] for _ in range(draw(st.integers(1, 25)))]
    return tables, cfg, in_think, steps, V


@given(case=braking_cases(), dtype=st.sampled_from(DTYPES), seed=st.integers(0, 2**31 - 1))
def test_braking_step_equals_reference(case, dtype, seed):
    """Random tables, token streams (outside the tables, negative, end_think) and triggers:
    this machine's kernel and the reference agree on the state and the logits every step."""
    tables, cfg, in_think, steps, V = case
    tables = tables.to(DEVICE)
    B = in_think.shape[0]
    g = torch.Generator().manual_seed(seed)
    want, got = BrakingState.new(B, DEVICE, in_think.to(DEVICE)), BrakingState.new(B, DEVICE, in_think.to(DEVICE))
    for tokens in steps:
        logits = (torch.randn(B, V, generator=g) * 3).to(dtype).to(DEVICE)
        last = torch.tensor(tokens, dtype=torch.int64, device=DEVICE) if B else torch.empty(0, dtype=torch.int64)
        ref_logits = logits.clone()
        braking_step(logits, last, got, tables, cfg)
        if B:
            braking_step_reference(ref_logits, last, want.counters, want.flags, tables.packed, tables.layout,
                                   cfg.normalised(B, torch.device(DEVICE)))
        assert torch.equal(logits, ref_logits)
        assert torch.equal(got.counters, want.counters) and torch.equal(got.flags, want.flags)


@given(case=braking_cases(), field=st.sampled_from(["ac_state", "delim_state", "brake_pos"]),
       value=st.sampled_from([-1, 3, 10**6, 2**62]))
def test_out_of_range_state_raises_on_every_backend(case, field, value):
    """A state value no table row has raises ValueError naming it (never a crash)."""
    tables, cfg, in_think, _, V = case
    B = in_think.shape[0]
    if B == 0:
        return
    state = BrakingState.new(B, DEVICE, torch.ones(B, dtype=torch.bool, device=DEVICE))
    state.braking.fill_(field == "brake_pos")
    column = getattr(state, field)
    column.fill_(value)
    limit = {"ac_state": tables.num_states, "delim_state": 3, "brake_pos": tables.brake_ids.numel()}[field]
    if 0 <= value < limit:
        return
    for backend in [b for b in mk.available_backends(DEVICE) if b in ("reference", "cpp", "cuda")]:
        os.environ["MTA_BACKEND"] = backend
        try:
            with pytest.raises(ValueError, match=field):
                braking_step(torch.zeros(B, V, device=DEVICE), None, BrakingState(state.counters.clone(),
                             state.flags.clone()), tables.to(DEVICE), cfg)
        finally:
            del os.environ["MTA_BACKEND"]


# --------------------------------------------------------------------------- log-probabilities
@st.composite
def logprob_cases(draw, max_v: int = 120):
    N = draw(st.sampled_from([0, 1, 2, 5]))
    V = draw(st.integers(1, max_v))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    dtype = draw(st.sampled_from(DTYPES))
    logits = torch.randn(N, V, generator=g) * draw(st.sampled_from([0.1, 1.0, 10.0, 100.0]))
    if N and draw(st.booleans()):
        # The ops take finite logits (documented): a masked token is a very negative one.
        logits[0, draw(st.integers(0, V - 1))] = -1e4
    targets = torch.randint(0, V, (N,), generator=g)
    if N > 1 and draw(st.booleans()):
        targets[1] = mk.logprobs.IGNORE_INDEX
    return (logits.to(dtype).to(DEVICE), targets.to(DEVICE), draw(st.sampled_from([0.05, 0.7, 1.0, 3.0])),
            draw(st.booleans()))


def _close(a, b, **tol):
    assert torch.equal(a.isneginf(), b.isneginf()) and not a.isnan().any()
    finite = a.isfinite()
    torch.testing.assert_close(a[finite], b[finite], **tol)


@given(case=logprob_cases())
def test_token_logprobs_equals_reference(case):
    logits, targets, temperature, entropy = case
    out = mk.token_logprobs(logits, targets, temperature=temperature, return_entropy=entropy)
    ref = token_logprobs_reference(logits, targets, temperature=temperature, return_entropy=entropy)
    for a, b in zip(*(((o,) if not entropy else o) for o in (out, ref))):
        _close(a, b, rtol=1e-5, atol=1e-5)


@settings(max_examples=TRITON_EXAMPLES)
@given(case=logprob_cases(max_v=TRITON_MAX_V))
def test_triton_token_logprobs_equals_reference(case):
    logits, targets, temperature, entropy = case
    if logits.shape[0] == 0:
        return  # the public op returns before any kernel
    out = token_logprobs_triton(logits, targets, temperature, entropy, block=TRITON_BLOCK)
    ref = token_logprobs_reference(logits, targets, temperature=temperature, return_entropy=entropy)
    for a, b in zip(*(((o,) if not entropy else o) for o in (out, ref))):
        _close(a, b, rtol=1e-4, atol=1e-4)


@given(N=st.sampled_from([0, 1, 3, 7]), H=st.integers(1, 12), V=st.integers(1, 60), chunk=st.integers(1, 8),
       vchunk=st.integers(1, 70), bias=st.booleans(), entropy=st.booleans(), seed=st.integers(0, 2**31 - 1))
def test_linear_token_logprobs_equals_reference(N, H, V, chunk, vchunk, bias, entropy, seed):
    """The chunked linear form (any token and vocabulary chunking) equals the full logits."""
    g = torch.Generator().manual_seed(seed)
    hidden, weight = torch.randn(N, H, generator=g).to(DEVICE), torch.randn(V, H, generator=g).to(DEVICE)
    b = torch.randn(V, generator=g).to(DEVICE) if bias else None
    targets = torch.randint(0, V, (N,), generator=g).to(DEVICE)
    out = mk.linear_token_logprobs(hidden, weight, targets, bias=b, return_entropy=entropy, chunk_size=chunk,
                                   vocab_chunk_size=vchunk)
    ref = linear_token_logprobs_reference(hidden, weight, targets, bias=b, return_entropy=entropy)
    for a, r in zip(*(((o,) if not entropy else o) for o in (out, ref))):
        torch.testing.assert_close(a, r, rtol=1e-4, atol=1e-4)


# --------------------------------------------------------------------------- RL
@given(B=st.integers(0, 4), G=st.integers(2, 9), mode=st.sampled_from(["grpo", "drgrpo", "rloo"]),
       kind=st.sampled_from(["binary", "normal", "equal", "int"]), seed=st.integers(0, 2**31 - 1))
def test_group_advantages_follow_their_formulas(B, G, mode, kind, seed):
    g = torch.Generator().manual_seed(seed)
    rewards = {"binary": lambda: torch.randint(0, 2, (B, G), generator=g).float(),
               "normal": lambda: torch.randn(B, G, generator=g) * 3,
               "equal": lambda: torch.full((B, G), 0.7),
               "int": lambda: torch.randint(-3, 4, (B, G), generator=g)}[kind]()
    out = mk.group_advantages(rewards.to(DEVICE), mode=mode).cpu()
    if B == 0:
        assert out.shape == (0, G)
        return
    r = rewards.double()
    centred = r - r.mean(dim=1, keepdim=True)
    want = {"grpo": lambda: centred / (r.std(dim=1, keepdim=True) + 1e-6),
            "drgrpo": lambda: centred, "rloo": lambda: centred * G / (G - 1)}[mode]()
    equal = (r == r[:, :1]).all(dim=1)
    want[equal] = 0.0
    assert not out.isnan().any()
    torch.testing.assert_close(out.double(), want, rtol=1e-5, atol=1e-5)


@given(n=st.integers(1, 60), data=st.data())
def test_pass_at_k_equals_exact_fractions(n, data):
    c = data.draw(st.integers(0, n))
    k = data.draw(st.integers(1, n))
    exact = 1 - Fraction(math.comb(n - c, k), math.comb(n, k))
    assert math.isclose(mk.pass_at_k(n, c, k), float(exact), rel_tol=1e-12, abs_tol=1e-15)
    as_tensor = pass_at_k_reference(torch.tensor([n]), torch.tensor([c]), torch.tensor([k]))
    assert math.isclose(float(as_tensor[0]), float(exact), rel_tol=1e-12, abs_tol=1e-15)


@st.composite
def policy_cases(draw):
    B, T = draw(st.integers(1, 4)), draw(st.integers(1, 20))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    old = -torch.rand(B, T, generator=g) * 3
    logprobs = old + torch.randn(B, T, generator=g) * draw(st.sampled_from([0.0, 0.05, 0.5, 30.0]))
    advantages = torch.randn(B, T if draw(st.booleans()) else 1, generator=g).expand(B, T).contiguous()
    mask = torch.rand(B, T, generator=g) < draw(st.sampled_from([0.0, 0.5, 1.0]))
    agg = draw(st.sampled_from(["token-mean", "seq-mean-token-sum", "seq-mean-token-mean"]))
    dual = draw(st.sampled_from([None, 1.5, 3.0]))
    clip = (draw(st.sampled_from([0.0, 0.2])), draw(st.sampled_from([0.2, 0.28])))
    return logprobs, old, advantages, mask, clip, dual, agg


def _policy_loss_equals_reference(case, run) -> None:
    """Loss, stats and the gradient of ``run`` (the reference's arguments) against autograd
    through the reference."""
    logprobs, old, advantages, mask, (lo, hi), dual, agg = case
    args = [t.to(DEVICE) for t in (logprobs, old, advantages, mask)]
    a = args[0].clone().requires_grad_(True)
    b = args[0].clone().requires_grad_(True)
    loss, stats = run(a, *args[1:], lo, hi, dual, agg)
    ref_loss, ref_stats = policy_loss_reference(b, *args[1:], lo, hi, dual, agg)
    assert torch.isfinite(loss)
    torch.testing.assert_close(loss, ref_loss, rtol=1e-5, atol=1e-6)
    for key in ref_stats:
        torch.testing.assert_close(stats[key], ref_stats[key], rtol=1e-5, atol=1e-6)
    loss.backward()
    ref_loss.backward()
    torch.testing.assert_close(a.grad, b.grad, rtol=1e-5, atol=1e-6)


@settings(max_examples=TRITON_EXAMPLES)
@given(case=policy_cases())
def test_triton_policy_loss_equals_reference(case):
    """The fused kernel (interpreted on a CPU, small tiles)."""
    _policy_loss_equals_reference(case, lambda *args: policy_loss_triton(*args, block=None if DEVICE == "cuda" else 16))


@given(case=policy_cases())
def test_policy_loss_equals_reference(case):
    """The public op (checks, dispatch) on this machine's default backend."""
    _policy_loss_equals_reference(case, lambda lp, old, adv, mask, lo, hi, dual, agg: mk.policy_loss(
        lp, old, adv, mask, clip_low=lo, clip_high=hi, dual_clip=dual, agg=agg))
