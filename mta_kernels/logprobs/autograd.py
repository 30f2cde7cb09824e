"""What the autograd Functions of ``token_triton.py`` and ``linear_chunked.py`` share."""

from __future__ import annotations

import torch

from mta_kernels.logprobs.reference import logp_from_stats

__all__ = ["finish_forward"]


def finish_forward(ctx, zt: torch.Tensor, lse: torch.Tensor, ent: torch.Tensor | None, targets: torch.Tensor,
                   want_entropy: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """The last forward step of both Functions: ``logp`` from the row stats, and the second
    output, the entropy or, without it, ``zt`` marked non-differentiable (a Function returns a
    fixed number of outputs; the public API drops that one). Gradients are not materialised:
    backward gets None for an output nothing depends on."""
    logp = logp_from_stats(zt, lse, targets)
    ctx.set_materialize_grads(False)
    if want_entropy:
        return logp, ent
    ctx.mark_non_differentiable(zt)
    return logp, zt  # second output unused
