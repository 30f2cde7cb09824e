"""RL ops: group advantages (GRPO / Dr. GRPO / RLOO), the PPO/DAPO policy loss, pass@k.

Three layers: this module (checks + dispatch) -> the Triton kernel in
``triton_kernels.py`` (``policy_loss`` on CUDA) -> the torch reference in ``reference.py``
(the CPU path, the test oracle and the benchmark baseline).

``group_advantages`` and ``pass_at_k`` are small torch computations with one
implementation on every device; they ignore ``MTA_BACKEND``.
"""

from __future__ import annotations

import math
from numbers import Integral

import torch

from mta_kernels._validation import NON_NEGATIVE, Interval, check_number, check_tensor, is_integer_dtype
from mta_kernels.rl.ops import POLICY_LOSS
from mta_kernels.rl.reference import (
    AGG_MODES,
    group_advantages_reference,
    pass_at_k_reference,
    policy_loss_reference,
)

__all__ = [
    "AGG_MODES",
    "ADVANTAGE_MODES",
    "group_advantages",
    "policy_loss",
    "pass_at_k",
    "group_advantages_reference",
    "policy_loss_reference",
    "pass_at_k_reference",
]

ADVANTAGE_MODES = ("grpo", "drgrpo", "rloo")
_LOGPROB_DTYPES = (torch.float32, torch.bfloat16, torch.float16)

# Intervals of the policy-loss knobs (errors name the argument).
_CLIP_LOW = Interval(0.0, 1.0)
_DUAL_CLIP = Interval(1.0, math.inf, lo_open=True)
_LOG_RATIO_CLAMP = Interval(0.0, math.inf, lo_open=True)


def _real_dtype(t: torch.Tensor, name: str) -> None:
    if t.dtype.is_complex or not (t.dtype.is_floating_point or t.dtype == torch.bool or is_integer_dtype(t.dtype)):
        raise TypeError(f"{name} must be a real (bool, integer or floating) tensor, got {t.dtype}")


# ---------------------------------------------------------------------------------------
# group_advantages
# ---------------------------------------------------------------------------------------


def group_advantages(rewards: torch.Tensor, *, mode: str = "grpo", eps: float = 1e-6) -> torch.Tensor:
    """Advantages of G sampled responses per prompt, normalised within each group.

    Parameters
    ----------
    rewards : Tensor [B, G]
        One row per prompt, one column per sampled response; any real dtype (bool and
        integer rewards are fine). G must be at least 2.
    mode : {"grpo", "drgrpo", "rloo"}
        * ``"grpo"``: ``(r - mean) / (std + eps)`` with the *unbiased* std, as verl's
          ``compute_grpo_outcome_advantage`` (``eps=1e-6``). TRL's ``GRPOTrainer`` is
          ``mode="grpo", eps=1e-4`` (its ``.std(dim=1)`` is unbiased as well).
        * ``"drgrpo"``: ``r - mean`` (Dr. GRPO; verl ``norm_adv_by_std_in_grpo=False``,
          TRL ``scale_rewards=False``/``"none"``).
        * ``"rloo"``: ``r`` minus the mean of the other ``G - 1`` rewards, which equals
          ``G / (G - 1) * (r - mean)`` (verl ``compute_rloo_outcome_advantage``).
    eps : float
        Added to the std in ``"grpo"`` mode; ``>= 0``.

    Returns
    -------
    Tensor [B, G] float32
        Computed in fp64, rounded once. A group whose rewards are all equal (DAPO drops
        such groups) gets exact zeros in every mode, never NaN, even with ``eps=0``.

    Raises
    ------
    ValueError
        ``rewards`` not 2-D, G < 2, unknown ``mode``, negative ``eps``.

    Examples
    --------
    >>> import torch, mta_kernels.rl as rl
    >>> rl.group_advantages(torch.tensor([[1.0, 0.0, 0.0, 1.0]]), mode="drgrpo")
    tensor([[ 0.5000, -0.5000, -0.5000,  0.5000]])
    """
    rewards = check_tensor(rewards, "rewards")
    if rewards.dim() != 2:
        raise ValueError(f"rewards must have shape [B, G], got shape {tuple(rewards.shape)}")
    _real_dtype(rewards, "rewards")
    if rewards.shape[1] < 2:
        raise ValueError(
            f"rewards needs a group size G >= 2 to form a baseline, got shape {tuple(rewards.shape)}"
        )
    if mode not in ADVANTAGE_MODES:
        raise ValueError(f"mode must be one of {ADVANTAGE_MODES}, got {mode!r}")
    eps = check_number(eps, "eps", NON_NEGATIVE)
    return group_advantages_reference(rewards, mode, eps)


