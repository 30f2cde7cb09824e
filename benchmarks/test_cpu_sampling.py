"""CPU sampling timings with pytest-benchmark: ``mk.sample`` against the usual baselines.

Not part of the test suite (it lives outside ``tests/``); run it on purpose::

    pytest benchmarks/test_cpu_sampling.py --benchmark-json=benchmarks/results/local/cpu_sampling.json

``mk.sample`` runs on its default CPU backend (the C++ op when the extension is built,
else the torch reference) unless ``MTA_BACKEND`` forces one; the backend used is stored in
each benchmark's ``extra_info``.
"""

from __future__ import annotations

import os

import pytest
import torch

import mta_kernels as mk
from benchmarks import baselines

B, V = 8, 151936
TEMPERATURE, TOP_K, TOP_P = 0.7, 50, 0.9


@pytest.fixture(scope="module")
def logits() -> torch.Tensor:
    return torch.randn(B, V, generator=torch.Generator().manual_seed(0))


@pytest.fixture
def generator() -> torch.Generator:
    return torch.Generator().manual_seed(0)


def _check(tokens: torch.Tensor) -> None:
    assert tokens.shape == (B,) and tokens.dtype == torch.int64
    assert bool(((tokens >= 0) & (tokens < V)).all())


def test_mk_sample(benchmark, logits, generator):
    benchmark.group = f"sample B={B} V={V} fp32"
    # The sampling op prefers cpp on CPU and falls back to the reference.
    available = mk.available_backends("cpu")
    benchmark.extra_info["backend"] = os.environ.get("MTA_BACKEND") or (
        "cpp" if "cpp" in available else "reference"
    )
    _check(benchmark(
        mk.sample, logits, temperature=TEMPERATURE, top_k=TOP_K, top_p=TOP_P, generator=generator
    ))


def test_transformers_chain(benchmark, logits, generator):
    benchmark.group = f"sample B={B} V={V} fp32"
    processors = baselines.transformers_processors(TEMPERATURE, TOP_K, TOP_P, 0.0)
    _check(benchmark(baselines.transformers_sample, logits, processors, generator=generator))


def test_sort_sampler(benchmark, logits, generator):
    benchmark.group = f"sample B={B} V={V} fp32"

    def row(value: float, dtype: torch.dtype) -> torch.Tensor:
        return torch.full((B,), value, dtype=dtype)

    _check(benchmark(
        baselines.sort_sample, logits, row(TEMPERATURE, torch.float32),
        row(TOP_K, torch.int32), row(TOP_P, torch.float32), generator=generator,
    ))
