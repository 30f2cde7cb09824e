"""Pure-torch reference for the sampling ops.

It is the CPU fallback when the C++ extension is missing, the oracle every kernel is tested
against, and the "torch reference" baseline in the benchmarks. It sorts freely: clarity,
not speed, is its job.

All functions here take *normalised* per-row parameters: ``[B]`` tensors on the logits'
device (``temperature``, ``top_p``, ``min_p`` fp32; ``top_k`` int64). The public API in
``mta_kernels.sampling`` validates user input and builds them.

Semantics shared by every backend
---------------------------------
* ``z = logits / T`` in fp32. NaN logits count as ``-inf`` (never kept, never sampled).
* ``T == 0``: greedy. Only the first argmax of the raw logits is kept, with its raw value.
  A positive ``T`` so small that the row's largest logit, finite, overflows fp32 when
  divided by it (``T = 1e-40``, or logits near ``1e30`` at ``T = 1e-10``) is greedy too: the
  limit ``T -> 0+`` is, and dividing would leave ``+-inf`` where the ranking was. The rule
  reads only the row max, which every kernel finds in its first pass anyway.
* top-k keeps every token ``>=`` the k-th largest value (ties at the cut are all kept, as
  transformers' ``TopKLogitsWarper`` does); ``k <= 0`` or ``k >= V`` is off.
* top-p keeps token ``i`` when the probability mass of tokens with *strictly larger* ``z``
  (softmax over what top-k kept) is below ``top_p``; at least one token stays. This is
  transformers' ``TopPLogitsWarper`` rule, with ties at the cut kept together.
* min-p keeps ``z >= max(z) + log(min_p)``, i.e. ``p >= min_p * p_max``.
* Sampling is inverse-CDF in vocabulary order with one ``U[0, 1)`` draw per row: the first
  token whose running mass exceeds ``u * Z``. Every backend picks the same token from the
  same draw (up to float rounding at a CDF boundary).
* A row with no finite logit stays all ``-inf``; ``sample`` returns token ``-1`` and
  logprob ``-inf`` for it.
"""

from __future__ import annotations

import torch

__all__ = ["filter_logits_reference", "sample_reference"]

_NEG_INF = float("-inf")


