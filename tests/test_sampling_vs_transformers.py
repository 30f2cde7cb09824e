"""filter_logits equals transformers' Temperature -> TopK -> TopP -> MinP warper chain."""

import itertools

import pytest
import torch
from transformers.generation.logits_process import (
    LogitsProcessorList,
    MinPLogitsWarper,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

import mta_kernels as mk
from sampling_cases import make_logits, per_row_params


def transformers_chain(logits: torch.Tensor, temperature: float, top_k: int, top_p: float, min_p: float):
    warpers = [TemperatureLogitsWarper(temperature)]
    if top_k > 0:
        warpers.append(TopKLogitsWarper(top_k))
    if top_p < 1.0:
        warpers.append(TopPLogitsWarper(top_p))
    if min_p > 0.0:
        warpers.append(MinPLogitsWarper(min_p))
    return LogitsProcessorList(warpers)(None, logits.float().clone())


def assert_same_filter(ours: torch.Tensor, theirs: torch.Tensor) -> None:
    kept = torch.isfinite(ours)
    assert torch.equal(kept, torch.isfinite(theirs)), (kept.sum(1), torch.isfinite(theirs).sum(1))
    torch.testing.assert_close(ours[kept], theirs[kept], rtol=0, atol=0)


@pytest.mark.parametrize("backend", ["default", "reference"])
@pytest.mark.parametrize("kind", ["normal1", "normal5", "gumbel"])
@pytest.mark.parametrize(
    "temperature,top_k,top_p,min_p",
    list(itertools.product([0.3, 0.7, 1.0, 1.5], [0, 1, 20, 300], [1.0, 0.95, 0.5, 0.05], [0.0, 0.1]))[::3],
)
def test_scalar_params_match_transformers(backend, kind, temperature, top_k, top_p, min_p, force_backend):
    if backend != "default":
        force_backend(backend)
    logits = make_logits(6, 1000, kind, seed=top_k + 7)
    ours = mk.filter_logits(logits, temperature, top_k, top_p, min_p)
    assert_same_filter(ours, transformers_chain(logits, temperature, top_k, top_p, min_p))


def test_per_row_params_match_transformers_row_by_row():
    B, V = 24, 777
    logits = make_logits(B, V, "normal5", seed=3)
    temperature, top_k, top_p, min_p = per_row_params(B, V, seed=3)
    temperature[temperature == 0] = 1.0  # transformers has no greedy warper; greedy tested elsewhere
    ours = mk.filter_logits(logits, temperature, top_k, top_p, min_p)
    for b in range(B):
        k = int(top_k[b])
        theirs = transformers_chain(
            logits[b : b + 1], float(temperature[b]), k if 0 < k < V else 0, float(top_p[b]), float(min_p[b])
        )
        assert_same_filter(ours[b : b + 1], theirs)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_logits_match_transformers_on_upcast(dtype):
    logits = make_logits(4, 2000, "normal5", seed=1, dtype=dtype)
    ours = mk.filter_logits(logits, 0.8, 40, 0.9, 0.02)
    assert_same_filter(ours, transformers_chain(logits.float(), 0.8, 40, 0.9, 0.02))
