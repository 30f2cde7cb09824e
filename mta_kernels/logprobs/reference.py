"""Torch references for token log-probabilities and entropy.

``token_logprobs_reference`` is the CPU path of :func:`mta_kernels.logprobs.token_logprobs`,
the test oracle and the benchmark baseline (logits -> log_softmax -> gather, as verl's
``logprobs_from_logits`` and TRL's ``selective_log_softmax``). ``tile_stats_reference`` and
``tile_grad_reference`` are the torch bodies of the two Triton kernels on one tile of a
row block (columns ``[v0, v0 + Vt)`` of the vocabulary); ``linear_token_logprobs`` runs them
per chunk on CPU. ``merge_tile_stats`` and ``logp_from_stats`` turn tile stats into row
results for every backend.

All math is in fp32 whatever the logits dtype; ``z = logits / temperature``.
"""

from __future__ import annotations

import torch

__all__ = [
    "IGNORE_INDEX",
    "token_logprobs_reference",
    "linear_token_logprobs_reference",
    "tile_stats_reference",
    "tile_grad_reference",
    "merge_tile_stats",
    "logp_from_stats",
]

IGNORE_INDEX = -100


def token_logprobs_reference(
    logits: torch.Tensor,
    targets: torch.Tensor,
    *,
    temperature: float = 1.0,
    return_entropy: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """``log_softmax(logits / T)[target]`` (0 where ``target == -100``) and the entropy of
    ``softmax(logits / T)``, both fp32 [N] (fp64 for fp64 logits, for gradcheck),
    differentiable by plain autograd."""
    z = logits.to(torch.promote_types(logits.dtype, torch.float32)) / temperature
    logp_all = torch.log_softmax(z, dim=-1)
    keep = targets != IGNORE_INDEX
    picked = logp_all.gather(-1, torch.where(keep, targets, 0).long().unsqueeze(-1)).squeeze(-1)
    logp = torch.where(keep, picked, torch.zeros_like(picked))
    if not return_entropy:
        return logp
    # Finite logits: p == 0 only where logp_all is a finite (very negative) number, so the
    # product is 0, never 0 * -inf.
    entropy = -(logp_all.exp() * logp_all).sum(-1)
    return logp, entropy


def linear_token_logprobs_reference(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    *,
    bias: torch.Tensor | None = None,
    temperature: float = 1.0,
    return_entropy: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """The naive linear form: materialise ``hidden @ weight.T + bias``, then the reference."""
    logits = hidden @ weight.t()
    if bias is not None:
        logits = logits + bias
    return token_logprobs_reference(logits, targets, temperature=temperature, return_entropy=return_entropy)


def tile_stats_reference(
    x: torch.Tensor, targets: torch.Tensor, v0: int, temperature: float, entropy: bool
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """Per row of the tile ``x`` [n, Vt] (vocabulary columns ``v0 ..``): the logsumexp of
    ``z``, the entropy of ``softmax(z)`` over the tile (None unless ``entropy``) and ``z`` at
    the target when the target falls in the tile (else 0). ``x`` may be overwritten."""
    z = x.float()  # x itself when fp32: the tile is scratch
    if temperature != 1.0:
        z.div_(temperature)
    local = targets.long() - v0
    inside = (local >= 0) & (local < z.shape[1])
    zt = torch.where(inside, z.gather(1, local.clamp(0, z.shape[1] - 1).unsqueeze(1)).squeeze(1), 0.0)
    m = z.amax(1)
    z.sub_(m.unsqueeze(1))  # z - m <= 0
    w = torch.exp(z)
    s = w.sum(1)
    log_s = torch.log(s)
    lse = m + log_s
    ent = None
    if entropy:
        # sum p log p = sum w (z - m) / s - log s
        ent = log_s - w.mul_(z).sum(1) / s
    return lse, ent, zt


def merge_tile_stats(lse_a, ent_a, lse_b, ent_b):
    """Combine (logsumexp, entropy) of two disjoint column sets of the same rows.

    With ``w_k = exp(lse_k - lse)`` the share of tile k, ``H = sum_k w_k (H_k - log w_k)``:
    every term is bounded, unlike ``lse - E[z]``, which cancels catastrophically for
    logits of size 1e4.
    """
    lse = torch.logaddexp(lse_a, lse_b)
    if ent_a is None:
        return lse, None
    la, lb = lse_a - lse, lse_b - lse
    ent = la.exp() * (ent_a - la) + lb.exp() * (ent_b - lb)
    return lse, ent


def logp_from_stats(zt: torch.Tensor, lse: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``log p`` of the target from the merged row stats: ``z_target - lse``, 0 on ignored
    rows (any negative target; a traced caller skips the range check)."""
    return torch.where(targets >= 0, zt - lse, torch.zeros_like(lse))


def tile_grad_reference(
    x: torch.Tensor,
    targets: torch.Tensor,
    v0: int,
    temperature: float,
    lse: torch.Tensor,
    ent: torch.Tensor | None,
    g_logp: torch.Tensor | None,
    g_ent: torch.Tensor | None,
) -> torch.Tensor:
    """d(sum g_logp * logp + g_ent * entropy)/d x on the tile ``x`` [n, Vt], in ``x.dtype``.

    With ``p = softmax(z)`` over the whole row (``lse`` from the forward) and ``T`` the
    temperature: ``dx = [g_logp (onehot - p) - g_ent p (log p + H)] / T``. ``g_logp`` must
    already be 0 on ignored rows. ``x`` may be overwritten.
    """
    z = x.float()  # x itself when fp32: the tile is scratch
    if temperature != 1.0:
        z.div_(temperature)
    logp = z.sub_(lse.unsqueeze(1))  # log p, in place
    p = torch.exp(logp)
    if g_ent is not None:
        acc = logp.add_(ent.unsqueeze(1)).mul_(g_ent.unsqueeze(1))
        if g_logp is not None:
            acc.add_(g_logp.unsqueeze(1))
    else:
        acc = logp.copy_(g_logp.unsqueeze(1).expand_as(logp))
    d = acc.mul_(p).neg_()
    if g_logp is not None:
        local = targets.long() - v0
        inside = (local >= 0) & (local < d.shape[1])
        rows = inside.nonzero().squeeze(1)
        d[rows, local[rows]] += g_logp[rows]
    if temperature != 1.0:
        d.div_(temperature)
    return d if x.dtype == torch.float32 else d.to(x.dtype)
