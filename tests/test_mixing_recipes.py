"""Mixing recipes: each equal to its paper's formula written out in torch, and argument errors."""

import dataclasses
import math

import pytest
import torch

from mta_kernels.mixing.recipes import (
    MixRecipe,
    classifier_free_guidance,
    contrastive_decoding,
    proxy_tuning,
    weighted_ensemble,
)

B, V = 4, 97


def _logits(seed: int, scale: float = 2.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, V, generator=g) * scale


def _lp(x: torch.Tensor) -> torch.Tensor:
    return torch.log_softmax(x.float(), dim=-1)


def _check_mixture(got: torch.Tensor, want: torch.Tensor) -> None:
    assert got.dtype == torch.float32 and got.shape == want.shape
    assert torch.equal(got.isinf(), want.isinf())
    finite = want.isfinite()
    # fp32 log_softmax of |logits| ~ 10: the backends sum in different orders.
    torch.testing.assert_close(got[finite], want[finite], rtol=1e-5, atol=1e-5)


def _check_sampling(recipe: MixRecipe, logits: list[torch.Tensor], want: torch.Tensor) -> None:
    """Greedy (top_k=1) is the formula's argmax; a sampled token's logprob is its log_softmax."""
    assert torch.equal(recipe.sample(logits, top_k=1), want.argmax(-1))
    tokens, lp = recipe.sample(logits, generator=torch.Generator().manual_seed(0), return_logprobs=True)
    expected = _lp(want).gather(1, tokens.unsqueeze(1)).squeeze(1)
    torch.testing.assert_close(lp, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.0, 2.0])
def test_proxy_tuning_is_base_plus_alpha_expert_minus_anti_expert_on_raw_logits(alpha):
    base, expert, anti = _logits(0), _logits(1), _logits(2)
    recipe = proxy_tuning(alpha)
    assert recipe.weights == (1.0, alpha, -alpha) and recipe.normalize is False
    assert recipe.roles == ("base", "expert", "anti_expert")
    want = base + alpha * (expert - anti)  # raw logits, no log-softmax
    _check_mixture(recipe.mix([base, expert, anti]), want)
    _check_mixture(recipe.mix(torch.stack([base, expert, anti])), want)  # [K, B, V] form
    _check_sampling(recipe, [base, expert, anti], want)


@pytest.mark.parametrize("beta", [0.5, 1.0])
def test_contrastive_decoding_with_adaptive_plausibility(beta):
    expert, amateur = _logits(3, scale=3.0), _logits(4, scale=3.0)
    recipe = contrastive_decoding(beta=beta)
    assert recipe.weights == (1.0, -beta) and recipe.normalize and recipe.plausibility == 0.1
    p = torch.softmax(expert, -1)
    plausible = p >= 0.1 * p.max(-1, keepdim=True).values  # V_head of the paper, α = 0.1
    assert 1 < plausible.sum(-1).min() and plausible.sum(-1).max() < V  # the cut removes some, not all
    want = torch.where(plausible, _lp(expert) - beta * _lp(amateur), -math.inf)
    got = recipe.mix([expert, amateur])
    _check_mixture(got, want)
    assert torch.equal(got.isfinite(), plausible)  # exactly the implausible tokens removed
    _check_sampling(recipe, [expert, amateur], want)


def test_contrastive_decoding_plausibility_off_and_amateur_temperature():
    expert, amateur = _logits(5), _logits(6)
    recipe = contrastive_decoding(beta=1.0, plausibility=0.0)
    _check_mixture(recipe.mix([expert, amateur]), _lp(expert) - _lp(amateur))
    tempered = dataclasses.replace(recipe, temperature=(1.0, 0.5))  # the paper's amateur temperature
    _check_mixture(tempered.mix([expert, amateur]), _lp(expert) - _lp(amateur / 0.5))


@pytest.mark.parametrize("scale", [1.0, 1.5, 3.0])
def test_classifier_free_guidance(scale):
    cond, uncond = _logits(7), _logits(8)
    recipe = classifier_free_guidance(scale)
    assert recipe.weights == (scale, 1.0 - scale) and recipe.normalize and recipe.plausibility == 0.0
    want = _lp(uncond) + scale * (_lp(cond) - _lp(uncond))
    _check_mixture(recipe.mix([cond, uncond]), want)
    _check_sampling(recipe, [cond, uncond], want)
    if scale == 1.0:  # γ = 1: plain conditional decoding
        assert torch.equal(recipe.sample([cond, uncond], top_k=1), cond.argmax(-1))