# ---------------------------------------------------------------------------------------
# policy_loss
# ---------------------------------------------------------------------------------------


def _check_policy_inputs(logprobs, old_logprobs, advantages, mask):
    logprobs = check_tensor(logprobs, "logprobs")
    if logprobs.dim() != 2:
        raise ValueError(f"logprobs must have shape [B, T], got shape {tuple(logprobs.shape)}")
    B, T = logprobs.shape
    if logprobs.dtype not in _LOGPROB_DTYPES:
        raise TypeError(f"logprobs must be float32, bfloat16 or float16, got {logprobs.dtype}")
    old_logprobs = check_tensor(old_logprobs, "old_logprobs")
    if old_logprobs.shape != logprobs.shape:
        raise ValueError(
            f"old_logprobs must have the shape of logprobs {tuple(logprobs.shape)}, got {tuple(old_logprobs.shape)}"
        )
    if old_logprobs.dtype not in _LOGPROB_DTYPES:
        raise TypeError(f"old_logprobs must be float32, bfloat16 or float16, got {old_logprobs.dtype}")
    advantages = check_tensor(advantages, "advantages")
    if advantages.dim() == 2 and advantages.shape[1] == 1 and T != 1:
        advantages = advantages[:, 0]
    if not (advantages.shape == (B,) or advantages.shape == (B, T)):
        raise ValueError(
            f"advantages must have shape [B] or [B, T] with B={B}, T={T}, got {tuple(advantages.shape)}"
        )
    if not advantages.dtype.is_floating_point:
        raise TypeError(f"advantages must be a floating-point tensor, got {advantages.dtype}")
    mask = check_tensor(mask, "mask")
    if mask.shape != logprobs.shape:
        raise ValueError(f"mask must have the shape of logprobs {tuple(logprobs.shape)}, got {tuple(mask.shape)}")
    if mask.dtype.is_complex:
        raise TypeError(f"mask must be a bool, integer or floating-point tensor, got {mask.dtype}")
    for name, t in (("old_logprobs", old_logprobs), ("advantages", advantages), ("mask", mask)):
        if t.device != logprobs.device:
            raise ValueError(f"{name} is on {t.device} but logprobs are on {logprobs.device}")
    return logprobs, old_logprobs, advantages, mask