def _scaled(logits: torch.Tensor, temperature: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(x, z, greedy)``: the logits in fp32 (NaN as -inf), ``z = x / T`` and the [B] rows
    that are greedy (``T <= 0``, or a finite row max that ``/ T`` overflows), scaled by 1."""
    x = logits.float().nan_to_num(nan=_NEG_INF, posinf=float("inf"), neginf=_NEG_INF)
    x_max = x.amax(dim=1) if x.shape[1] else torch.full_like(temperature, _NEG_INF)
    greedy = ~(temperature > 0) | (x_max.isfinite() & ~(x_max / temperature).isfinite())
    z = x / torch.where(greedy, torch.ones_like(temperature), temperature).unsqueeze(-1)
    return x, z, greedy


def _weights(z: torch.Tensor, row_max: torch.Tensor) -> torch.Tensor:
    """exp(z - max) in fp64, with the max itself weighing 1 even when it is +inf (the
    softmax limit under an extreme temperature is uniform over the +inf entries)."""
    return torch.where(z == row_max, 1.0, torch.exp((z - row_max).double()))


def filter_logits_reference(
    logits: torch.Tensor,
    temperature: torch.Tensor,
    top_k: torch.Tensor,
    top_p: torch.Tensor,
    min_p: torch.Tensor,
) -> torch.Tensor:
    """Temperature -> top-k -> top-p -> min-p, removed entries ``-inf``. Returns [B, V] fp32."""
    B, V = logits.shape
    x, z, greedy = _scaled(logits, temperature)
    if B == 0 or V == 0:
        return z
    sorted_z, _ = torch.sort(z, dim=-1, descending=True)
    row_max = sorted_z[:, 0]
    has_finite = row_max > _NEG_INF

    # top-k: threshold at the k-th largest value.
    k_active = (top_k > 0) & (top_k < V)
    kth = sorted_z.gather(1, (top_k.clamp(1, V) - 1).unsqueeze(1)).squeeze(1)
    thresh_k = torch.where(k_active, kth, torch.full_like(kth, _NEG_INF))

    # top-p over the softmax of what top-k kept, in descending order.
    kept_sorted = torch.where(sorted_z >= thresh_k.unsqueeze(1), sorted_z, _NEG_INF)
    w = torch.where(kept_sorted > _NEG_INF, _weights(kept_sorted, row_max.unsqueeze(1)), 0.0)
    probs = w / w.sum(dim=1, keepdim=True).clamp_min(torch.finfo(torch.float64).tiny)
    mass_before = torch.cumsum(probs, dim=1) - probs
    within = (mass_before < top_p.double().unsqueeze(1)) & (w > 0)
    last_kept = within.sum(dim=1).clamp_min(1) - 1
    cut_p = sorted_z.gather(1, last_kept.unsqueeze(1)).squeeze(1)
    thresh_p = torch.where(top_p < 1, cut_p, torch.full_like(cut_p, _NEG_INF))

    # min-p relative to the max (invariant to renormalisation).
    thresh_min = torch.where(
        min_p > 0, row_max + torch.log(min_p.clamp_min(1e-38)), torch.full_like(row_max, _NEG_INF)
    )

    thresh = torch.maximum(torch.maximum(thresh_k, thresh_p), thresh_min).unsqueeze(1)
    out = torch.where((z >= thresh) & (z > _NEG_INF), z, _NEG_INF)

    if bool(greedy.any()):
        arg = x.argmax(dim=1)
        greedy_row = torch.full_like(x, _NEG_INF).scatter_(1, arg.unsqueeze(1), x.gather(1, arg.unsqueeze(1)))
        greedy_row = torch.where(has_finite.unsqueeze(1), greedy_row, _NEG_INF)
        out = torch.where(greedy.unsqueeze(1), greedy_row, out)
    return out


def sample_reference(
    logits: torch.Tensor,
    temperature: torch.Tensor,
    top_k: torch.Tensor,
    top_p: torch.Tensor,
    min_p: torch.Tensor,
    uniform: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Inverse-CDF draw from ``softmax(filter_logits(...))``. Returns ([B] int64, [B] fp32)."""
    B, V = logits.shape
    if B == 0 or V == 0:
        return (
            torch.full((B,), -1, dtype=torch.int64, device=logits.device),
            torch.full((B,), _NEG_INF, dtype=torch.float32, device=logits.device),
        )
    filtered = filter_logits_reference(logits, temperature, top_k, top_p, min_p)
    row_max = filtered.max(dim=1).values
    has_finite = row_max > _NEG_INF
    w = torch.where(filtered > _NEG_INF, _weights(filtered, row_max.unsqueeze(1)), 0.0)
    cdf = torch.cumsum(w, dim=1)
    total = cdf[:, -1:]
    target = uniform.double().unsqueeze(1) * total
    idx = (cdf <= target).sum(dim=1)
    # Rounding can leave u*Z at or past the last step of the CDF: take the last kept token.
    last_nonzero = (V - 1) - torch.argmax(torch.flip(w > 0, dims=[1]).to(torch.uint8), dim=1)
    idx = torch.minimum(idx, last_nonzero)
    logprob = torch.log(w.gather(1, idx.unsqueeze(1)).squeeze(1)) - torch.log(total.squeeze(1))
    greedy = _scaled(logits, temperature)[2]
    logprob = torch.where(greedy, torch.zeros_like(logprob), logprob).float()
    tokens = torch.where(has_finite, idx, torch.full_like(idx, -1))
    logprob = torch.where(has_finite, logprob, torch.full_like(logprob, _NEG_INF))
    return tokens, logprob
