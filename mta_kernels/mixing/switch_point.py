"""Weak-to-Strong Decoding's switch point: where the base model takes over the draft."""

from __future__ import annotations

import math
from numbers import Integral, Real

import torch

from mta_kernels._validation import check_float_2d, check_row_ints

__all__ = ["wsd_switch_point"]


def wsd_switch_point(
    token_logprobs: torch.Tensor, lengths: torch.Tensor, *, window: int = 6, gamma: float = 0.8
) -> torch.Tensor:
    """The first window of a draft where the base model is confident enough to take over.

    For row ``b``: the smallest ``i`` in ``[window, lengths[b]]`` with
    ``exp(mean(token_logprobs[b, i - window : i])) >= gamma`` (the geometric-mean token
    probability of the last ``window`` draft tokens under the base model), else
    ``lengths[b]`` (keep the whole draft). Vectorised, on the tensors' device (checking ``lengths`` is its one host sync).

    Parameters
    ----------
    token_logprobs : Tensor [B, T], float32 / bfloat16 / float16
        The base model's teacher-forced log-probabilities of the draft tokens; entries at or
        past a row's length are ignored. A window holding NaN never reaches ``gamma``.
    lengths : Tensor [B], integer
        Draft tokens per row, in ``[0, T]``.
    window : int
        ``w >= 1`` (the paper: 6).
    gamma : float
        ``γ > 0`` (the paper: 0.8); above 1 no window can reach it.

    Returns
    -------
    Tensor [B] int64

    Examples
    --------
    >>> import math, torch, mta_kernels as mk
    >>> lp = torch.log(torch.tensor([[0.5, 0.9, 0.9, 0.9, 0.1]]))
    >>> mk.wsd_switch_point(lp, torch.tensor([5]), window=2, gamma=0.85)
    tensor([3])
    """
    token_logprobs = check_float_2d(token_logprobs, "token_logprobs", "[B, T]")
    B, T = token_logprobs.shape
    lengths = check_row_ints(lengths, "lengths", B, token_logprobs.device, "token_logprobs")
    if isinstance(window, bool) or not isinstance(window, Integral) or window < 1:
        raise ValueError(f"window must be an int >= 1, got {window!r}")
    if isinstance(gamma, bool) or not isinstance(gamma, Real) or not (gamma > 0 and math.isfinite(gamma)):
        raise ValueError(f"gamma must be a finite number > 0, got {gamma!r}")
    if B and bool(((lengths < 0) | (lengths > T)).any()):  # one sync per draft, not per token
        raise ValueError(f"lengths must be in [0, T={T}], got values from {int(lengths.min())} to {int(lengths.max())}")
    window = int(window)
    if T < window or B == 0:
        return lengths.clone()
    # Window sums in fp64 (exact for any realistic T): window ending at i = w..T is column i - w.
    lp = token_logprobs.double()
    sums = lp.unfold(1, window, 1).sum(dim=-1)  # [B, T - w + 1]
    ends = torch.arange(window, T + 1, device=lp.device)
    reached = (torch.exp(sums / window) >= gamma) & (ends.unsqueeze(0) <= lengths.unsqueeze(1))
    first = torch.where(reached, ends.unsqueeze(0), T + 1).min(dim=1).values
    return torch.where(first <= T, first, lengths)
