"""Per-step sampling parameters inside the fused path (``mta.generate(schedule=...)``).

Each schedule is checked against a step-by-step reference loop: every row run without a
cache on its whole unpadded sequence, the parameters computed row by row in plain Python
from the formula, then one ``mk.sample`` call per step with the same seeded generator — so
the fused path must produce the same tokens and the same per-step parameters.
"""

import math

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import mta_kernels as mk
from mta.generation.engine import generate
from mta.generation.params import sampling_params
from mta.generation.sampler import ScheduledSampler
from mta.inference.schedules import Annealing, Compose, EntropyAdaptiveTemperature, Piecewise, SwitchOnToken
from mta.models import tiny_random_model

V = 256
PROMPTS = [[0, 5, 6, 7, 8, 9, 10], [0, 20, 21], [0, 30, 31, 32]]  # different lengths: left padding
STEPS = 10


@pytest.fixture(scope="module")
def model():
    return tiny_random_model("llama", vocab_size=V, seed=3, initializer_range=0.05)


@torch.no_grad()
def _row_logits(model, seqs):
    return torch.stack([model(torch.tensor([s])).logits[0, -1] for s in seqs])


def _entropy_row(logits_row):
    p = torch.softmax(logits_row.double(), -1)
    return float(-(p[p > 0] * p[p > 0].log()).sum())


def reference(model, prompts, n, params_at, base, seed, steps=STEPS):
    """The loop the fused path must equal: ``params_at(step, b, logits_row, tokens_so_far_b)``
    gives row b's (temperature, top_p, min_p) from plain Python."""
    g = torch.Generator().manual_seed(seed)
    seqs = [list(p) for p in prompts for _ in range(n)]
    gen = [[] for _ in seqs]
    used = []
    for step in range(steps):
        logits = _row_logits(model, seqs)
        rows = [params_at(step, b, logits[b], gen[b], base) for b in range(len(seqs))]
        t, p, m = (torch.tensor([r[i] for r in rows], dtype=torch.float32) for i in range(3))
        tokens = mk.sample(logits, temperature=t, top_p=p, min_p=m, generator=g)
        used.append(rows)
        for b, tok in enumerate(tokens.tolist()):
            seqs[b].append(tok)
            gen[b].append(tok)
    return gen, used


def _fused(model, schedule, n=2, seed=0, **params):
    out = generate(model, None, PROMPTS, n=n, max_new_tokens=STEPS, eos_token_id=[], seed=seed, progress=False,
                   schedule=schedule, **params)
    return out.token_ids, out.extras["schedule"]


def _check(fused, trace, ref, used):
    assert fused == ref
    for name, i in (("temperature", 0), ("top_p", 1), ("min_p", 2)):
        want = torch.tensor([[r[i] for r in rows] for rows in used], dtype=torch.float32)
        torch.testing.assert_close(trace[name], want, rtol=1e-5, atol=1e-6)


def test_entropy_adaptive_temperature_equals_reference(model):
    theta, base_n = 0.8, 0.6

    def at(step, b, logits_row, gen, base):
        h = _entropy_row(logits_row)
        return (0.9 * base_n ** (theta / h), 0.95, 0.0)

    ref, used = reference(model, PROMPTS, 2, at, None, seed=1)
    fused, trace = _fused(model, EntropyAdaptiveTemperature(theta, base_n), seed=1, temperature=0.9, top_p=0.95)
    _check(fused, trace, ref, used)
    temps = trace["temperature"]
    assert temps.min() < 0.9 * 0.99 and (temps < 0.9).all()  # adaptive: below T0, and not one value
    assert len(set(temps.flatten().tolist())) > STEPS


