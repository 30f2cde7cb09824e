"""The GRPO / DAPO trainer for transformers causal LMs on verifiable-reward prompts.

One step:

1. **rollout** (:mod:`mta.rl.rollout`): G samples per prompt from :func:`mta.generate`,
   judged and rewarded; dynamic sampling refills dropped groups;
2. **old log-probs**: recomputed teacher-forced by :func:`mta.rl.logprobs.sequence_logprobs`
   (``mk.linear_token_logprobs``) at the sampling temperature, in the micro-batches the
   first epoch trains in — so the first epoch's first mini-batch sees a ratio of exactly 1 —
   with the token entropies, and the reference model's log-probs when ``kl_coef > 0``.
   On-policy (one epoch, one mini-batch) they are taken from the training forward itself,
   detached: the same numbers, one forward pass fewer;
3. **advantages** per group (``mk.group_advantages``), PSR / NSR selection;
4. **update**: ``ppo_epochs`` passes over the batch in mini-batches; each mini-batch
   accumulates the gradients of its micro-batches (``mk.policy_loss``), clips the gradient
   norm and takes one AdamW step; the learning-rate schedule advances once per step.

Metrics go to ``RUN_DIR/metrics.jsonl`` (and a PNG at every checkpoint and at the end);
:class:`Trainer` resumes from ``RUN_DIR/checkpoint`` to the identical next step.
"""

from __future__ import annotations

import copy
import math
import random
import time
import warnings
from pathlib import Path

import torch

from mta.rewards import Reward
from mta.rl import checkpoint as ckpt
from mta.rl.config import RLConfig
from mta.rl.evaluate import greedy_accuracy
from mta.rl.loading import (
    check_chat_template,
    load_model,
    load_problems,
    resolve_device,
)
from mta.rl.logprobs import Packed, check_lm_head, pack, sequence_logprobs
from mta.rl.metrics import plot_metrics
from mta.rl.objective import micro_batch_loss, sample_advantages, share
from mta.rl.optim import chunks, clipped_step, lr_factor, make_optimizer
from mta.rl.rollout import Group, rollout
from mta.rl.stream import PromptStream

__all__ = ["Trainer", "lr_factor"]

# Fields a resumed run may change: they do not alter what the next step computes.
RESUMABLE_CHANGES = ("steps", "progress", "save_every", "eval_every", "resume", "run_dir", "device")
# Keys of a metrics row that measure time, not the run (they differ between identical runs).
TIMING_KEYS = ("_s", "tokens_per_s")


