"""mta.rl: it learns, resumes exactly, recomputes the old log-probs faithfully, accumulates exactly."""

import math

import pytest
import torch

import mta_kernels as mk
from mta.generation.engine import generate
from mta.models import tiny_random_model
from mta.rl import Trainer
from mta.rl.logprobs import pack, sequence_logprobs
from mta.rl.objective import aggregate, kl_penalty, micro_batch_loss, sample_advantages, share
from mta.rl.rollout import overlong_penalty
from mta.rl.trainer import TIMING_KEYS, lr_factor
from rl_cases import DigitTokenizer, digit_config, digit_model, successor_problems


def make_trainer(tmp_path, model=None, **changes):
    return Trainer(digit_config(tmp_path, **changes), model=model or digit_model(), tokenizer=DigitTokenizer(),
                   problems=successor_problems())


def comparable(row):
    return {k: v for k, v in row.items() if not k.endswith(TIMING_KEYS)}


def test_mean_reward_rises_on_a_synthetic_verifiable_task(tmp_path):
    # Successor of a digit, rewarded by the ground-truth check only; a random tiny model
    # starts near chance (1/16 per token) and must learn from the reward.
    rows = make_trainer(tmp_path, steps=40).train()
    rewards = [r["reward"] for r in rows]
    first, last = sum(rewards[:5]) / 5, sum(rewards[-5:]) / 5
    assert first < 0.12, rewards
    assert last > first + 0.2, rewards  # measured: ~0.05 -> ~0.40 in 40 steps
    assert all(r["old_logprob_pass"] is False for r in rows if "trained_sequences" in r)  # on-policy: old = the training forward's
    assert (tmp_path / "run" / "metrics.png").stat().st_size > 1000


def test_resumed_run_equals_the_uninterrupted_one(tmp_path):
    kw = dict(steps=3, ppo_epochs=2, mini_batch_size=32, micro_batch_size=16, reward="random", lr_schedule="cosine",
              warmup_steps=1)
    full = make_trainer(tmp_path / "a", **kw).train()
    interrupted = make_trainer(tmp_path / "b", **kw)
    interrupted.train(until=2)  # checkpoint after step 2, then the process "dies"
    resumed = make_trainer(tmp_path / "b", model=digit_model(seed=5), **(kw | {"resume": True}))
    assert resumed.step_count == 2
    rows = resumed.train()
    assert [comparable(r) for r in rows] == [comparable(r) for r in full]
    # several epochs: a separate old-log-prob pass, bit-identical to the first training forward
    trained = [r for r in rows if "trained_sequences" in r]
    assert trained and all(r["old_logprob_pass"] and r["first_logratio_max"] == 0.0 for r in trained)
    for p, q in zip(resumed.model.parameters(), make_trainer(tmp_path / "a", **kw | {"resume": True}).model.parameters()):
        assert torch.equal(p, q)
    with pytest.raises(ValueError, match="lr differ"):
        make_trainer(tmp_path / "a", **kw | {"resume": True, "lr": 1.0})


def test_gradient_accumulation_equals_one_big_batch(tmp_path):
    updated = []
    for micro in (4, 64):
        trainer = make_trainer(tmp_path / str(micro), steps=1, micro_batch_size=micro, dynamic_sampling=False,
                               lr=1e-3, grad_clip=None)
        trainer.train()
        updated.append([p.detach().clone() for p in trainer.model.parameters()])
    for a, b in zip(*updated):
        torch.testing.assert_close(a, b, atol=2e-6, rtol=1e-5)


def test_dynamic_sampling_drops_equal_groups_and_refills(tmp_path):
    trainer = make_trainer(tmp_path, steps=1, max_gen_rounds=4)
    row = trainer.step()
    assert row["groups_generated"] > row["groups_kept"] or row["gen_rounds"] == 1
    assert row["groups_generated"] == 8 * row["gen_rounds"]
    off = make_trainer(tmp_path / "off", steps=1, dynamic_sampling=False).step()
    assert off["groups_kept"] == off["groups_generated"] == 8 and off["gen_rounds"] == 1


def test_overlong_penalty_and_filter(tmp_path):
    assert overlong_penalty(10, 16, 0, 1.0) == 0.0
    assert overlong_penalty(12, 16, 4, 1.0) == 0.0
    assert overlong_penalty(14, 16, 4, 1.0) == -0.5
    assert overlong_penalty(16, 16, 4, 2.0) == -2.0
    row = make_trainer(tmp_path, steps=1, overlong_filter=True, dynamic_sampling=False).step()
    # responses cut at max_new_tokens leave the loss: fewer trained tokens than generated
    assert row["trained_tokens"] < row["response_length"] * row["samples"]


def test_kl_to_the_reference_starts_at_zero(tmp_path):
    trainer = make_trainer(tmp_path, steps=2, kl_coef=0.1, kl_estimator="k3", dynamic_sampling=False)
    rows = trainer.train()
    assert rows[0]["kl_ref"] == 0.0 and rows[1]["kl_ref"] > 0.0
    lp, ref = torch.tensor([-1.0, -2.0]), torch.tensor([-1.5, -2.0])
    torch.testing.assert_close(kl_penalty(lp, ref, "k1"), torch.tensor([0.5, 0.0]))
    torch.testing.assert_close(kl_penalty(lp, ref, "k3"), torch.tensor([math.exp(-0.5) + 0.5 - 1, 0.0]))


