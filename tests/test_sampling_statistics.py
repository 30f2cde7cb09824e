"""sample draws from softmax(filter_logits(...)): chi-square, support, reproducibility."""

import pytest
import torch
from scipy.stats import chisquare

import mta_kernels as mk
from conftest import DEVICE
from mta_kernels._validation import sampling_rows
from mta_kernels.sampling.reference import filter_logits_reference
from sampling_cases import make_logits

DRAWS = 40_000
# The Triton kernels on the CPU run through the interpreter, one row after another at tens
# of milliseconds each: fewer draws, so fewer tokens reach the 5 expected draws a
# chi-square bin needs (the rest are pooled into one bin).
INTERPRETED_DRAWS = 200
MIN_EXPECTED = 5.0


def reference_probs(row, temperature, top_k, top_p, min_p):
    """The filtered softmax of ``row`` [1, V] from the torch reference, fp64 on the CPU."""
    params = sampling_rows(temperature, top_k, top_p, min_p, 1, row.device)
    return torch.softmax(filter_logits_reference(row, *params)[0].double(), dim=0).cpu()


def chisquare_pvalue(counts, expected):
    """Chi-square p-value of ``counts`` against ``expected`` (same total), with the bins
    expected below MIN_EXPECTED pooled into one; 1.0 when fewer than two bins remain."""
    small = expected < MIN_EXPECTED
    counts = torch.cat([counts[~small], counts[small].sum().reshape(1)])
    expected = torch.cat([expected[~small], expected[small].sum().reshape(1)])
    nonempty = expected > 0
    if int(nonempty.sum()) < 2:
        return 1.0
    return chisquare(counts[nonempty].numpy(), expected[nonempty].numpy()).pvalue


@pytest.mark.parametrize("backend", mk.available_backends(DEVICE))
@pytest.mark.parametrize(
    "kind,temperature,top_k,top_p,min_p",
    [
        ("normal1", 1.0, 0, 1.0, 0.0),
        ("normal5", 0.7, 10, 0.9, 0.0),
        ("gumbel", 1.3, 0, 0.8, 0.05),
        ("normal1", 0.5, 15, 1.0, 0.2),
    ],
)
def test_empirical_distribution_matches_filtered_softmax(backend, kind, temperature, top_k, top_p, min_p, force_backend):
    force_backend(backend)
    V = 30
    draws = INTERPRETED_DRAWS if backend == "triton" and DEVICE == "cpu" else DRAWS
    row = make_logits(1, V, kind, seed=top_k + 1, device=DEVICE)
    logits = row.expand(draws, V).contiguous()
    gen = torch.Generator(DEVICE).manual_seed(1234)
    tokens = mk.sample(logits, temperature, top_k, top_p, min_p, generator=gen)
    probs = reference_probs(row, temperature, top_k, top_p, min_p)
    counts = torch.bincount(tokens.cpu(), minlength=V).double()
    kept = probs > 0
    assert counts[~kept].sum() == 0, "drew a removed token"
    pvalue = chisquare_pvalue(counts[kept], probs[kept] * draws)
    assert pvalue > 1e-4, (pvalue, counts[kept].tolist(), (probs[kept] * draws).tolist())


def test_logprobs_are_those_of_the_processed_distribution():
    logits = make_logits(8, 500, "normal5", seed=7, device=DEVICE)
    tokens, logprobs = mk.sample(logits, 0.8, 30, 0.9, return_logprobs=True, generator=torch.Generator(DEVICE).manual_seed(0))
    expected = torch.log_softmax(mk.filter_logits(logits, 0.8, 30, 0.9), dim=1).gather(1, tokens[:, None])[:, 0]
    torch.testing.assert_close(logprobs, expected, rtol=1e-5, atol=1e-5)


def test_seeded_generator_is_reproducible_and_seeds_differ():
    logits = make_logits(16, 1000, "normal1", seed=0, device=DEVICE)

    def draw(seed):
        return mk.sample(logits, 1.0, generator=torch.Generator(DEVICE).manual_seed(seed))

    assert torch.equal(draw(5), draw(5))
    assert not torch.equal(draw(5), draw(6))


def test_per_row_temperature_zero_is_greedy_other_rows_sample():
    logits = make_logits(2, 50, "normal1", seed=1, device=DEVICE).repeat(500, 1)
    temperature = torch.tensor([0.0, 1.0], device=DEVICE).repeat(500)
    tokens = mk.sample(logits, temperature, generator=torch.Generator(DEVICE).manual_seed(0))
    assert (tokens[0::2] == logits[0].argmax()).all()
    assert tokens[1::2].unique().numel() > 10
