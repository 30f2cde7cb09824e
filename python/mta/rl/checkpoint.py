"""Checkpoints that resume to the identical next step.

One directory, ``RUN_DIR/checkpoint``, written atomically (a temporary directory renamed over
the old one): the model's and the optimizer's state, the learning-rate schedule, every RNG
the run draws from (torch's, the rollout generator's, the random rewards'), the data
position, the step and the metrics so far. Resuming restores all of them, so step k + 1 of
a resumed run is step k + 1 of the uninterrupted one (``tests/test_rl_trainer.py``).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

__all__ = ["CHECKPOINT", "has_checkpoint", "load_checkpoint", "restore_run", "save_checkpoint", "save_run"]

CHECKPOINT = "checkpoint"


def open_run(run_dir: str | Path, resume: bool):
    """``(run_dir, metrics log, resuming)`` of a trainer's run directory (created if missing):
    ``resuming`` when ``resume`` and a complete checkpoint is there (the caller restores it);
    otherwise the metrics log is started empty."""
    from mta.rl.metrics import METRICS, MetricsLog

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    log = MetricsLog(run_dir / METRICS)
    resuming = bool(resume) and has_checkpoint(run_dir)
    if not resuming:
        log.reset([])
    return run_dir, log, resuming


def has_checkpoint(run_dir: str | Path) -> bool:
    """Whether ``run_dir`` holds a complete checkpoint."""
    d = Path(run_dir) / CHECKPOINT
    return (d / "model.pt").is_file() and (d / "state.pt").is_file()


def save_checkpoint(run_dir: str | Path, *, model_state: dict, state: dict) -> Path:
    """Write ``model_state`` (a state dict) and ``state`` (anything ``torch.save`` takes)
    under ``run_dir/checkpoint``, replacing the previous one only once both are written."""
    run_dir = Path(run_dir)
    final = run_dir / CHECKPOINT
    tmp = run_dir / (CHECKPOINT + ".tmp")
    old = run_dir / (CHECKPOINT + ".old")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    torch.save(model_state, tmp / "model.pt")
    torch.save(state, tmp / "state.pt")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)
    return final


def load_checkpoint(run_dir: str | Path, device: torch.device | str = "cpu") -> tuple[dict, dict]:
    """``(model_state, state)`` of ``run_dir``'s checkpoint, tensors on ``device``."""
    d = Path(run_dir) / CHECKPOINT
    if not has_checkpoint(run_dir):
        raise FileNotFoundError(f"no checkpoint in {run_dir} (looked for {d}/model.pt and state.pt)")
    model_state = torch.load(d / "model.pt", map_location=device, weights_only=True)
    state = torch.load(d / "state.pt", map_location="cpu", weights_only=False)
    return model_state, state


def save_run(run_dir: str | Path, *, step: int, model, optimizer, scheduler, stream, metrics: list[dict],
             config: dict, generators: dict, extra: dict | None = None) -> Path:
    """Checkpoint a trainer: the model, optimizer, schedule, data position (``stream``), every
    RNG (torch's and ``generators``, :func:`mta.rl.optim.rng_state`), step, metrics, config."""
    from mta.rl.optim import rng_state

    state = {"step": step, "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
             "stream": stream.state_dict(), **rng_state(**generators), "metrics": metrics, "config": config,
             **(extra or {})}
    return save_checkpoint(run_dir, model_state=model.state_dict(), state=state)


def restore_run(run_dir: str | Path, device, *, model, optimizer, scheduler, stream, config: dict,
                resumable: tuple[str, ...], generators: dict) -> dict:
    """Undo :func:`save_run` into the given objects; returns the saved state. A checkpoint
    made with other settings than ``config`` (fields outside ``resumable``) is refused."""
    from mta.rl.optim import restore_rng

    model_state, state = load_checkpoint(run_dir, device)
    saved = state["config"]
    changed = sorted(k for k in config if k not in resumable and saved.get(k) != config[k])
    if changed:
        raise ValueError(f"{run_dir} holds a run with other settings ({', '.join(changed)} differ): resuming "
                         "would not continue the same run; use another run_dir or resume = false")
    model.load_state_dict(model_state)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    stream.load_state_dict(state["stream"])
    restore_rng(state, **generators)
    return state
