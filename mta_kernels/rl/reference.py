"""Pure-torch reference for the RL ops: group advantages, the PPO/DAPO policy loss, pass@k.

It is the CPU path, the oracle the Triton kernel is tested against, and the "torch
reference" baseline in the benchmarks. The functions here take *validated* input (the
public API in ``mta_kernels.rl`` checks shapes, dtypes and options first).

Formulas follow verl (``verl/trainer/ppo/core_algos.py``), the trainer DAPO was released
with:

* ``compute_grpo_outcome_advantage``: ``(r - mean) / (std + eps)`` with torch's unbiased
  ``std`` and ``eps = 1e-6``; ``norm_adv_by_std_in_grpo=False`` is Dr. GRPO's ``r - mean``.
  TRL's ``GRPOTrainer`` is the same with ``eps = 1e-4`` (its ``.std(dim=1)`` is unbiased too).
* ``compute_rloo_outcome_advantage``: ``G / (G - 1) * (r - mean)``, which is ``r`` minus the
  mean of the *other* ``G - 1`` rewards.
* ``compute_policy_loss_vanilla``: ``ratio = exp(clamp(logprobs - old, -20, 20))``,
  ``pg = max(-A * ratio, -A * clip(ratio, 1 - clip_low, 1 + clip_high))``; dual clip for
  ``A < 0``: ``min(pg, -A * c)``; ``pg_clipfrac`` / ``ppo_kl`` / ``pg_clipfrac_lower`` stats.
* ``agg_loss``: ``token-mean``, ``seq-mean-token-sum``, ``seq-mean-token-mean``.
"""

from __future__ import annotations

import torch

__all__ = ["group_advantages_reference", "policy_loss_reference", "pass_at_k_reference", "AGG_MODES"]

AGG_MODES = ("token-mean", "seq-mean-token-sum", "seq-mean-token-mean")


def group_advantages_reference(rewards: torch.Tensor, mode: str, eps: float) -> torch.Tensor:
    """Per-group advantages of ``rewards`` [B, G] (G >= 2). Returns [B, G] fp32.

    Computed in fp64 (a reward offset such as 1e6 + small loses nothing) and rounded once.
    A group whose rewards are all equal gets exact zeros in every mode: without the explicit
    zero, ``r - mean`` can be a rounding residue that ``/ (std + eps)`` blows up to O(0.01).
    """
    r = rewards.double()
    B, G = r.shape
    if B == 0:  # std over no rows warns (degrees of freedom <= 0)
        return torch.zeros((0, G), dtype=torch.float32, device=rewards.device)
    mean = r.mean(dim=1, keepdim=True)
    if mode == "grpo":
        adv = (r - mean) / (r.std(dim=1, correction=1, keepdim=True) + eps)
    elif mode == "drgrpo":
        adv = r - mean
    elif mode == "rloo":
        adv = r - (r.sum(dim=1, keepdim=True) - r) / (G - 1)
    else:  # the public API checks the mode; this guards direct callers
        raise ValueError(f"mode must be 'grpo', 'drgrpo' or 'rloo', got {mode!r}")
    same = (r == r[:, :1]).all(dim=1, keepdim=True)
    return torch.where(same, 0.0, adv).float()


def _masked_mean(x: torch.Tensor, mask: torch.Tensor, total: torch.Tensor) -> torch.Tensor:
    return torch.where(mask != 0, x * mask, 0.0).sum() / total