def policy_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    clip_low: float = 0.2,
    clip_high: float = 0.28,
    dual_clip: float | None = None,
    agg: str = "token-mean",
    log_ratio_clamp: float | None = 20.0,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """PPO / DAPO clipped surrogate loss with verl's aggregation modes; differentiable.

    Per token, with ``ratio = exp(logprobs - old_logprobs)``::

        pg = max(-A * ratio, -A * clip(ratio, 1 - clip_low, 1 + clip_high))
        pg = min(pg, -A * dual_clip)        if dual_clip is set and A < 0

    the formula of verl's ``compute_policy_loss_vanilla`` (DAPO's clip-higher is
    ``clip_low=0.2, clip_high=0.28``; dual clip is Ye et al. 2020, verl ``clip_ratio_c``).

    On CUDA one Triton kernel computes the loss, the stats *and* ``d loss / d logprobs``
    in a single pass; backward only scales that by the incoming gradient. The gradient
    equals autograd through :func:`policy_loss_reference` (including the half-and-half
    split of ``max``/``min`` at ties). On CPU the reference runs.

    Parameters
    ----------
    logprobs : Tensor [B, T], float32 / bfloat16 / float16
        Token log-probabilities under the current policy (requires grad when training).
        The gradient comes back in this dtype; the math runs in fp32.
    old_logprobs : Tensor [B, T], float32 / bfloat16 / float16
        Under the policy that sampled the tokens. Treated as data: no gradient.
    advantages : Tensor [B] (or [B, 1]) or [B, T], floating
        Per sequence (e.g. from :func:`group_advantages`, flattened) or per token. No gradient.
    mask : Tensor [B, T], bool (or 0/1 integer / floating)
        Which tokens count (response tokens, not prompt or padding). Non-bool values act as
        weights exactly as verl multiplies by its ``response_mask``. Masked-out positions
        never reach the result: NaN/inf padding there is harmless.
    clip_low, clip_high : float
        The ratio is clipped to ``[1 - clip_low, 1 + clip_high]``; ``0 <= clip_low <= 1``,
        ``clip_high >= 0``.
    dual_clip : float, optional
        ``c > 1``: for negative advantages the loss is capped at ``-A * c``. None: off.
    agg : {"token-mean", "seq-mean-token-sum", "seq-mean-token-mean"}
        verl's ``agg_loss``: ``sum(pg * mask) / sum(mask)`` over the whole batch (DAPO);
        the mean over sequences of per-sequence sums; the mean over sequences of
        per-sequence means. Empty normalisers count as 1 (an all-masked sequence adds 0).
    log_ratio_clamp : float or None
        ``logprobs - old_logprobs`` is clamped to ``[-L, L]`` before ``exp`` (verl's
        ``clamp(negative_approx_kl, -20, 20)``; no gradient flows through a clamped token).
        It only matters for ratios beyond ``e**20``; None turns it off (and an overflowing
        ratio then gives inf/NaN, as in TRL).

    Returns
    -------
    loss : Tensor [] float32
    stats : dict of detached Tensor [] float32
        ``clip_fraction``: share of masked tokens where the clipped term is the larger one
        (verl ``pg_clipfrac``); ``approx_kl``: mean over masked tokens of
        ``old_logprobs - logprobs`` (verl ``ppo_kl``); ``dual_clip_fraction``: share where the
        dual clip caps the loss (verl ``pg_clipfrac_lower``; 0 when ``dual_clip`` is None).
        All of them mask-weighted means, with no host synchronisation.

    Examples
    --------
    >>> import torch, mta_kernels.rl as rl
    >>> lp = torch.zeros(2, 3, requires_grad=True)
    >>> loss, stats = rl.policy_loss(lp, torch.zeros(2, 3), torch.tensor([1.0, -1.0]), torch.ones(2, 3, dtype=torch.bool))
    >>> loss.backward(); lp.grad
    tensor([[-0.1667, -0.1667, -0.1667],
            [ 0.1667,  0.1667,  0.1667]])
    """
    logprobs, old_logprobs, advantages, mask = _check_policy_inputs(logprobs, old_logprobs, advantages, mask)
    clip_low = check_number(clip_low, "clip_low", _CLIP_LOW)
    clip_high = check_number(clip_high, "clip_high", NON_NEGATIVE)
    if dual_clip is not None:
        dual_clip = check_number(dual_clip, "dual_clip", _DUAL_CLIP)
    if log_ratio_clamp is not None:
        log_ratio_clamp = check_number(log_ratio_clamp, "log_ratio_clamp", _LOG_RATIO_CLAMP)
    if agg not in AGG_MODES:
        raise ValueError(f"agg must be one of {AGG_MODES}, got {agg!r}")
    args = (clip_low, clip_high, dual_clip, agg, log_ratio_clamp)
    if logprobs.numel() == 0:
        return policy_loss_reference(logprobs, old_logprobs, advantages, mask, *args)
    return POLICY_LOSS.kernel(logprobs.device)(
        logprobs.contiguous(), old_logprobs.contiguous(), advantages.contiguous(), mask.contiguous(), *args
    )


