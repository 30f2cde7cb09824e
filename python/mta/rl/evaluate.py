"""Held-out accuracy during a run: one greedy answer per problem, judged against its gold."""

from __future__ import annotations

from mta.data import Problem
from mta.generation.engine import generate
from mta.rewards import Reward
from mta.rl.config import RLConfig
from mta.rl.rollout import prompt_of

__all__ = ["greedy_accuracy"]


def greedy_accuracy(model, tokenizer, problems: list[Problem], cfg: RLConfig, reward: Reward,
                    batch_prompts: int = 32) -> float:
    """Fraction of ``problems`` whose greedy completion (``cfg.max_new_tokens``, the run's
    prompt template and chat template) states the gold answer; unscorable ones count as wrong."""
    correct = 0
    for start in range(0, len(problems), batch_prompts):
        chunk = problems[start: start + batch_prompts]
        out = generate(model, tokenizer, [prompt_of(p, cfg) for p in chunk], n=1, max_new_tokens=cfg.max_new_tokens,
                       temperature=0.0, chat_template=cfg.chat_template, compact_every=cfg.compact_every,
                       progress=False)
        for p, text in zip(chunk, out.texts):
            correct += bool(reward.judge_group([text], p.answer)[0].correct)
    return correct / max(len(problems), 1)