def policy_loss_reference(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip_low: float,
    clip_high: float,
    dual_clip: float | None,
    agg: str,
    log_ratio_clamp: float | None = 20.0,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """PPO/DAPO clipped surrogate, aggregated as verl's ``agg_loss``; differentiable.

    Parameters are as in :func:`mta_kernels.rl.policy_loss`, already validated: ``logprobs``,
    ``old_logprobs`` and ``mask`` [B, T]; ``advantages`` [B] or [B, T]. Everything is
    computed in fp32 (fp64 for fp64 input); the gradient reaches ``logprobs`` through
    autograd.

    Masked tokens (``mask == 0``) are selected out with ``where`` rather than multiplied by
    zero, so NaN/inf padding under a zero mask cannot leak into the loss or the gradient.
    Normalisers with nothing to count (no masked token at all; a sequence without tokens in
    ``seq-mean-token-mean``) count as 1, so those terms are 0 instead of 0/0 — verl divides by
    ``count + 1e-8`` for the same effect.

    Returns
    -------
    loss : Tensor [] fp32 (fp64 for fp64 input)
    stats : dict of Tensor [] (detached)
        ``clip_fraction``, ``approx_kl``, ``dual_clip_fraction``.
    """
    # fp32 math for fp32/bf16/fp16 input; fp64 input stays fp64 (for gradcheck).
    dt = torch.promote_types(logprobs.dtype, torch.float32)
    lp = logprobs.to(dt)
    old = old_logprobs.to(dt)
    A = advantages.to(dt)
    if A.dim() == 1:
        A = A.unsqueeze(1)
    m = mask.to(dt)

    log_ratio = lp - old
    if log_ratio_clamp is not None:
        log_ratio = torch.clamp(log_ratio, -log_ratio_clamp, log_ratio_clamp)
    ratio = torch.exp(log_ratio)
    pg1 = -A * ratio
    pg2 = -A * torch.clamp(ratio, 1.0 - clip_low, 1.0 + clip_high)
    pg = torch.maximum(pg1, pg2)
    clipped = pg2 > pg1
    if dual_clip is not None:
        pg3 = -A * dual_clip
        negative = A < 0
        dual = (pg > pg3) & negative
        pg = torch.where(negative, torch.minimum(pg, pg3), pg)
    else:
        dual = torch.zeros_like(clipped)

    active = m != 0
    loss_mat = torch.where(active, pg * m, 0.0)
    counts = m.sum(dim=1)
    total = m.sum()
    one = torch.ones((), dtype=dt, device=m.device)
    total_d = torch.where(total > 0, total, one)
    if agg == "token-mean":
        loss = loss_mat.sum() / total_d
    elif agg == "seq-mean-token-sum":
        loss = loss_mat.sum(dim=1).mean()
    elif agg == "seq-mean-token-mean":
        loss = (loss_mat.sum(dim=1) / torch.where(counts > 0, counts, one)).mean()
    else:  # the public API checks agg; this guards direct callers
        raise ValueError(f"agg must be one of {AGG_MODES}, got {agg!r}")

    with torch.no_grad():
        stats = {
            "clip_fraction": _masked_mean(clipped.to(dt), m, total_d),
            "approx_kl": _masked_mean(-log_ratio.detach(), m, total_d),
            "dual_clip_fraction": _masked_mean(dual.to(dt), m, total_d),
        }
    return loss, stats


# Elements x terms per chunk of the vectorised product (bounds pass_at_k's memory).
_PASS_AT_K_CHUNK = 1 << 22


def pass_at_k_reference(n: torch.Tensor, c: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Unbiased pass@k ``1 - C(n-c, k) / C(n, k)`` for validated int64 tensors of one shape.

    The ratio is a product of ``min(c, k)`` factors, whichever form is shorter::

        C(n-c, k) / C(n, k) = prod_{i=n-c+1}^{n} (1 - k / i)      (c factors, Codex paper)
                            = prod_{j=0}^{k-1} (1 - c / (n - j))   (k factors)

    summed as ``log1p`` terms in fp64 and finished with ``-expm1``, so a pass@k near 0
    keeps its relative precision (no ``1 - (1 - tiny)`` cancellation) and nothing
    overflows at n in the tens of thousands. ``n - c < k`` gives exactly 1.
    Returns an fp64 tensor of the same shape.
    """
    n, c, k = (t.reshape(-1) for t in (n, c, k))
    out = torch.ones(n.shape, dtype=torch.float64, device=n.device)
    live = (n - c) >= k
    idx = live.nonzero().squeeze(1)
    if idx.numel() == 0:
        return out
    n_l, c_l, k_l = n[idx].double(), c[idx].double(), k[idx].double()
    use_c = c_l <= k_l  # fewer factors in the Codex form
    terms = torch.where(use_c, c_l, k_l).to(torch.int64)
    length = int(terms.max())
    result = torch.empty_like(n_l)
    if length == 0:
        result.zero_()  # c == 0: the product is empty, pass@k = 0
    else:
        step = max(1, _PASS_AT_K_CHUNK // length)
        j = torch.arange(length, dtype=torch.float64, device=n.device)
        for s in range(0, n_l.numel(), step):
            sl = slice(s, s + step)
            nn, cc, kk, uc = n_l[sl, None], c_l[sl, None], k_l[sl, None], use_c[sl, None]
            # Codex form: i = n - c + 1 + j, factor 1 - k / i; k form: factor 1 - c / (n - j).
            x = torch.where(uc, kk / (nn - cc + 1 + j), cc / (nn - j))
            x = torch.where(j < terms[sl, None], x, 0.0)
            result[sl] = -torch.expm1(torch.log1p(-x).sum(dim=1))
    out[idx] = result
    return out
