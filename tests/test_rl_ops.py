"""RL ops: group advantages, the PPO/DAPO policy loss (reference and fused Triton kernel),
pass@k — each against the trainer formula it replaces (verl, TRL, the Codex paper).

The verl and TRL formulas below are transcribed from their sources (verl
``trainer/ppo/core_algos.py``: ``compute_grpo_outcome_advantage``,
``compute_rloo_outcome_advantage``, ``compute_policy_loss_vanilla``, ``agg_loss``,
``verl_F.masked_mean``; TRL ``GRPOTrainer._generate_and_score_completions``), kept literal
(per-sample loops, ``+ 1e-8`` denominators) so that a drift in our ops shows up here.
"""

import math
from collections import defaultdict
from fractions import Fraction

import pytest
import torch

from conftest import DEVICE
from mta_kernels import rl
from mta_kernels.rl import policy_loss_reference
from mta_kernels.rl.triton_kernels import policy_loss_triton

AGGS = list(rl.AGG_MODES)

# ---------------------------------------------------------------------------------------
# Trainer formulas, transcribed
# ---------------------------------------------------------------------------------------


def verl_grpo(scores, index, epsilon=1e-6, norm_adv_by_std_in_grpo=True):
    """verl compute_grpo_outcome_advantage on flat scores [B*G] with group ids."""
    scores = scores.clone()
    id2score = defaultdict(list)
    id2mean, id2std = {}, {}
    for i in range(scores.shape[0]):
        id2score[index[i]].append(scores[i])
    for idx in id2score:
        t = torch.stack(id2score[idx])
        id2mean[idx], id2std[idx] = torch.mean(t), torch.std(t)
    for i in range(scores.shape[0]):
        if norm_adv_by_std_in_grpo:
            scores[i] = (scores[i] - id2mean[index[i]]) / (id2std[index[i]] + epsilon)
        else:
            scores[i] = scores[i] - id2mean[index[i]]
    return scores


def verl_rloo(scores, index):
    scores = scores.clone()
    id2score = defaultdict(list)
    for i in range(scores.shape[0]):
        id2score[index[i]].append(scores[i])
    id2mean = {idx: torch.mean(torch.stack(v)) for idx, v in id2score.items()}
    for i in range(scores.shape[0]):
        n = len(id2score[index[i]])
        scores[i] = scores[i] * n / (n - 1) - id2mean[index[i]] * n / (n - 1)
    return scores


def trl_grpo(rewards, num_generations, scale_rewards=True):
    """TRL GRPOTrainer: unbiased .std(dim=1) over the group, + 1e-4."""
    mean = rewards.view(-1, num_generations).mean(dim=1).repeat_interleave(num_generations, dim=0)
    std = rewards.view(-1, num_generations).std(dim=1).repeat_interleave(num_generations, dim=0)
    advantages = rewards - mean
    if scale_rewards:
        advantages = advantages / (std + 1e-4)
    return advantages


def verl_masked_mean(values, mask, axis=None):
    return (values * mask).sum(axis=axis) / (mask.sum(axis=axis) + 1e-8)


def verl_agg_loss(loss_mat, loss_mask, loss_agg_mode):
    if loss_agg_mode == "token-mean":
        return verl_masked_mean(loss_mat, loss_mask)
    if loss_agg_mode == "seq-mean-token-sum":
        return torch.mean(torch.sum(loss_mat * loss_mask, dim=-1))
    if loss_agg_mode == "seq-mean-token-mean":
        return torch.mean(torch.sum(loss_mat * loss_mask, dim=-1) / torch.sum(loss_mask, dim=-1))
    raise ValueError(loss_agg_mode)


