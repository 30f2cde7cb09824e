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

__all__ = ["CHECKPOINT", "has_checkpoint", "load_checkpoint", "save_checkpoint"]

CHECKPOINT = "checkpoint"


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