def test_per_prompt_t0_and_clamp(model):
    """EDT's T0 defaults to each row's own temperature (per prompt here); the clamp holds."""
    def at(step, b, logits_row, gen, base):
        t0 = [1.2, 0.5, 0.8][b // 2]
        return (min(max(t0 * 0.8 ** (0.3 / _entropy_row(logits_row)), 0.3), 1.0), 1.0, 0.05)

    ref, used = reference(model, PROMPTS, 2, at, None, seed=2)
    sched = EntropyAdaptiveTemperature(0.3, 0.8, min_temperature=0.3, max_temperature=1.0)
    fused, trace = _fused(model, sched, seed=2, temperature=[1.2, 0.5, 0.8], min_p=0.05)
    _check(fused, trace, ref, used)


@pytest.mark.parametrize("shape", ["linear", "cosine", "exponential"])
def test_annealing_equals_reference(model, shape):
    start = torch.tensor([1.5, 1.5, 1.0, 1.0, 0.7, 0.7])  # per row
    end, steps = 0.2, 6

    def at(step, b, logits_row, gen, base):
        s = min(step, steps) / steps
        a = float(start[b])
        if shape == "linear":
            t = a + (end - a) * s
        elif shape == "cosine":
            t = a + (end - a) * (1 - math.cos(math.pi * s)) / 2
        else:
            t = a * (end / a) ** s
        return (t, 1.0, 0.0)

    ref, used = reference(model, PROMPTS, 2, at, None, seed=3)
    fused, trace = _fused(model, Annealing(start, end, steps, shape=shape), seed=3)
    _check(fused, trace, ref, used)


def test_piecewise_per_row_changes_mid_generation(model):
    changes = [[(0, 1.3), (4, 0.0)], [(2, 0.4)], [(0, 0.9), (3, 1.1), (7, 0.0)]]

    def at(step, b, logits_row, gen, base):
        t = 0.8  # the call's own temperature until a row's first change
        for s, v in changes[b]:
            if s <= step:
                t = v
        return (t, 1.0, 0.0)

    ref, used = reference(model, PROMPTS, 1, at, None, seed=4)
    fused, trace = _fused(model, Piecewise("temperature", changes), n=1, seed=4, temperature=0.8)
    _check(fused, trace, ref, used)
    # after its switch to 0, row 0 is greedy: every later token is the argmax of the reference logits
    assert trace["temperature"][4:, 0].eq(0).all()


def test_switch_on_token_per_row_state(model):
    triggers = list(range(0, V, 3))

    def at(step, b, logits_row, gen, base):
        switched = any(t in triggers for t in gen)  # any earlier token of this row
        return (0.0, 1.0, 0.0) if switched else (1.4, 0.9, 0.0)

    ref, used = reference(model, PROMPTS, 2, at, None, seed=5)
    sched = SwitchOnToken(triggers, after={"temperature": 0.0, "top_p": 1.0}, before={"top_p": 0.9})
    fused, trace = _fused(model, sched, seed=5, temperature=1.4)
    _check(fused, trace, ref, used)
    first = [next((s for s in range(STEPS) if trace["temperature"][s, b] == 0), None) for b in range(6)]
    assert len(set(first)) > 1  # rows switched at different steps


def test_compose_entropy_temperature_with_annealed_top_p(model):
    def at(step, b, logits_row, gen, base):
        return (1.0 * 0.8 ** (0.5 / _entropy_row(logits_row)), 1.0 + (0.5 - 1.0) * min(step, 5) / 5, 0.0)

    ref, used = reference(model, PROMPTS, 2, at, None, seed=6)
    sched = Compose(EntropyAdaptiveTemperature(0.5, 0.8), Annealing(1.0, 0.5, 5, param="top_p"))
    fused, trace = _fused(model, sched, seed=6)
    _check(fused, trace, ref, used)


class _CountSyncs(TorchDispatchMode):
    """Counts the ops that copy a device value to the host (.item(), bool(tensor), ...)."""

    SYNCING = ("aten::_local_scalar_dense", "aten::is_nonzero", "aten::item", "aten::equal")

    def __init__(self):
        super().__init__()
        self.syncs = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func._schema.name in self.SYNCING:
            self.syncs.append(func._schema.name)
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("schedule", [
    EntropyAdaptiveTemperature(0.5),
    Annealing(torch.tensor([1.0, 0.5, 0.9, 0.7]), 0.1, 3),
    Piecewise("min_p", [[(0, 0.0), (2, 0.1)]]),
    SwitchOnToken([1, 2, 3], after={"temperature": 0.0}),
], ids=["edt", "anneal", "piecewise", "switch"])
def test_schedule_step_reads_nothing_back_to_the_host(schedule):
    B = 4
    sampler = ScheduledSampler(sampling_params(B, 1, torch.device("cpu"), temperature=0.8, top_k=0, top_p=0.9,
                                               min_p=0.0), B, torch.device("cpu"), schedule, max_new_tokens=4)
    logits = torch.randn(B, 64, generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(0)
    with _CountSyncs() as mode:
        for _ in range(4):
            tokens, _ = sampler.sample(logits, g)
            sampler.advance(tokens)
    assert mode.syncs == []


def test_keep_rows_follows_rows_and_state():
    """Dropping finished rows (row compaction) keeps each surviving row's schedule."""
    B = 4
    changes = [[(0, 1.0), (2, 0.0)], [(0, 0.6)], [(1, 0.3)], [(0, 0.9), (1, 0.2)]]
    sampler = ScheduledSampler(sampling_params(B, 1, torch.device("cpu"), temperature=0.5, top_k=0, top_p=1.0,
                                               min_p=0.0), B, torch.device("cpu"),
                               Compose(Piecewise("temperature", changes), SwitchOnToken([7], after={"min_p": 0.5})),
                               max_new_tokens=4)
    logits = torch.randn(B, 32)
    sampler.sample(logits, None)
    sampler.advance(torch.tensor([7, 0, 0, 7]))
    sampler.keep_rows(torch.tensor([1, 3]))
    sampler.sample(logits[[1, 3]], None)
    sampler.advance(torch.tensor([0, 0]))
    sampler.sample(logits[[1, 3]], None)
    trace = sampler.trace()
    assert trace["temperature"][:, 1].tolist() == pytest.approx([0.6, 0.6, 0.6])
    assert trace["temperature"][:, 3].tolist() == pytest.approx([0.9, 0.2, 0.2])
    assert trace["min_p"][:, 3].tolist() == pytest.approx([0.0, 0.5, 0.5])  # its switch survived the drop
    assert trace["min_p"][:, 1].tolist() == [0.0, 0.0, 0.0]
    assert trace["temperature"][2:, 0].tolist() == [0.0]  # dropped rows stay zero from the drop on


def test_values_are_clamped_and_nan_keeps_the_call_value(model):
    def wild(ctx):
        B = ctx.rows.shape[0]
        t = torch.full((B,), -1.0)
        t[0] = float("nan")
        return {"temperature": t, "top_p": 2.0, "min_p": torch.full((B,), 7.0)}

    out = generate(model, None, PROMPTS[:2], max_new_tokens=3, eos_token_id=[], seed=0, progress=False,
                   temperature=0.6, schedule=wild)
    trace = out.extras["schedule"]
    assert trace["temperature"][:, 0].tolist() == pytest.approx([0.6] * 3)
    assert trace["temperature"][:, 1].tolist() == [0.0] * 3
    assert trace["top_p"].eq(1.0).all() and trace["min_p"].eq(1.0).all()


def test_bad_schedules_raise_naming_the_problem(model):
    run = dict(max_new_tokens=2, eos_token_id=[], progress=False)
    with pytest.raises(TypeError, match="schedule"):
        generate(model, None, PROMPTS[:1], schedule=42, **run)
    with pytest.raises(ValueError, match="'tempreature'"):
        generate(model, None, PROMPTS[:1], schedule=lambda ctx: {"tempreature": 1.0}, **run)
    with pytest.raises(ValueError, match="shape"):
        generate(model, None, PROMPTS[:1], schedule=lambda ctx: {"temperature": torch.ones(5)}, **run)
    from mta.mixing import Mixing, weighted_ensemble

    with pytest.raises(ValueError, match="mixing"):
        generate(model, None, PROMPTS[:1], schedule=EntropyAdaptiveTemperature(),
                 mixing=Mixing(model, weighted_ensemble([0.5, 0.5])), **run)
    with pytest.raises(ValueError, match="rows"):
        generate(model, None, PROMPTS, schedule=Piecewise("temperature", [[(0, 1.0)], [(1, 0.5)]]), **run)
    with pytest.raises(ValueError, match="theta"):
        EntropyAdaptiveTemperature(theta=0)
    with pytest.raises(ValueError, match="base"):
        EntropyAdaptiveTemperature(base=1.5)
    with pytest.raises(ValueError, match="steps"):
        Annealing(1.0, 0.1, 0)
    with pytest.raises(ValueError, match="param"):
        Annealing(1.0, 0.1, 3, param="top_z")
    with pytest.raises(ValueError, match="exponential"):
        Annealing(0.0, 0.1, 3, shape="exponential")
    with pytest.raises(ValueError, match="changes"):
        Piecewise("temperature", [[(-1, 0.5)]])
    with pytest.raises(ValueError, match="token_ids"):
        SwitchOnToken([], after={"temperature": 0.0})
    with pytest.raises(ValueError, match="param"):
        SwitchOnToken([1], after={"temp": 0.0})