def verl_policy_loss(old_log_prob, log_prob, advantages, response_mask, cliprange_low, cliprange_high,
                     clip_ratio_c, loss_agg_mode):
    """verl compute_policy_loss_vanilla; ``clip_ratio_c=None`` skips the dual-clip branch
    (verl always applies it, with c = 3 by default)."""
    negative_approx_kl = torch.clamp(log_prob - old_log_prob, min=-20.0, max=20.0)
    ratio = torch.exp(negative_approx_kl)
    ppo_kl = verl_masked_mean(-negative_approx_kl, response_mask)
    pg_losses1 = -advantages * ratio
    pg_losses2 = -advantages * torch.clamp(ratio, 1 - cliprange_low, 1 + cliprange_high)
    clip_pg_losses1 = torch.maximum(pg_losses1, pg_losses2)
    pg_clipfrac = verl_masked_mean(torch.gt(pg_losses2, pg_losses1).float(), response_mask)
    if clip_ratio_c is None:
        pg_losses, pg_clipfrac_lower = clip_pg_losses1, torch.tensor(0.0)
    else:
        pg_losses3 = -advantages * clip_ratio_c
        clip_pg_losses2 = torch.min(pg_losses3, clip_pg_losses1)
        pg_clipfrac_lower = verl_masked_mean(
            torch.gt(clip_pg_losses1, pg_losses3) * (advantages < 0).float(), response_mask
        )
        pg_losses = torch.where(advantages < 0, clip_pg_losses2, clip_pg_losses1)
    pg_loss = verl_agg_loss(pg_losses, response_mask, loss_agg_mode)
    return pg_loss, pg_clipfrac, ppo_kl, pg_clipfrac_lower


# ---------------------------------------------------------------------------------------
# group_advantages
# ---------------------------------------------------------------------------------------


