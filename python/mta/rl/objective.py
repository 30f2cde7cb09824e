"""The loss of one micro-batch: advantages, PSR / NSR selection, clipped surrogate, KL.

* Advantages: :func:`mta_kernels.group_advantages` per group (GRPO / Dr. GRPO / RLOO), one
  per sequence.
* PSR / NSR (positive / negative sample reinforcement): only the samples with a positive
  (``psr``) or negative (``nsr``) advantage keep it; ``weighted`` scales the positive ones by
  λ (W-REINFORCE). For 0/1 rewards in a mixed group this is the paper's split on the reward
  (its verl ``compute_psr_outcome_advantage`` keeps ``score > 0``, NSR ``score < 1``).
* Policy loss: :func:`mta_kernels.policy_loss` (DAPO clip-higher, optional dual clip,
  verl's aggregation modes).
* KL to the frozen reference: k1 = log π − log π_ref, or k3 = e^(ref−π) − (ref−π) − 1
  (verl's ``low_var_kl``, clamped to [−10, 10]), aggregated as the policy loss.

A mini-batch is split into micro-batches whose gradients accumulate: each micro-batch's
loss is scaled by its share of the mini-batch's normaliser (its masked tokens for
token-mean, its sequences for the seq-mean modes), so the summed gradient equals that of
the whole mini-batch's loss.
"""

from __future__ import annotations

import torch

import mta_kernels as mk
from mta.rl.config import RLConfig

__all__ = ["aggregate", "kl_penalty", "micro_batch_loss", "sample_advantages", "share"]


def sample_advantages(rewards: torch.Tensor, cfg: RLConfig) -> torch.Tensor:
    """Advantages [K * G] of ``rewards`` [K, G] under ``cfg.advantage`` and ``cfg.objective``."""
    adv = mk.group_advantages(rewards, mode=cfg.advantage).reshape(-1)
    if cfg.objective == "psr":
        adv = torch.where(adv > 0, adv, 0.0)
    elif cfg.objective == "nsr":
        adv = torch.where(adv < 0, adv, 0.0)
    elif cfg.objective == "weighted":
        adv = torch.where(adv > 0, cfg.psr_weight * adv, adv)
    return adv


def kl_penalty(logp: torch.Tensor, ref_logp: torch.Tensor, estimator: str) -> torch.Tensor:
    """Per-token KL estimate of the policy from the reference (k1 or k3)."""
    if estimator == "k1":
        return logp - ref_logp
    log_ratio = (ref_logp - logp).clamp(-20.0, 20.0)
    return (torch.exp(log_ratio) - log_ratio - 1.0).clamp(-10.0, 10.0)


def aggregate(x: torch.Tensor, mask: torch.Tensor, agg: str) -> torch.Tensor:
    """verl's ``agg_loss`` of ``x`` [B, R] over ``mask`` (empty normalisers count as 1)."""
    m = mask.to(x.dtype)
    x = torch.where(mask, x, 0.0)
    if agg == "token-mean":
        return (x * m).sum() / m.sum().clamp(min=1.0)
    per_seq = (x * m).sum(-1)
    if agg == "seq-mean-token-mean":
        per_seq = per_seq / m.sum(-1).clamp(min=1.0)
    return per_seq.mean() if per_seq.numel() else x.sum()


def share(mask: torch.Tensor, total_mask: torch.Tensor, agg: str) -> float:
    """This micro-batch's share of the mini-batch normaliser (see the module docstring)."""
    if agg == "token-mean":
        total = int(total_mask.sum())
        return int(mask.sum()) / total if total else 0.0
    return mask.shape[0] / max(total_mask.shape[0], 1)


def micro_batch_loss(logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor,
                     ref_logp: torch.Tensor | None, cfg: RLConfig) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The micro-batch's loss (not yet scaled by its share) and its detached statistics."""
    pg_loss, stats = mk.policy_loss(logp, old_logp, advantages, mask, clip_low=cfg.clip_low,
                                    clip_high=cfg.clip_high, dual_clip=cfg.dual_clip, agg=cfg.loss_agg)
    stats = dict(stats, pg_loss=pg_loss.detach())
    loss = pg_loss
    if ref_logp is not None:
        kl = aggregate(kl_penalty(logp, ref_logp, cfg.kl_estimator), mask, cfg.loss_agg)
        loss = loss + cfg.kl_coef * kl
        stats["kl_ref"] = kl.detach()
    return loss, stats
