"""Pure-torch reference for the mixing ops: the CPU ``mix_logits``, the oracle of every
kernel and the "torch reference" baseline of the benchmarks.

Functions here take *normalised* inputs: a list of K ``[B, V]`` logits on one device
(already cut to the shared vocabulary), ``weights`` and ``temperature`` as ``[K, B]`` fp32,
``plausibility`` as ``[B]`` fp32. The public API in ``mta_kernels.mixing`` builds them.

Semantics shared by every backend
---------------------------------
* ``z_k = logits_k / T_k`` in fp32; NaN counts as ``-inf``; finite values that overflow
  (tiny ``T_k``) and ``+inf`` saturate at the largest finite fp32, so a row's max is
  finite or ``-inf`` (an all ``-inf`` model).
* ``f_k = log_softmax(z_k)`` if ``normalize`` else ``z_k``; ``-inf`` stays ``-inf``.
* ``s = Σ_k w_k · f_k`` over the models with ``w_k != 0`` (a weight-0 model is ignored,
  even where its logit is ``-inf``); a NaN sum (``+inf - inf``) counts as ``-inf``.
* plausibility ``α > 0``: tokens with ``z_0 < max(z_0) + log α`` (probability under model 0
  below ``α`` times its max) become ``-inf``.
* ``mix_and_sample`` samples ``s`` exactly as :func:`mta_kernels.sample` at temperature 1
  with the row's top-k / top-p / min-p: one uniform per row, inverse CDF.
"""

from __future__ import annotations

import torch

from mta_kernels.sampling.reference import sample_reference

__all__ = ["mix_and_sample_reference", "mix_logits_reference", "scaled_logits"]

_NEG_INF = float("-inf")
FP32_MAX = torch.finfo(torch.float32).max
# Plausibility below the smallest normal fp32 counts as that: log() of it is then the same
# on every backend (GPU math may flush subnormals to zero).
FP32_TINY = torch.finfo(torch.float32).tiny


def scaled_logits(logits: torch.Tensor, temperature: torch.Tensor) -> torch.Tensor:
    """``z = logits / T`` in fp32 per the rules above; ``temperature`` is [B]."""
    x = logits.float().nan_to_num(nan=_NEG_INF, posinf=FP32_MAX, neginf=_NEG_INF)
    z = (x / temperature.unsqueeze(1)).clamp(-FP32_MAX, FP32_MAX)
    # + 0.0 folds -0.0 into +0.0, as the sampling kernels do.
    return torch.where(x == _NEG_INF, _NEG_INF, z) + 0.0


def _log_softmax(z: torch.Tensor) -> torch.Tensor:
    """log_softmax with ``-inf`` kept and an all ``-inf`` row left all ``-inf``."""
    m = z.max(dim=1, keepdim=True).values
    safe_m = torch.where(m > _NEG_INF, m, 0.0)
    lse = safe_m + torch.log(torch.exp(z - safe_m).sum(dim=1, keepdim=True))
    return torch.where(z > _NEG_INF, z - lse, _NEG_INF)


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
    z0 = None
    for k, x in enumerate(logits):
        z = scaled_logits(x, temperature[k])
        if k == 0:
            z0 = z
        f = _log_softmax(z) if normalize else z
        w = weights[k].unsqueeze(1)
        s = s + torch.where(w == 0, 0.0, w * f)
    s = torch.where(s.isnan(), _NEG_INF, s)
    alpha = plausibility.unsqueeze(1)
    m0 = z0.max(dim=1, keepdim=True).values
    plausible = z0 >= m0 + torch.log(alpha.clamp_min(FP32_TINY))
    return torch.where((alpha <= 0) | plausible, s, _NEG_INF)


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
    """Tokens [B] int64 and logprobs [B] fp32: :func:`sample_reference` on the mixture."""
    mixed = mix_logits_reference(logits, weights, normalize, temperature, plausibility)
    ones = torch.ones(mixed.shape[0], dtype=torch.float32, device=mixed.device)
    return sample_reference(mixed, ones, top_k, top_p, min_p, uniform)