def rewards_grid(B=6, G=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    r = torch.randn(B, G, generator=g)
    r[1] = (torch.rand(G, generator=g) > 0.5).float()  # 0/1 verifier rewards
    r[1, 0], r[1, 1] = 0.0, 1.0  # not all equal
    r[2] = 0.25 * torch.randint(0, 5, (G,), generator=g)
    return r


@pytest.mark.parametrize("G", [2, 3, 8, 16])
def test_grpo_matches_verl(G):
    r = rewards_grid(G=G)
    index = [b for b in range(r.shape[0]) for _ in range(G)]
    ours = rl.group_advantages(r.to(DEVICE), mode="grpo")
    torch.testing.assert_close(ours.cpu().reshape(-1), verl_grpo(r.reshape(-1), index), rtol=1e-5, atol=1e-6)
    dr = rl.group_advantages(r.to(DEVICE), mode="drgrpo")
    torch.testing.assert_close(
        dr.cpu().reshape(-1), verl_grpo(r.reshape(-1), index, norm_adv_by_std_in_grpo=False), rtol=1e-5, atol=1e-6
    )


@pytest.mark.parametrize("G", [2, 8, 16])
def test_grpo_relation_to_trl(G):
    """TRL's GRPO advantage is ours with eps=1e-4 (TRL's .std is unbiased too); its
    scale_rewards=False is Dr. GRPO. With the default eps=1e-6 they differ only through
    the eps: (r - mean) / (std + 1e-6) = TRL * (std + 1e-4) / (std + 1e-6)."""
    r = rewards_grid(G=G)
    trl = trl_grpo(r.reshape(-1), G).reshape(r.shape)
    torch.testing.assert_close(rl.group_advantages(r, mode="grpo", eps=1e-4), trl, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(
        rl.group_advantages(r, mode="drgrpo"), trl_grpo(r.reshape(-1), G, scale_rewards=False).reshape(r.shape),
        rtol=1e-5, atol=1e-6,
    )
    std = r.std(dim=1, keepdim=True)
    torch.testing.assert_close(
        rl.group_advantages(r, mode="grpo"), trl * (std + 1e-4) / (std + 1e-6), rtol=1e-5, atol=1e-6
    )


@pytest.mark.parametrize("G", [2, 3, 8])
def test_rloo_is_leave_one_out(G):
    r = rewards_grid(G=G).double()
    index = [b for b in range(r.shape[0]) for _ in range(G)]
    ours = rl.group_advantages(r, mode="rloo")
    loo = torch.stack([r[:, i] - torch.cat([r[:, :i], r[:, i + 1:]], dim=1).mean(dim=1) for i in range(G)], dim=1)
    torch.testing.assert_close(ours, loo.float(), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(ours.reshape(-1), verl_rloo(r.float().reshape(-1), index), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(ours, (G / (G - 1) * (r - r.mean(dim=1, keepdim=True))).float(), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("mode", rl.ADVANTAGE_MODES)
@pytest.mark.parametrize("eps", [1e-6, 0.0])
def test_all_equal_groups_give_exact_zeros(mode, eps):
    # 0.1 and 1e6 + 0.3 are not exact in binary: a naive fp32 mean leaves a residue that
    # (r - mean) / (std + eps) would blow up; every such group must give exact zeros.
    r = torch.tensor([[0.1] * 8, [1.0] * 8, [0.0] * 8, [1e6 + 0.3] * 8, [0.0, 1.0] * 4])
    out = rl.group_advantages(r.to(DEVICE), mode=mode, eps=eps).cpu()
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    assert torch.equal(out[:4], torch.zeros(4, 8))
    assert (out[4] != 0).all()


def test_group_advantages_accepts_int_and_bool_rewards():
    r = torch.tensor([[1, 0, 0, 1], [1, 1, 1, 1]])
    torch.testing.assert_close(rl.group_advantages(r), rl.group_advantages(r.float()))
    torch.testing.assert_close(rl.group_advantages(r.bool(), mode="drgrpo"), rl.group_advantages(r.float(), mode="drgrpo"))


@pytest.mark.parametrize(
    "rewards,kwargs,error,match",
    [
        (torch.ones(4, 1), {}, ValueError, r"rewards needs a group size G >= 2.*\(4, 1\)"),
        (torch.ones(8), {}, ValueError, r"rewards must have shape \[B, G\]"),
        (torch.ones(2, 3, 4), {}, ValueError, r"rewards must have shape \[B, G\]"),
        ([[1.0, 0.0]], {}, TypeError, "rewards must be a torch.Tensor"),
        (torch.ones(2, 2, dtype=torch.complex64), {}, TypeError, "rewards must be a real"),
        (torch.ones(2, 4), {"mode": "ppo"}, ValueError, "mode must be one of"),
        (torch.ones(2, 4), {"eps": -1e-6}, ValueError, r"eps must be in \[0.0"),
        (torch.ones(2, 4), {"eps": "1e-6"}, TypeError, "eps must be a number"),
    ],
)
def test_group_advantages_bad_input(rewards, kwargs, error, match):
    with pytest.raises(error, match=match):
        rl.group_advantages(rewards, **kwargs)


# ---------------------------------------------------------------------------------------
# policy_loss
# ---------------------------------------------------------------------------------------


def policy_inputs(B, T, *, per_token=False, spread=0.5, seed=0, device=DEVICE, dtype=torch.float32):
    """Log-ratios N(0, spread) so that both clips (and a dual clip at c = 1.5) trigger;
    masks with a fully masked row and ragged lengths."""
    g = torch.Generator().manual_seed(seed)
    old = -torch.rand(B, T, generator=g) * 3
    lp = old + spread * torch.randn(B, T, generator=g)
    adv = torch.randn(B, T, generator=g) if per_token else torch.randn(B, generator=g)
    lengths = torch.randint(1, T + 1, (B,), generator=g)
    mask = torch.arange(T)[None, :] < lengths[:, None]
    if B > 2:
        mask[2] = False  # a sequence with no response tokens
    return (lp.to(device, dtype).requires_grad_(), old.to(device, dtype), adv.to(device), mask.to(device))


CASES = [(agg, dual, per_token) for agg in AGGS for dual in (None, 1.5) for per_token in (False, True)]


@pytest.mark.parametrize("agg,dual,per_token", CASES)
def test_reference_matches_verl(agg, dual, per_token):
    lp, old, adv, mask = policy_inputs(6, 50, per_token=per_token, device="cpu")
    mask[2, 0] = True  # verl's seq-mean-token-mean is 0/0 on an empty row
    loss, stats = policy_loss_reference(lp, old, adv, mask, 0.2, 0.28, dual, agg)
    A = adv if per_token else adv[:, None]
    v_loss, v_clip, v_kl, v_lower = verl_policy_loss(old, lp, A, mask.float(), 0.2, 0.28, dual, agg)
    torch.testing.assert_close(loss, v_loss, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(stats["clip_fraction"], v_clip, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(stats["approx_kl"], v_kl, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(stats["dual_clip_fraction"], v_lower, rtol=1e-6, atol=1e-7)
    assert 0 < stats["clip_fraction"] < 1
    if dual is not None and not per_token:
        assert stats["dual_clip_fraction"] > 0
    (g,) = torch.autograd.grad(loss, lp)
    (v_g,) = torch.autograd.grad(v_loss, lp)
    torch.testing.assert_close(g, v_g, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("agg,dual,per_token", CASES)
def test_public_api_matches_reference_forward_and_backward(agg, dual, per_token):
    """On CPU the public op is the reference; on CUDA it is the fused kernel."""
    lp, old, adv, mask = policy_inputs(16, 300, per_token=per_token, seed=1)
    loss, stats = rl.policy_loss(lp, old, adv, mask, dual_clip=dual, agg=agg)
    (2.5 * loss).backward()  # grad_output != 1
    ref_lp = lp.detach().clone().requires_grad_()
    ref_loss, ref_stats = policy_loss_reference(ref_lp, old, adv, mask, 0.2, 0.28, dual, agg)
    (2.5 * ref_loss).backward()
    # fp32 sums in a different order: a few ulps of the loss; the gradient is elementwise.
    torch.testing.assert_close(loss, ref_loss, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(lp.grad, ref_lp.grad, rtol=1e-5, atol=1e-8)
    for key in ref_stats:
        torch.testing.assert_close(stats[key], ref_stats[key], rtol=1e-5, atol=1e-6)
        assert not stats[key].requires_grad


# Under the interpreter, small blocks give several blocks per row; T = 37 is not a multiple.
TRITON_BLOCK = None if DEVICE == "cuda" else 16


@pytest.mark.parametrize("agg,dual,per_token", CASES)
def test_triton_kernel_matches_reference(agg, dual, per_token):
    B, T = (64, 1000) if DEVICE == "cuda" else (5, 37)
    lp, old, adv, mask = policy_inputs(B, T, per_token=per_token, seed=2, spread=0.8)
    loss, stats = policy_loss_triton(lp, old, adv, mask, 0.2, 0.28, dual, agg, block=TRITON_BLOCK)
    (g,) = torch.autograd.grad(-3.0 * loss, lp)
    ref_loss, ref_stats = policy_loss_reference(lp, old, adv, mask, 0.2, 0.28, dual, agg)
    (ref_g,) = torch.autograd.grad(-3.0 * ref_loss, lp)
    torch.testing.assert_close(loss, ref_loss, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(g, ref_g, rtol=1e-5, atol=1e-8)
    for key in ref_stats:
        torch.testing.assert_close(stats[key], ref_stats[key], rtol=1e-5, atol=1e-6)


def test_triton_forward_only_and_float_mask():
    """No gradient wanted: the kernel skips writing it. A float 0/1 mask equals the bool one."""
    lp, old, adv, mask = policy_inputs(4, 37, seed=3)
    with torch.no_grad():
        loss, stats = policy_loss_triton(lp, old, adv, mask.float(), 0.2, 0.28, 2.0, "token-mean", block=TRITON_BLOCK)
    ref_loss, ref_stats = policy_loss_reference(lp, old, adv, mask, 0.2, 0.28, 2.0, "token-mean")
    assert not loss.requires_grad
    torch.testing.assert_close(loss, ref_loss.detach(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(stats["approx_kl"], ref_stats["approx_kl"], rtol=1e-5, atol=1e-6)


def test_triton_ties_and_clamped_log_ratios():
    """Ratios exactly on the clip bounds (autograd splits max() ties in half) and log-ratios
    beyond the +-20 clamp (no gradient, as verl) give the reference's gradient exactly."""
    B, T = 3, 37
    lp, old, adv, mask = policy_inputs(B, T, seed=4)
    old = lp.detach().clone()
    old[0, :5] -= 25.0  # ratio e^25 -> clamped
    old[1, :5] += 25.0
    lp = lp.detach().requires_grad_()
    adv = torch.tensor([1.0, -1.0, 0.5], device=DEVICE)
    mask = torch.ones(B, T, dtype=torch.bool, device=DEVICE)
    for clip in (0.0, 0.2):  # clip 0: ratio 1 sits on both bounds
        loss, stats = policy_loss_triton(lp, old, adv, mask, clip, clip, 1.5, "token-mean", block=TRITON_BLOCK)
        (g,) = torch.autograd.grad(loss, lp)
        ref_loss, ref_stats = policy_loss_reference(lp, old, adv, mask, clip, clip, 1.5, "token-mean")
        (ref_g,) = torch.autograd.grad(ref_loss, lp)
        torch.testing.assert_close(loss, ref_loss, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(g, ref_g, rtol=1e-6, atol=1e-9)
        assert torch.equal(g[0, :5], torch.zeros(5, device=DEVICE)) and torch.equal(g[1, :5], torch.zeros(5, device=DEVICE))
        assert (g[2, 5:] != 0).all()


@pytest.mark.parametrize("impl", ["reference", "triton"])
def test_padding_garbage_under_zero_mask_is_harmless(impl):
    lp, old, adv, mask = policy_inputs(4, 37, seed=5)
    with torch.no_grad():
        lp[~mask] = float("nan")
        old[~mask] = float("inf")
    if impl == "triton":
        loss, stats = policy_loss_triton(lp, old, adv, mask, 0.2, 0.28, None, "seq-mean-token-mean", block=TRITON_BLOCK)
    else:
        loss, stats = policy_loss_reference(lp, old, adv, mask, 0.2, 0.28, None, "seq-mean-token-mean")
    (g,) = torch.autograd.grad(loss, lp)
    assert torch.isfinite(loss) and torch.isfinite(g).all() and torch.equal(g[~mask], torch.zeros_like(g[~mask]))
    assert all(torch.isfinite(v) for v in stats.values())


def test_bf16_logprobs_kernel_vs_reference():
    # Both upcast to fp32, compute the same formula and round the gradient to bf16 once,
    # so they agree to one bf16 ulp (2^-8 relative) at most.
    lp, old, adv, mask = policy_inputs(4, 37, seed=6, dtype=torch.bfloat16)
    loss, _ = policy_loss_triton(lp, old, adv, mask, 0.2, 0.28, None, "token-mean", block=TRITON_BLOCK)
    (g,) = torch.autograd.grad(loss, lp)
    ref_loss, _ = policy_loss_reference(lp, old, adv, mask, 0.2, 0.28, None, "token-mean")
    (ref_g,) = torch.autograd.grad(ref_loss, lp)
    assert g.dtype == torch.bfloat16
    torch.testing.assert_close(loss, ref_loss, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(g, ref_g, rtol=2**-8, atol=1e-6)


@pytest.mark.parametrize("agg", AGGS)
@pytest.mark.parametrize("dual", [None, 1.5])
def test_reference_gradcheck_fp64(agg, dual):
    g = torch.Generator().manual_seed(7)
    B, T = 3, 6
    old = -torch.rand(B, T, generator=g, dtype=torch.float64)
    lp = (old + 0.6 * torch.randn(B, T, generator=g, dtype=torch.float64)).requires_grad_()
    adv = torch.tensor([0.7, -1.3, -0.4], dtype=torch.float64)
    mask = torch.rand(B, T, generator=g) > 0.3
    # finite differences must not step over a clip bound or a max/min switch
    ratio = (lp - old).exp()
    bounds = torch.tensor([0.8, 1.28, dual or 0.8], dtype=torch.float64)
    assert (ratio.detach()[..., None] - bounds).abs().min() > 1e-4
    assert torch.autograd.gradcheck(
        lambda x: policy_loss_reference(x, old, adv, mask, 0.2, 0.28, dual, agg)[0], (lp,), eps=1e-6, atol=1e-8
    )


def test_stats_values_by_hand():
    # Four tokens, A = +1, -1, +1, -1; ratios 2, 2, 0.5, 4; one more token masked out.
    lr = torch.log(torch.tensor([[2.0, 2.0, 0.5, 4.0, 9.0]], dtype=torch.float64))
    old = torch.zeros(1, 5, dtype=torch.float64)
    adv = torch.tensor([[1.0, -1.0, 1.0, -1.0, 5.0]], dtype=torch.float64)
    mask = torch.tensor([[True, True, True, True, False]])
    loss, stats = policy_loss_reference(lr.clone().requires_grad_(), old, adv, mask, 0.2, 0.28, 3.0, "token-mean")
    # token 0: A>0, r=2 > 1.28 -> clipped, pg = -1.28.  token 1: A<0, r=2: pg = max(2, 1.28) = 2,
    # not clipped, below dual cap 3.  token 2: A>0, r=0.5: pg = max(-0.5, -0.8) = -0.5, not
    # clipped.  token 3: A<0, r=4: pg = max(4, 1.28) = 4 > 3 -> dual-capped at 3.
    assert stats["clip_fraction"].item() == pytest.approx(1 / 4)
    assert stats["dual_clip_fraction"].item() == pytest.approx(1 / 4)
    assert stats["approx_kl"].item() == pytest.approx(-math.log(2 * 2 * 0.5 * 4) / 4)
    assert loss.item() == pytest.approx((-1.28 + 2 - 0.5 + 3) / 4)
    _, no_dual = policy_loss_reference(lr, old, adv, mask, 0.2, 0.28, None, "token-mean")
    assert no_dual["dual_clip_fraction"].item() == 0.0


def test_aggregation_modes_by_hand():
    # pg = -A * r with r = 1 (no clipping): per-token loss -A.
    adv = torch.tensor([[1.0, 1.0, 1.0], [4.0, 4.0, 4.0]])
    mask = torch.tensor([[True, True, True], [True, False, False]])
    zeros = torch.zeros(2, 3)
    loss = {agg: policy_loss_reference(zeros, zeros, adv, mask, 0.2, 0.28, None, agg)[0].item() for agg in AGGS}
    assert loss["token-mean"] == pytest.approx(-(1 + 1 + 1 + 4) / 4)
    assert loss["seq-mean-token-sum"] == pytest.approx(-(3 + 4) / 2)
    assert loss["seq-mean-token-mean"] == pytest.approx(-(1 + 4) / 2)


def test_dispatch(force_backend):
    lp, old, adv, mask = policy_inputs(3, 37, seed=8)
    ref_loss, _ = policy_loss_reference(lp, old, adv, mask, 0.2, 0.28, None, "token-mean")
    force_backend("triton")  # interpreted on CPU
    loss, _ = rl.policy_loss(lp, old, adv, mask)
    torch.testing.assert_close(loss, ref_loss, rtol=1e-5, atol=1e-6)
    force_backend("cpp")
    with pytest.raises(RuntimeError, match="this op has no cpp kernel"):
        rl.policy_loss(lp, old, adv, mask)
    force_backend("reference")
    torch.testing.assert_close(rl.policy_loss(lp, old, adv, mask)[0], ref_loss)


def test_empty_and_advantage_column():
    e = torch.empty(0, 5, device=DEVICE)
    loss, stats = rl.policy_loss(e, e, torch.empty(0, device=DEVICE), e.bool())
    assert loss.item() == 0.0 and stats["clip_fraction"].item() == 0.0
    lp, old, adv, mask = policy_inputs(3, 7)
    torch.testing.assert_close(rl.policy_loss(lp, old, adv[:, None], mask)[0], rl.policy_loss(lp, old, adv, mask)[0])


def _bad(**override):
    lp, old, adv, mask = policy_inputs(2, 5, device="cpu")
    args = {"logprobs": lp, "old_logprobs": old, "advantages": adv, "mask": mask}
    kwargs = {k: override.pop(k) for k in list(override) if k not in args}
    args.update(override)
    return args, kwargs


@pytest.mark.parametrize(
    "override,error,match",
    [
        ({"logprobs": torch.zeros(2, 5, 1)}, ValueError, r"logprobs must have shape \[B, T\]"),
        ({"logprobs": torch.zeros(2, 5, dtype=torch.float64)}, TypeError, "logprobs must be float32, bfloat16"),
        ({"logprobs": [[0.0]]}, TypeError, "logprobs must be a torch.Tensor"),
        ({"old_logprobs": torch.zeros(2, 6)}, ValueError, r"old_logprobs must have the shape of logprobs \(2, 5\)"),
        ({"old_logprobs": torch.zeros(2, 5, dtype=torch.int64)}, TypeError, "old_logprobs must be float32"),
        ({"advantages": torch.zeros(3)}, ValueError, r"advantages must have shape \[B\] or \[B, T\] with B=2, T=5"),
        ({"advantages": torch.zeros(2, 4)}, ValueError, r"advantages must have shape \[B\] or \[B, T\]"),
        ({"advantages": torch.zeros(2, dtype=torch.int64)}, TypeError, "advantages must be a floating-point"),
        ({"mask": torch.ones(2, 4, dtype=torch.bool)}, ValueError, r"mask must have the shape of logprobs"),
        ({"mask": torch.ones(2, 5, dtype=torch.complex64)}, TypeError, "mask must be a bool, integer or floating"),
        ({"mask": torch.ones(2, 5, dtype=torch.bool, device="meta")}, ValueError, "mask is on meta but logprobs"),
        ({"agg": "seq-mean"}, ValueError, "agg must be one of"),
        ({"clip_low": -0.1}, ValueError, r"clip_low must be in \[0.0, 1.0\]"),
        ({"clip_low": 1.5}, ValueError, "clip_low must be in"),
        ({"clip_high": -0.28}, ValueError, r"clip_high must be in \[0.0, inf\]"),
        ({"clip_high": float("nan")}, ValueError, "clip_high must be in"),
        ({"clip_high": "0.28"}, TypeError, "clip_high must be a number"),
        ({"dual_clip": 1.0}, ValueError, r"dual_clip must be in \(1.0"),
        ({"dual_clip": 0.5}, ValueError, "dual_clip must be in"),
        ({"log_ratio_clamp": 0.0}, ValueError, r"log_ratio_clamp must be in \(0.0"),
    ],
)
def test_policy_loss_bad_input(override, error, match):
    args, kwargs = _bad(**override)
    with pytest.raises(error, match=match):
        rl.policy_loss(**args, **kwargs)


# ---------------------------------------------------------------------------------------
# pass_at_k
# ---------------------------------------------------------------------------------------


def exact_pass_at_k(n, c, k):
    if n - c < k:
        return Fraction(1)
    return 1 - Fraction(math.comb(n - c, k), math.comb(n, k))


def test_pass_at_k_exact_for_every_n_up_to_200():
    triples = []
    for n in range(1, 201):
        cs = sorted({0, 1, 2, n // 3, n // 2, n - 2, n - 1, n} & set(range(n + 1)))
        ks = sorted({1, 2, 3, 5, 10, n // 2, n - 1, n} & set(range(1, n + 1)))
        triples += [(n, c, k) for c in cs for k in ks]
    n, c, k = (torch.tensor(col) for col in zip(*triples))
    got = rl.pass_at_k(n, c, k)
    assert got.dtype == torch.float64 and got.shape == n.shape
    want = torch.tensor([float(exact_pass_at_k(*t)) for t in triples], dtype=torch.float64)
    torch.testing.assert_close(got, want, rtol=1e-13, atol=0)
    assert torch.equal(got[want == 1.0], want[want == 1.0]) and torch.equal(got[want == 0.0], want[want == 0.0])
    for i in range(0, len(triples), 97):  # the int path gives the same float
        assert rl.pass_at_k(*triples[i]) == got[i].item()


@pytest.mark.parametrize(
    "c,k", [(1, 1), (1, 100), (3, 10), (10, 1), (100, 100), (5000, 1), (5000, 5000), (9990, 9), (9990, 10), (0, 7)]
)
def test_pass_at_k_large_n_against_exact_rationals(c, k):
    n = 10_000
    got = rl.pass_at_k(n, c, k)
    want = float(exact_pass_at_k(n, c, k))
    assert math.isfinite(got)
    assert got == pytest.approx(want, rel=1e-12, abs=0)


def test_pass_at_k_where_the_naive_formula_fails():
    # C(10000, 5000) overflows a double; the Codex product form does not.
    with pytest.raises(OverflowError):
        float(math.comb(10_000, 5_000))
    got = rl.pass_at_k(torch.tensor([10_000, 20_000]), torch.tensor([1, 2]), 5_000)
    assert torch.isfinite(got).all()
    assert got[0].item() == pytest.approx(0.5, rel=1e-14)
    assert got[1].item() == pytest.approx(float(exact_pass_at_k(20_000, 2, 5_000)), rel=1e-12)


def test_pass_at_k_broadcasts():
    c = torch.tensor([[0, 1, 5], [10, 16, 16]])
    got = rl.pass_at_k(16, c, torch.tensor([1, 4, 8]))
    want = torch.tensor([[float(exact_pass_at_k(16, cc, kk)) for cc, kk in zip(row, (1, 4, 8))] for row in c.tolist()],
                        dtype=torch.float64)
    torch.testing.assert_close(got, want, rtol=1e-13, atol=0)
    assert isinstance(rl.pass_at_k(16, 5, 4), float)


@pytest.mark.parametrize(
    "n,c,k,error,match",
    [
        (10, 3, 11, ValueError, r"k must be <= n, got k=11 > n=10"),
        (10, 11, 1, ValueError, r"c must be <= n, got c=11 > n=10"),
        (-1, 0, 1, ValueError, "n must be non-negative"),
        (10, -2, 1, ValueError, "c must be non-negative"),
        (10, 2, -1, ValueError, "k must be non-negative"),
        (10, 2, 0, ValueError, "k must be >= 1"),
        (10.0, 2, 1, TypeError, "n must be an int or an integer tensor"),
        (10, True, 1, TypeError, "c must be an int or an integer tensor"),
        (torch.tensor([10.0]), 2, 1, TypeError, "n must be an int or an integer tensor, got a torch.float32"),
        (torch.tensor([10, 5]), torch.tensor([1, 6]), 1, ValueError, r"c must be <= n, got c=6 > n=5"),
        (torch.tensor([10, 5]), 2, torch.tensor([1, 2, 3]), ValueError, "n, c and k must broadcast"),
    ],
)
def test_pass_at_k_bad_input(n, c, k, error, match):
    with pytest.raises(error, match=match):
        rl.pass_at_k(n, c, k)


# ---------------------------------------------------------------------------------------
# benchmark module
# ---------------------------------------------------------------------------------------


def test_bench_rl_rows_markdown_and_plot(tmp_path, monkeypatch):
    from benchmarks import bench_rl, harness

    monkeypatch.setattr(bench_rl, "QUICK_SHAPES", ((2, 64),))
    monkeypatch.setattr(harness, "time_cpu", lambda fn, **kw: (fn(), harness.Timing(3.0, 2.0, 4.0))[1])
    rows = bench_rl.run(torch.device("cpu"), "quick", bandwidth=1e10)
    assert {r["impl"] for r in rows} == {bench_rl.REFERENCE, bench_rl.FLOOR}
    assert all(r["median_us"] > 0 and r["tokens"] == 128 for r in rows)
    assert "| 2 | 64 |" in bench_rl.markdown(rows)
    bench_rl.plot(rows, tmp_path / "rl.png", "rl")
    assert (tmp_path / "rl.png").stat().st_size > 1000