def test_weighted_ensemble_of_three_in_bf16_and_fp32():
    models = [_logits(9), _logits(10).bfloat16(), _logits(11)]
    weights = [0.5, 0.3, -0.2]
    recipe = weighted_ensemble(weights)
    assert recipe.weights == (0.5, 0.3, -0.2) and recipe.normalize
    want = sum(w * _lp(x) for w, x in zip(weights, models))
    _check_mixture(recipe.mix(models), want)
    _check_sampling(recipe, models, want)


def test_vocab_size_cuts_wider_logits():
    a, b = _logits(12), torch.cat([_logits(13), torch.full((B, 7), 50.0)], dim=1)  # padded embedding rows
    recipe = weighted_ensemble([1.0, 1.0])
    with pytest.raises(ValueError, match="vocabularies differ.*vocab_size"):
        recipe.mix([a, b])
    _check_mixture(recipe.mix([a, b], vocab_size=V), _lp(a) + _lp(b[:, :V]))


def test_recipe_is_frozen_hashable_and_normalises_its_fields():
    r = MixRecipe(weights=[1, -0.5], normalize=True, plausibility=0, temperature=[1, 2])
    assert r.weights == (1.0, -0.5) and r.temperature == (1.0, 2.0) and r.plausibility == 0.0
    assert r.num_models == 2 and hash(r) == hash(MixRecipe((1.0, -0.5), True, 0.0, (1.0, 2.0)))
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.plausibility = 0.5
    assert proxy_tuning().describe_models() == "3 models (base, expert, anti_expert)"


@pytest.mark.parametrize(
    "make, error, match",
    [
        (lambda: proxy_tuning(-1.0), ValueError, "alpha must be a finite number >= 0"),
        (lambda: proxy_tuning(float("nan")), ValueError, "alpha"),
        (lambda: proxy_tuning("1"), TypeError, "alpha must be a number"),
        (lambda: proxy_tuning(True), TypeError, "alpha"),
        (lambda: contrastive_decoding(beta=-0.1), ValueError, "beta"),
        (lambda: contrastive_decoding(plausibility=1.5), ValueError, r"plausibility must be in \[0, 1\]"),
        (lambda: contrastive_decoding(plausibility=-0.1), ValueError, "plausibility"),
        (lambda: classifier_free_guidance(float("inf")), ValueError, "scale"),
        (lambda: classifier_free_guidance(-1), ValueError, "scale"),
        (lambda: weighted_ensemble([]), ValueError, "weights is empty"),
        (lambda: weighted_ensemble([1.0, float("nan")]), ValueError, r"weights\[1\]"),
        (lambda: weighted_ensemble(2.0), TypeError, "weights must be a sequence"),
        (lambda: weighted_ensemble("ab"), TypeError, "weights must be a sequence"),
        (lambda: MixRecipe((1.0,), normalize=1), TypeError, "normalize must be a bool"),
        (lambda: MixRecipe((1.0, 1.0), True, temperature=0.0), ValueError, "temperature must be a finite number > 0"),
        (lambda: MixRecipe((1.0, 1.0), True, temperature=(1.0,)), ValueError, "temperature has 1 values"),
        (lambda: MixRecipe((1.0, 1.0), True, temperature=(1.0, -1.0)), ValueError, r"temperature\[1\]"),
        (lambda: MixRecipe((1.0, 1.0), True, roles=("a",)), ValueError, "roles must be 2 strings"),
    ],
)
def test_argument_errors_name_the_argument(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_wrong_number_of_models_names_the_roles():
    base, expert = _logits(0), _logits(1)
    with pytest.raises(ValueError, match=r"mixes 3 models \(base, expert, anti_expert\), got logits of 2"):
        proxy_tuning().mix([base, expert])
    with pytest.raises(ValueError, match="mixes 2 models"):
        classifier_free_guidance().sample(torch.stack([base, expert, base]), top_k=1)