def test_psr_nsr_and_weighted_advantages(tmp_path):
    rewards = torch.tensor([[1.0, 0.0, 0.0, 1.0], [1.0, 1.0, 1.0, 0.0]])
    cfg = digit_config(tmp_path)
    full = mk.group_advantages(rewards).reshape(-1)
    psr = sample_advantages(rewards, cfg.replace(objective="psr"))
    nsr = sample_advantages(rewards, cfg.replace(objective="nsr"))
    weighted = sample_advantages(rewards, cfg.replace(objective="weighted", psr_weight=0.1))
    assert torch.equal(psr, torch.where(full > 0, full, 0.0)) and (psr >= 0).all()
    assert torch.equal(nsr, torch.where(full < 0, full, 0.0)) and (nsr <= 0).all()
    assert torch.equal(psr + nsr, full)
    torch.testing.assert_close(weighted, 0.1 * psr + nsr)
    # the paper's split on 0/1 rewards: PSR keeps the correct samples, NSR the wrong ones
    assert torch.equal(psr != 0, rewards.reshape(-1) == 1) and torch.equal(nsr != 0, rewards.reshape(-1) == 0)


def test_micro_batch_shares_rebuild_the_full_batch_loss(tmp_path):
    g = torch.Generator().manual_seed(0)
    lp, old = -torch.rand(6, 5, generator=g), -torch.rand(6, 5, generator=g)
    adv, mask = torch.randn(6, generator=g), torch.rand(6, 5, generator=g) > 0.3
    for agg in ("token-mean", "seq-mean-token-sum", "seq-mean-token-mean"):
        cfg = digit_config(tmp_path, loss_agg=agg, kl_coef=0.2)
        full, _ = micro_batch_loss(lp, old, adv, mask, old, cfg)
        parts = sum(micro_batch_loss(lp[i:i + 2], old[i:i + 2], adv[i:i + 2], mask[i:i + 2], old[i:i + 2], cfg)[0]
                    * share(mask[i:i + 2], mask, agg) for i in (0, 2, 4))
        torch.testing.assert_close(parts, full)
        assert aggregate(torch.ones(2, 3), torch.zeros(2, 3, dtype=torch.bool), agg) == 0.0


def test_lr_schedule(tmp_path):
    cfg = digit_config(tmp_path, steps=10, warmup_steps=2, lr_schedule="cosine", min_lr_ratio=0.1)
    factors = [lr_factor(s, cfg) for s in range(10)]
    assert factors[:3] == [1 / 3, 2 / 3, 1.0]
    assert all(a >= b for a, b in zip(factors[2:], factors[3:])) and factors[-1] > 0.1
    assert lr_factor(5, cfg.replace(lr_schedule="constant")) == 1.0


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_teacher_forced_logprobs_equal_the_engines_without_filters(temperature):
    model = tiny_random_model("llama", vocab_size=500, seed=2)
    prompts = [[5, 6, 7, 8], [9, 10]]
    out = generate(model, None, prompts, n=3, max_new_tokens=12, temperature=temperature, seed=0, eos_token_id=[],
                   progress=False)
    packed = pack([out.prompt_token_ids[i // 3] for i in range(6)], out.token_ids, 0, model.device)
    with torch.no_grad():
        recomputed, _ = sequence_logprobs(model, packed, temperature)
    engine = torch.tensor(out.logprobs)
    torch.testing.assert_close(recomputed, engine, atol=1e-4, rtol=1e-4)
    # with a top-p filter the engine's log-probs are under the renormalised filtered
    # distribution: never below the full one's, and here visibly above it somewhere
    filtered = generate(model, None, prompts, n=3, max_new_tokens=12, temperature=temperature, top_p=0.5, seed=0,
                        eos_token_id=[], progress=False)
    packed = pack([filtered.prompt_token_ids[i // 3] for i in range(6)], filtered.token_ids, 0, model.device)
    with torch.no_grad():
        full, _ = sequence_logprobs(model, packed, temperature)
    gap = torch.tensor(filtered.logprobs) - full
    assert (gap > -1e-4).all() and gap.max() > 0.05


@pytest.mark.parametrize("changes", [
    {"reward": "random_format"}, {"reward": "incorrect"}, {"reward": "format"}, {"reward": "entropy"},
    {"reward": "majority"}, {"objective": "psr"}, {"objective": "nsr"}, {"objective": "weighted"},
    {"advantage": "rloo", "dual_clip": 3.0, "loss_agg": "seq-mean-token-mean"},
    {"bf16": True},  # the autocast path (CPU autocast here; the GPU default)
])
def test_every_variant_runs_in_the_trainer(tmp_path, changes):
    trainer = make_trainer(tmp_path, steps=2, ppo_epochs=2, micro_batch_size=16, dynamic_sampling=False, **changes)
    rows = [trainer.step(), trainer.step()]  # (train() would also checkpoint and plot)
    assert len(rows) == 2 and all(math.isfinite(r["grad_norm"]) and r["optimizer_steps"] == 2 for r in rows)
    if changes.get("reward") == "entropy":  # minus the mean token entropy: negative rewards
        assert all(r["reward"] < 0 for r in rows)
    if changes.get("objective") in ("psr", "nsr"):  # about half the samples keep an advantage
        assert all(0 < r["advantage_nonzero_fraction"] < 1 for r in rows)