class Trainer:
    """Train ``model`` with GRPO / DAPO as ``config`` says.

    Parameters
    ----------
    config : RLConfig
        Validated here, before anything is loaded.
    model, tokenizer : optional
        Use these instead of loading ``config.model``.
    problems, eval_problems : list of mta.data.Problem, optional
        Use these instead of loading ``config.data`` / ``config.eval_data``.
    reward : mta.rewards.Reward, optional
        Instead of ``Reward(config.reward, ...)``.
    """

    def __init__(self, config: RLConfig, *, model=None, tokenizer=None, problems=None, eval_problems=None,
                 reward: Reward | None = None):
        cfg = self.cfg = config.validate()
        if problems is None:
            problems = load_problems(cfg.data, limit=cfg.data_limit, seed=cfg.data_seed)
        if cfg.one_shot is not None:
            if cfg.one_shot >= len(problems):
                raise ValueError(f"one_shot={cfg.one_shot} but the data set has {len(problems)} problems")
            problems = [problems[cfg.one_shot]]
        if eval_problems is None and cfg.eval_data is not None:
            eval_problems = load_problems(cfg.eval_data, limit=cfg.eval_limit, seed=cfg.eval_seed)
        self.eval_problems = eval_problems
        self.reward = reward or Reward(cfg.reward, answer_format=cfg.answer_format, p=cfg.reward_p,
                                       timeout_s=cfg.answer_timeout_s, seed=cfg.seed)
        self.device = resolve_device(cfg.device) if model is None else model.device
        if model is None:
            model, tokenizer = load_model(cfg.model, self.device, seed=cfg.seed)
        elif tokenizer is None:
            raise ValueError("a model passed to Trainer needs its tokenizer (tokenizer=None)")
        check_chat_template(tokenizer, cfg.chat_template)
        check_lm_head(model)
        self.model, self.tokenizer = model.eval(), tokenizer
        self.pad_id = next((t for t in (getattr(tokenizer, "pad_token_id", None), tokenizer.eos_token_id, 0)
                            if isinstance(t, int)), 0)
        bf16 = cfg.bf16 if cfg.bf16 is not None else self.device.type == "cuda"
        self.autocast = torch.bfloat16 if bf16 else None
        self.reference = None
        if cfg.kl_coef > 0:
            self.reference = copy.deepcopy(model).eval().requires_grad_(False)
        self.optimizer, self.scheduler = make_optimizer(model, cfg)
        self.stream = PromptStream(problems, seed=cfg.seed)
        self.generator = torch.Generator(self.device).manual_seed(cfg.seed)
        self.rng = random.Random(cfg.seed)
        self.step_count = 0
        # Hooks of the Ray path (mta.rl.ray_rollout.RayRollouts): None = generate in this process.
        self.generate_groups = None
        self.after_update = None
        self.run_dir, self.log, resuming = ckpt.open_run(cfg.run_dir, cfg.resume)
        if resuming:
            self._restore()

    # -- checkpoints ----------------------------------------------------------------------

    def save(self) -> Path:
        """Checkpoint the run (see :mod:`mta.rl.checkpoint`) and plot its metrics."""
        path = ckpt.save_run(self.run_dir, step=self.step_count, model=self.model, optimizer=self.optimizer,
                             scheduler=self.scheduler, stream=self.stream, metrics=self.log.rows,
                             config=self.cfg.to_dict(), generators=self._generators(),
                             extra={"reference": self.reference.state_dict() if self.reference is not None else None})
        if self.log.rows:
            plot_metrics(self.log.rows, self.run_dir / "metrics.png", title=f"mta rl — {self.run_dir}")
        return path

    def _generators(self) -> dict:
        return {"generator": self.generator, "rng": self.rng, "reward_rng": self.reward.rng}

    def _restore(self) -> None:
        state = ckpt.restore_run(self.run_dir, self.device, model=self.model, optimizer=self.optimizer,
                                 scheduler=self.scheduler, stream=self.stream, config=self.cfg.to_dict(),
                                 resumable=RESUMABLE_CHANGES, generators=self._generators())
        if self.reference is not None and state["reference"] is not None:
            self.reference.load_state_dict(state["reference"])
        self.step_count = int(state["step"])
        self.log.reset(state["metrics"])

    # -- one step -------------------------------------------------------------------------

    def _logprobs(self, model, packed: Packed, *, entropy: bool = False):
        return sequence_logprobs(model, packed, self.cfg.temperature, entropy=entropy, autocast=self.autocast)

    def _batch(self, groups: list[Group]):
        """Flatten the groups: per-sequence prompts and responses, the loss mask [B, R], rewards [K, G]."""
        prompts = [g.prompt_ids for g in groups for _ in g.responses]
        responses = [r for g in groups for r in g.responses]
        finish = [f for g in groups for f in g.finish_reasons]
        R = max(len(r) for r in responses)
        mask = torch.zeros((len(responses), R), dtype=torch.bool)
        for b, (r, f) in enumerate(zip(responses, finish)):
            if not (self.cfg.overlong_filter and f == "length"):
                mask[b, : len(r)] = True
        rewards = torch.tensor([g.rewards for g in groups], dtype=torch.float32)
        return prompts, responses, mask.to(self.device), rewards, R

    def step(self) -> dict:
        """Run one training step; returns (and logs) its metrics."""
        cfg, model = self.cfg, self.model
        t_step = time.perf_counter()
        with torch.autocast(self.device.type, dtype=self.autocast, enabled=self.autocast is not None):
            groups, rstats = rollout(model, self.tokenizer, self.stream, self.reward, cfg, self.generator, self.rng,
                                     generate_groups=self.generate_groups)
        row = {"step": self.step_count + 1, "lr": self.optimizer.param_groups[0]["lr"], **rstats.metrics()}
        if groups:
            row.update(self._update(groups))
        else:
            row["skipped"] = True  # every group had equal rewards: nothing to learn from
        if self.after_update is not None:
            self.after_update(row)
        with warnings.catch_warnings():  # a skipped step steps the schedule without an optimizer step
            warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step()`")
            self.scheduler.step()
        self.step_count += 1
        if self.eval_problems and cfg.eval_every and self.step_count % cfg.eval_every == 0:
            row["eval_accuracy"] = self.evaluate()
        row["step_s"] = time.perf_counter() - t_step
        self.log.append(row)
        return row

    def _update(self, groups: list[Group]) -> dict:
        cfg, model = self.cfg, self.model
        prompts, responses, mask, rewards, R = self._batch(groups)
        B = len(responses)
        tokens = sum(len(r) for r in responses)
        minis = chunks(0, B, cfg.mini_batch_size or cfg.batch_size)
        micros = [m for lo, hi in minis for m in chunks(lo, hi, cfg.micro_batch_size)]
        packs = {m: pack(prompts[m[0]:m[1]], responses[m[0]:m[1]], self.pad_id, self.device, width=R) for m in micros}

        # On-policy (one epoch, one mini-batch) the recomputed old log-probs are, bit for bit,
        # those of the training forward (tests/test_rl_trainer.py): take them from it, detached,
        # and skip a forward pass over the batch (TRL does the same when num_iterations == 1).
        on_policy = cfg.ppo_epochs == 1 and len(minis) == 1 and cfg.old_logprobs == "recompute"
        t0 = time.perf_counter()
        old = torch.zeros((B, R), dtype=torch.float32, device=self.device)
        entropy = torch.zeros((B, R), dtype=torch.float32, device=self.device)
        ref = torch.zeros((B, R), dtype=torch.float32, device=self.device) if self.reference is not None else None
        with torch.no_grad():
            for lo, hi in micros:
                if not on_policy:
                    old[lo:hi], entropy[lo:hi] = self._logprobs(model, packs[(lo, hi)], entropy=True)
                if ref is not None:
                    ref[lo:hi] = self._logprobs(self.reference, packs[(lo, hi)])[0]
        if cfg.old_logprobs == "rollout":  # allowed only without filters (RLConfig.validate)
            old = torch.zeros_like(old)
            for b, lp in enumerate(lp for g in groups for lp in g.rollout_logprobs):
                old[b, : len(lp)] = torch.tensor(lp, dtype=torch.float32)
        logprob_s = time.perf_counter() - t0
        advantages = sample_advantages(rewards, cfg).to(self.device)

        sums: dict[str, float] = {}
        norms, train_s, opt_s, first_dev = [], 0.0, 0.0, None
        for epoch in range(cfg.ppo_epochs):
            for lo, hi in minis:
                t0 = time.perf_counter()
                self.optimizer.zero_grad(set_to_none=True)
                for mlo, mhi in (m for m in micros if lo <= m[0] < hi):
                    w = share(mask[mlo:mhi], mask[lo:hi], cfg.loss_agg)
                    if w == 0.0:
                        continue
                    logp, ent = self._logprobs(model, packs[(mlo, mhi)], entropy=on_policy)
                    if on_policy:
                        old[mlo:mhi], entropy[mlo:mhi] = logp.detach(), ent
                    loss, stats = micro_batch_loss(logp, old[mlo:mhi], advantages[mlo:mhi], mask[mlo:mhi],
                                                   ref[mlo:mhi] if ref is not None else None, cfg)
                    (loss * w).backward()
                    if epoch == 0 and lo == 0 and not on_policy:  # the first mini-batch: ratio exactly 1
                        dev = float((logp.detach() - old[mlo:mhi]).abs()[mask[mlo:mhi]].max())
                        first_dev = dev if first_dev is None else max(first_dev, dev)
                    for k, v in stats.items():
                        sums[k] = sums.get(k, 0.0) + float(v) * w
                    sums["_weight"] = sums.get("_weight", 0.0) + w
                train_s += time.perf_counter() - t0
                t0 = time.perf_counter()
                norms.append(clipped_step(model, self.optimizer, cfg.grad_clip))
                opt_s += time.perf_counter() - t0
        optimizer_steps = len(norms)
        weight = max(sums.pop("_weight", 0.0), 1e-12)
        out = {k: v / weight for k, v in sums.items()}
        m = mask.float()
        out.update({
            "entropy": float((entropy * m).sum() / m.sum().clamp(min=1)),
            "grad_norm": sum(norms) / max(optimizer_steps, 1),
            "nonfinite_grad_steps": sum(1 for n in norms if not math.isfinite(n)),
            "optimizer_steps": optimizer_steps, "first_logratio_max": first_dev, "old_logprob_pass": not on_policy,
            "trained_sequences": B, "trained_tokens": int(mask.sum()),
            "advantage_nonzero_fraction": float((advantages != 0).float().mean()),
            "logprob_s": logprob_s, "train_s": train_s, "optimizer_s": opt_s,
            # on-policy there is no old-log-prob pass (only the reference's, if any): no rate to report
            "logprob_tokens_per_s": tokens / max(logprob_s, 1e-9) if not on_policy or ref is not None else None,
            "train_tokens_per_s": tokens * cfg.ppo_epochs / max(train_s, 1e-9),
        })
        return out

    # -- the loop -------------------------------------------------------------------------

    def evaluate(self) -> float:
        """Greedy accuracy on the held-out problems (``eval_data``)."""
        with torch.autocast(self.device.type, dtype=self.autocast, enabled=self.autocast is not None):
            return greedy_accuracy(self.model, self.tokenizer, self.eval_problems, self.cfg, self.reward)

    def train(self, until: int | None = None) -> list[dict]:
        """Train to step ``until`` (default ``cfg.steps``); checkpoint every ``save_every``
        steps and at the end. Returns every metrics row of the run (resumed ones included)."""
        from mta.progress import progress_bar

        cfg = self.cfg
        until = cfg.steps if until is None else min(until, cfg.steps)
        if self.eval_problems and self.step_count == 0 and not any("eval_accuracy" in r for r in self.log.rows):
            self.log.append({"step": 0, "eval_accuracy": self.evaluate()})
        bar = progress_bar(total=until, initial=min(self.step_count, until), desc="rl", unit="step", enabled=cfg.progress)
        while self.step_count < until:
            row = self.step()
            bar.update(1)
            bar.set_postfix(reward=f"{row['reward']:.3f}", acc=f"{row['accuracy']:.3f}",
                            len=f"{row['response_length']:.0f}")
            if cfg.save_every and self.step_count % cfg.save_every == 0 and self.step_count < until:
                self.save()
        bar.close()
        if self.step_count == cfg.steps and self.eval_problems and "eval_accuracy" not in self.log.rows[-1]:
            self.log.rows[-1]["eval_accuracy"] = self.evaluate()
            self.log.reset(self.log.rows)
        self.save()
        return self.log.rows
