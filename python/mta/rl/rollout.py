"""One step's rollouts: G samples per prompt from :func:`mta.generate`, judged and rewarded.

Each prompt is prefilled once and sampled ``group_size`` times (``n=G``); finished rows are
dropped from the batch every ``compact_every`` steps. Every sample is judged against the
gold (for the accuracy metric, whatever the reward) and rewarded by the configured variant;
DAPO's soft overlong penalty is added; with dynamic sampling a group whose rewards are all
equal (no advantage, no gradient) is dropped and the step draws the next prompts, up to
``max_gen_rounds`` generation rounds (DAPO's ``max_num_gen_batches``).
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field

import torch

from mta.data import Problem
from mta.generation.engine import generate
from mta.rewards import Judgement, Reward
from mta.rl.config import RLConfig
from mta.rl.stream import PromptStream

__all__ = ["Group", "RolloutStats", "overlong_penalty", "prompt_of", "rollout"]


@dataclass
class Group:
    """The G samples of one prompt, rewarded."""

    index: int  # the problem's index in the data set
    problem: Problem
    prompt_ids: list[int]
    responses: list[list[int]]
    texts: list[str]
    finish_reasons: list[str]
    rollout_logprobs: list[list[float]]  # the engine's (under the filtered distribution)
    entropies: list[list[float]] | None  # the engine's, when the reward needs them
    judgements: list[Judgement]
    task_rewards: list[float]  # the reward variant's
    rewards: list[float]  # task reward + overlong penalty: what the advantages see

    @property
    def all_equal(self) -> bool:
        return len(set(self.rewards)) == 1


@dataclass
class RolloutStats:
    """What one step generated, kept and scored (every generated sample counts, kept or not)."""

    rounds: int = 0
    groups: int = 0
    kept: int = 0
    samples: int = 0
    correct: int = 0
    unscorable: int = 0
    truncated: int = 0
    reward_sum: float = 0.0
    task_reward_sum: float = 0.0
    tokens: int = 0
    lengths: list[int] = field(default_factory=list)
    generate_s: float = 0.0
    reward_s: float = 0.0

    def metrics(self) -> dict[str, float]:
        n = max(self.samples, 1)
        return {
            "reward": self.reward_sum / n, "task_reward": self.task_reward_sum / n, "accuracy": self.correct / n,
            "response_length": sum(self.lengths) / n, "response_length_max": max(self.lengths, default=0),
            "truncated_fraction": self.truncated / n, "unscorable": self.unscorable, "samples": self.samples,
            "groups_generated": self.groups, "groups_kept": self.kept, "gen_rounds": self.rounds,
            "generate_s": self.generate_s, "reward_s": self.reward_s,
            "generate_tokens_per_s": self.tokens / max(self.generate_s, 1e-9),
        }


def prompt_of(problem: Problem, cfg: RLConfig) -> str:
    """The user message of ``problem`` (the chat template, when on, is applied by generate)."""
    return cfg.prompt_template.replace("{question}", problem.question)


def overlong_penalty(length: int, max_new_tokens: int, buffer: int, factor: float) -> float:
    """DAPO's soft overlong punishment: 0 up to ``max_new_tokens - buffer`` tokens, then down
    linearly to ``-factor`` at the cap (verl's DAPO reward manager). ``buffer=0``: off."""
    if buffer <= 0:
        return 0.0
    exceed = length - (max_new_tokens - buffer)
    return min(-exceed / buffer * factor, 0.0)


def _generate_groups(model, tokenizer, drawn: list[tuple[int, Problem]], reward: Reward, cfg: RLConfig,
                     generator: torch.Generator, rng: random.Random, stats: RolloutStats) -> list[Group]:
    t0 = time.perf_counter()
    out = generate(
        model, tokenizer, [prompt_of(p, cfg) for _, p in drawn], n=cfg.group_size,
        max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature, top_k=cfg.top_k, top_p=cfg.top_p,
        generator=generator, chat_template=cfg.chat_template, return_entropy=reward.needs_entropy,
        compact_every=cfg.compact_every, progress=False,
    )
    stats.generate_s += time.perf_counter() - t0
    stats.tokens += out.num_tokens
    t0 = time.perf_counter()
    groups = []
    G = cfg.group_size
    for g, (index, problem) in enumerate(drawn):
        rows = range(g * G, (g + 1) * G)
        texts = [out.texts[i] for i in rows]
        entropies = [out.entropies[i] for i in rows] if out.entropies is not None else None
        judgements = reward.judge_group(texts, problem.answer)
        task = reward.score(judgements, entropies=entropies, rng=rng)
        lengths = [len(out.token_ids[i]) for i in rows]
        penalties = [overlong_penalty(n, cfg.max_new_tokens, cfg.overlong_buffer, cfg.overlong_penalty)
                     for n in lengths]
        group = Group(
            index=index, problem=problem, prompt_ids=out.prompt_token_ids[g],
            responses=[out.token_ids[i] for i in rows], texts=texts,
            finish_reasons=[out.finish_reasons[i] for i in rows], rollout_logprobs=[out.logprobs[i] for i in rows],
            entropies=entropies, judgements=judgements, task_rewards=task,
            rewards=[t + p for t, p in zip(task, penalties)],
        )
        groups.append(group)
        stats.groups += 1
        stats.samples += G
        stats.correct += sum(1 for j in judgements if j.correct)
        stats.unscorable += sum(1 for j in judgements if j.unscorable)
        stats.truncated += sum(1 for r in group.finish_reasons if r == "length")
        stats.reward_sum += sum(group.rewards)
        stats.task_reward_sum += sum(task)
        stats.lengths += lengths
    stats.reward_s += time.perf_counter() - t0
    return groups


def rollout(model, tokenizer, stream: PromptStream, reward: Reward, cfg: RLConfig, generator: torch.Generator,
            rng: random.Random, generate_groups=None) -> tuple[list[Group], RolloutStats]:
    """The groups of one training step (at most ``prompts_per_step``) and what it took.

    Without dynamic sampling: one round of ``prompts_per_step`` prompts, every group kept.
    With it: rounds of ``prompts_per_step`` prompts until that many groups with unequal
    rewards are in hand or ``max_gen_rounds`` rounds ran; the surplus of the last round is
    dropped (as DAPO does), a shortfall trains on fewer groups (reported in the metrics).
    ``generate_groups`` replaces :func:`_generate_groups` (same arguments), e.g. with
    :meth:`mta.rl.ray_rollout.RayRollouts.generate_groups`.
    """
    generate_groups = generate_groups or _generate_groups
    stats = RolloutStats()
    kept: list[Group] = []
    rounds = cfg.max_gen_rounds if cfg.dynamic_sampling else 1
    for _ in range(rounds):
        stats.rounds += 1
        groups = generate_groups(model, tokenizer, stream.next(cfg.prompts_per_step), reward, cfg, generator, rng,
                                 stats)
        kept += [g for g in groups if not (cfg.dynamic_sampling and g.all_equal)]
        if len(kept) >= cfg.prompts_per_step:
            break
    kept = kept[: cfg.prompts_per_step]
    stats.kept = len(kept)
    return kept, stats
