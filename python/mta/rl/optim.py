"""The optimisation pieces every trainer of the library shares (``mta.rl``, ``mta.sbt.sft``).

AdamW with a warm-up + constant / linear / cosine learning-rate schedule, the micro-batch
split of a mini-batch, one clipped optimizer step, and the RNG states a checkpoint saves so
a resumed run continues identically. A config is anything with the fields read here
(``lr``, ``adam_betas``, ``weight_decay``, ``warmup_steps``, ``lr_schedule``, ``steps``,
``min_lr_ratio``, ``grad_clip``): :class:`mta.rl.RLConfig` and :class:`mta.sbt.sft.SFTConfig`.
"""

from __future__ import annotations

import math
import random

import torch

__all__ = ["chunks", "clipped_step", "lr_factor", "make_optimizer", "restore_rng", "rng_state"]


def lr_factor(step: int, cfg) -> float:
    """The learning rate of training step ``step`` (0-based) as a fraction of ``cfg.lr``."""
    if step < cfg.warmup_steps:
        return (step + 1) / (cfg.warmup_steps + 1)
    if cfg.lr_schedule == "constant":
        return 1.0
    span = max(cfg.steps - cfg.warmup_steps, 1)
    progress = min((step - cfg.warmup_steps) / span, 1.0)
    low = cfg.min_lr_ratio
    if cfg.lr_schedule == "linear":
        return 1.0 - (1.0 - low) * progress
    return low + (1.0 - low) * 0.5 * (1.0 + math.cos(math.pi * progress))


def make_optimizer(model, cfg) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW over ``model``'s parameters and its :func:`lr_factor` schedule (one step per training step)."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=tuple(cfg.adam_betas),
                                  weight_decay=cfg.weight_decay)
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, cfg))


def chunks(start: int, stop: int, size: int) -> list[tuple[int, int]]:
    """``[start, stop)`` cut into ``(lo, hi)`` pieces of ``size`` (the last one may be shorter)."""
    return [(s, min(s + size, stop)) for s in range(start, stop, size)]


def clipped_step(model, optimizer: torch.optim.Optimizer, grad_clip: float | None) -> float:
    """Clip the accumulated gradients' norm to ``grad_clip`` (None: no clip) and step the
    optimizer, unless the norm is not finite (the step is skipped). Returns the norm."""
    params = [p for p in model.parameters() if p.grad is not None]
    norm = float(torch.nn.utils.clip_grad_norm_(params, grad_clip if grad_clip else math.inf))
    if math.isfinite(norm):
        optimizer.step()
    return norm


def rng_state(**generators) -> dict:
    """torch's (and CUDA's) RNG state, plus each ``name=`` torch.Generator / random.Random."""
    state = {"torch_rng": torch.get_rng_state(),
             "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}
    for name, g in generators.items():
        state[name] = g.getstate() if isinstance(g, random.Random) else g.get_state()
    return state


def restore_rng(state: dict, **generators) -> None:
    """Undo :func:`rng_state` (the same ``name=`` generators)."""
    torch.set_rng_state(state["torch_rng"])
    if state.get("cuda_rng") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    for name, g in generators.items():
        if isinstance(g, random.Random):
            g.setstate(state[name])
        else:
            g.set_state(state[name])
