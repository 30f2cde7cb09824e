"""The mixing benchmark family on tiny shapes: rows, markdown and plot come out, and the
implementations it times agree with each other."""

import contextlib
import dataclasses

import pytest
import torch

import mta_kernels as mk
from benchmarks import bench_mixing, harness, run


@pytest.fixture
def tiny(monkeypatch):
    monkeypatch.setattr(bench_mixing, "VOCABS", (1000,))
    monkeypatch.setattr(bench_mixing, "BATCHES", (1, 4))
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)  # interpreted Triton would dominate


def test_mixing_family(tmp_path, tiny):
    result = run.main(["--family", "mixing", "--quick", "--out", str(tmp_path)])
    rows = result["rows"]
    impls = {r["impl"] for r in rows}
    assert {bench_mixing.FLOOR, bench_mixing.TORCH_PATH, "torch reference"} <= impls
    assert {(r["K"], r["V"], r["B"], r["dtype"]) for r in rows} == {(3, 1000, 1, "fp32"), (3, 1000, 4, "fp32")}
    assert {r["recipe"] for r in rows} == {"proxy-tuning", "contrastive"}
    assert all(r["median_us"] > 0 and r["vs_torch"] > 0 and r["x_floor"] > 0 for r in rows)
    assert all(r["vs_torch"] == 1.0 for r in rows if r["impl"] == bench_mixing.TORCH_PATH)
    assert all(r["x_floor"] == 1.0 for r in rows if r["impl"] == bench_mixing.FLOOR)
    md = (tmp_path / "results.md").read_text()
    assert "## mixing" in md and "| 3 | 1000 | 4 | fp32 |" in md and "vs torch path" in md
    assert (tmp_path / "mixing.png").stat().st_size > 1000


def test_full_grid():
    full = bench_mixing.cases("full")
    assert len(full) == 2 * 2 * 4 * 2 * 2  # K x V x B x dtype x recipe
    assert {c.K for c in full} == {2, 3} and all(len(c.weights) == c.K for c in full)
    quick = bench_mixing.cases("quick")
    assert {(c.K, c.V, c.dtype) for c in quick} == {(3, 151936, "fp32")} and {c.B for c in quick} == {1, 8}


def _tokens(fn, backend, generator):
    generator.manual_seed(1)
    with harness.forced_backend(backend) if backend else contextlib.nullcontext():
        return fn()


@pytest.mark.parametrize("K", [3, 2])
@pytest.mark.parametrize("recipe", bench_mixing.RECIPES, ids=lambda r: r.name)
def test_implementations_agree(monkeypatch, device, recipe, K):
    if K == 2:  # K = 3 keeps TRITON_INTERPRET (conftest, CPU only): the Triton row checked too
        monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    case = bench_mixing.Case(K, 1000, 16, "fp32", recipe)
    generator = torch.Generator(device=device)
    generator.manual_seed(0)
    logits = bench_mixing.make_logits(case, torch.device(device), generator)
    impls = bench_mixing.implementations(case, logits, generator)
    backends = {name: backend for name, backend, _ in impls if backend}
    assert "torch reference" in backends
    assert set(backends.values()) == set(mk.available_backends(device)) & {"triton", "cpp", "reference"}
    tokens = {name: _tokens(fn, backend, generator) for name, backend, fn in impls}

    # Every backend draws the same token as the reference from the same generator state.
    for name in backends:
        assert torch.equal(tokens[name], tokens["torch reference"]), name

    # The torch path samples differently (exponential race) but from the same kept set.
    r = recipe
    mixed = mk.mix_logits(logits, list(case.weights), normalize=r.normalize, plausibility=r.plausibility)
    kept = mk.filter_logits(mixed, 1.0, r.top_k, r.top_p, r.min_p) > -float("inf")
    for name, t in tokens.items():
        assert kept.gather(1, t.view(-1, 1)).all(), name


@pytest.mark.parametrize("recipe", bench_mixing.RECIPES, ids=lambda r: r.name)
def test_greedy_torch_path_matches(tiny, device, recipe):
    """With top_k=1 every implementation, the torch path included, picks the same token."""
    case = bench_mixing.Case(3, 1000, 16, "fp32", dataclasses.replace(recipe, top_k=1))
    generator = torch.Generator(device=device).manual_seed(0)
    logits = bench_mixing.make_logits(case, torch.device(device), generator)
    tokens = [_tokens(fn, backend, generator) for _, backend, fn in bench_mixing.implementations(case, logits, generator)]
    for t in tokens[1:]:
        assert torch.equal(t, tokens[0])