# ---------------------------------------------------------------------------------------
# pass_at_k
# ---------------------------------------------------------------------------------------


def _count(value: object, name: str) -> torch.Tensor | int:
    if isinstance(value, torch.Tensor):
        if not is_integer_dtype(value.dtype):
            raise TypeError(f"{name} must be an int or an integer tensor, got a {value.dtype} tensor")
        if value.numel() and bool((value < 0).any()):
            raise ValueError(f"{name} must be non-negative, got {value.min().item()}")
        return value.to(torch.int64)
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TypeError(f"{name} must be an int or an integer tensor, got {type(value).__name__}")
    if value < 0:
        raise ValueError(f"{name} must be non-negative, got {value}")
    return int(value)


def pass_at_k(
    n: int | torch.Tensor, c: int | torch.Tensor, k: int | torch.Tensor
) -> float | torch.Tensor:
    """Unbiased pass@k estimator ``1 - C(n - c, k) / C(n, k)`` (Chen et al. 2021, Codex).

    The probability that at least one of ``k`` samples drawn without replacement from ``n``
    generations, ``c`` of them correct, is correct. Numerically stable for ``n`` in the
    tens of thousands: the ratio is a product of ``min(c, k)`` factors summed as ``log1p``
    terms in fp64 (see :func:`pass_at_k_reference`); relative error ~1e-15 even when the
    result is tiny.

    Parameters
    ----------
    n, c, k : int or integer Tensor
        Samples, correct samples, budget. Tensors broadcast against each other and against
        ints (one value per problem, say). Need ``0 <= c <= n`` and ``1 <= k <= n``.

    Returns
    -------
    float or Tensor float64
        A Python float when all three are ints, else an fp64 tensor of the broadcast shape.
        ``n - c < k`` gives exactly 1.0; ``c = 0`` gives 0.0.

    Raises
    ------
    TypeError
        A non-integer argument.
    ValueError
        A negative value, ``c > n``, ``k > n`` or ``k < 1`` (naming the argument).

    Examples
    --------
    >>> import mta_kernels.rl as rl
    >>> rl.pass_at_k(10, 3, 1)
    0.3
    >>> rl.pass_at_k(10, 8, 3)
    1.0
    """
    n_, c_, k_ = _count(n, "n"), _count(c, "c"), _count(k, "k")
    tensors = [t for t in (n_, c_, k_) if isinstance(t, torch.Tensor)]
    device = tensors[0].device if tensors else torch.device("cpu")
    try:
        nt, ct, kt = torch.broadcast_tensors(*(torch.as_tensor(v, dtype=torch.int64, device=device)
                                               for v in (n_, c_, k_)))
    except RuntimeError as error:
        raise ValueError(f"n, c and k must broadcast together: {error}") from None
    if nt.numel():
        if bool((kt < 1).any()):
            raise ValueError(f"k must be >= 1, got {kt.min().item()}")
        if bool((ct > nt).any()):
            i = (ct > nt).nonzero()[0].tolist()
            raise ValueError(f"c must be <= n, got c={ct[tuple(i)].item()} > n={nt[tuple(i)].item()}")
        if bool((kt > nt).any()):
            i = (kt > nt).nonzero()[0].tolist()
            raise ValueError(f"k must be <= n, got k={kt[tuple(i)].item()} > n={nt[tuple(i)].item()}")
    out = pass_at_k_reference(nt, ct, kt).reshape(nt.shape)
    return out if tensors else float(out)
