"""Pure-torch reference for the mixing ops: the CPU ``mix_logits``, the oracle of every
kernel and the "torch reference" baseline of the benchmarks.

Functions here take *normalised* inputs: a list of K ``[B, V]`` logits on one device
(already cut to the shared vocabulary), ``weights`` and ``temperature`` as ``[K, B]`` fp32,
``plausibility`` as ``[B]`` fp32. The public API in ``mta_kernels.mixing`` builds them.

Semantics shared by every backend
---------------------------------
* A logit reads as fp32 with NaN as ``-inf`` and ``+inf`` as the largest finite fp32.
* ``f_k = log_softmax(logits_k / T_k)`` if ``normalize``, computed as ``(x - max) / T_k``
  minus its log-sum-exp, so a tiny ``T_k`` gives 0 at the max and ``-inf`` elsewhere (the
  limit) instead of overflowing; else ``f_k = logits_k / T_k``, saturating at the fp32
  range. ``-inf`` stays ``-inf``.
* ``s = Σ_k w_k · f_k`` over the models with ``w_k != 0`` (a weight-0 model is ignored,
  even where its logit is ``-inf``); a NaN sum (``+inf - inf``) counts as ``-inf``.
* plausibility ``α > 0``: tokens with ``x_0 < max(x_0) + T_0 · log α`` (probability under
  model 0 below ``α`` times its max) become ``-inf``; written without dividing by ``T_0``.
* ``mix_and_sample`` draws from the same mixture up to a per-row shift (which no cut and
  no softmax sees): ``s' = Σ_k w_k · (T_min / T_k) · x_k``, the scores times ``T_min``, the
  row's smallest temperature, sampled exactly as :func:`mta_kernels.sample` at temperature
  ``T_min`` with the row's top-k / top-p / min-p (one uniform per row, inverse CDF). Nothing
  is divided by a tiny ``T_k`` on the way, and the sampler's rule makes a row whose
  ``max(s') / T_min`` overflows greedy: the limit of vanishing temperatures is the argmax
  of ``s'`` (of ``Σ w_k x_k`` when the temperatures are equal).
"""

from __future__ import annotations

import torch

from mta_kernels.sampling.reference import sample_reference

__all__ = ["clean_logits", "factored_mixture", "mix_and_sample_reference", "mix_logits_reference", "scaled_logits"]

_NEG_INF = float("-inf")
FP32_MAX = torch.finfo(torch.float32).max
# Plausibility below the smallest normal fp32 counts as that: log() of it is then the same
# on every backend (GPU math may flush subnormals to zero).
FP32_TINY = torch.finfo(torch.float32).tiny


def clean_logits(logits: torch.Tensor) -> torch.Tensor:
    """A model's logits as the mixture reads them: fp32, NaN as -inf, +inf as the fp32 max."""
    return logits.float().nan_to_num(nan=_NEG_INF, posinf=FP32_MAX, neginf=_NEG_INF)


def scaled_logits(logits: torch.Tensor, temperature: torch.Tensor) -> torch.Tensor:
    """``z = logits / T`` in fp32, saturating at the fp32 range; ``temperature`` is [B]."""
    x = clean_logits(logits)
    z = (x / temperature.unsqueeze(1)).clamp(-FP32_MAX, FP32_MAX)
    # + 0.0 folds -0.0 into +0.0, as the sampling kernels do.
    return torch.where(x == _NEG_INF, _NEG_INF, z) + 0.0


def _log_softmax_scaled(x: torch.Tensor, temperature: torch.Tensor) -> torch.Tensor:
    """``log_softmax(x / T)`` of cleaned logits as ``(x - max) / T - log Σ exp((x - max) / T)``:
    nothing overflows at a tiny T; ``-inf`` kept, an all ``-inf`` row left all ``-inf``."""
    m = x.max(dim=1, keepdim=True).values
    d = (x - torch.where(m > _NEG_INF, m, 0.0)) / temperature.unsqueeze(1)
    lse = torch.log(torch.exp(d).sum(dim=1, keepdim=True))
    return torch.where(x > _NEG_INF, d - lse, _NEG_INF)


def _plausible(logits0: torch.Tensor, temperature0: torch.Tensor, plausibility: torch.Tensor,
               s: torch.Tensor) -> torch.Tensor:
    """``s`` with the tokens below model 0's plausibility threshold removed."""
    x0 = clean_logits(logits0)
    alpha = plausibility.unsqueeze(1)
    threshold = x0.max(dim=1, keepdim=True).values + temperature0.unsqueeze(1) * torch.log(alpha.clamp_min(FP32_TINY))
    return torch.where((alpha <= 0) | (x0 >= threshold), s, _NEG_INF)


def mix_logits_reference(
    logits: list[torch.Tensor],
    weights: torch.Tensor,
    normalize: bool,
    temperature: torch.Tensor,
    plausibility: torch.Tensor,
) -> torch.Tensor:
    """The mixed scores ``s`` [B, V] fp32 (removed tokens ``-inf``)."""
    B, V = logits[0].shape
    s = torch.zeros((B, V), dtype=torch.float32, device=logits[0].device)
    for k, x in enumerate(logits):
        f = _log_softmax_scaled(clean_logits(x), temperature[k]) if normalize else scaled_logits(x, temperature[k])
        w = weights[k].unsqueeze(1)
        s = s + torch.where(w == 0, 0.0, w * f)
    s = torch.where(s.isnan(), _NEG_INF, s)
    return _plausible(logits[0], temperature[0], plausibility, s)


def factored_mixture(
    logits: list[torch.Tensor], weights: torch.Tensor, temperature: torch.Tensor, plausibility: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(s' [B, V], T_min [B])``: what ``mix_and_sample`` samples, ``s' / T_min`` (rules above).

    Each term is ``w_k * ((T_min / T_k) * x_k)`` in fp32, summed in model order: the fused
    kernels compute it in the same order, so every backend draws the same token."""
    B, V = logits[0].shape
    t_min = temperature.amin(dim=0)
    s = torch.zeros((B, V), dtype=torch.float32, device=logits[0].device)
    for k, x in enumerate(logits):
        w = weights[k].unsqueeze(1)
        f = (t_min / temperature[k]).unsqueeze(1) * clean_logits(x)
        s = s + torch.where(w == 0, 0.0, w * f)
    s = torch.where(s.isnan(), _NEG_INF, s)
    return _plausible(logits[0], temperature[0], plausibility, s), t_min


def mix_and_sample_reference(
    logits: list[torch.Tensor],
    weights: torch.Tensor,
    normalize: bool,
    temperature: torch.Tensor,
    plausibility: torch.Tensor,
    top_k: torch.Tensor,
    top_p: torch.Tensor,
    min_p: torch.Tensor,
    uniform: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Tokens [B] int64 and logprobs [B] fp32: :func:`sample_reference` on the mixture
    (``s'`` at temperature ``T_min``, :func:`factored_mixture`; ``normalize`` shifts every
    row by a constant, so it does not change the draw)."""
    mixed, t_min = factored_mixture(logits, weights, temperature, plausibility)
    return sample_reference(mixed, t_min, top_k, top_p, min_p, uniform)
