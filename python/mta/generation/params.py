"""Sampling parameters: checked once on the host, then drawn every step without a host sync.

Each of ``temperature``, ``top_k``, ``top_p``, ``min_p`` is a scalar (the same for every row)
or one value per prompt (list, tuple or 1-D tensor of length ``len(prompts)``), repeated for
the ``n`` samples of each prompt. Values are range-checked here, once, with the argument
named in the error; the decode loop then passes them to :func:`mta_kernels.sample`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Integral, Real

import torch

import mta_kernels as mk

__all__ = ["SamplingParams", "sampling_params"]

_RANGES = {  # name: (lo, hi, lo_open, hi_open, integer)
    "temperature": (0.0, math.inf, False, True, False),
    "top_k": (-math.inf, math.inf, False, False, True),
    "top_p": (0.0, 1.0, True, False, False),
    "min_p": (0.0, 1.0, False, False, False),
}


def _check_value(name: str, value: float, where: str) -> None:
    lo, hi, lo_open, hi_open, integer = _RANGES[name]
    if math.isnan(value) or value < lo or value > hi or (lo_open and value <= lo) or (hi_open and value >= hi):
        left, right = "(" if lo_open else "[", ")" if hi_open else "]"
        raise ValueError(f"{where} must be in {left}{lo:g}, {hi:g}{right}, got {value!r}")


def _one(name: str, value: object, num_prompts: int, n: int, device: torch.device) -> float | int | torch.Tensor:
    integer = _RANGES[name][4]
    if isinstance(value, torch.Tensor) and value.dim() == 0:
        value = value.item()
    if isinstance(value, bool):
        raise TypeError(f"{name} must be a number or one value per prompt, got bool")
    if isinstance(value, (Integral, Real)):
        if integer and not isinstance(value, Integral):
            raise TypeError(f"{name} must be an int, got {value!r}")
        _check_value(name, float(value), name)
        return int(value) if integer else float(value)
    if isinstance(value, torch.Tensor):
        if value.dim() != 1:
            raise ValueError(f"{name} must be a scalar or 1-D (one value per prompt), got shape {tuple(value.shape)}")
        values = value.detach().cpu().tolist()
    elif isinstance(value, (list, tuple)):
        values = list(value)
    else:
        raise TypeError(f"{name} must be a number, a list or a 1-D tensor, got {type(value).__name__}")
    if len(values) != num_prompts:
        raise ValueError(f"{name} has {len(values)} values but there are {num_prompts} prompts (one value per prompt)")
    for i, v in enumerate(values):
        if isinstance(v, bool) or not isinstance(v, (Integral, Real)) or (integer and not isinstance(v, Integral)):
            kind = "an int" if integer else "a number"
            raise TypeError(f"{name}[{i}] must be {kind}, got {v!r}")
        _check_value(name, float(v), f"{name}[{i}]")
    if len(set(values)) == 1:  # one value after all: a scalar costs nothing per step
        return int(values[0]) if integer else float(values[0])
    dtype = torch.int64 if integer else torch.float32
    return torch.tensor(values, dtype=dtype).repeat_interleave(n).to(device)


@dataclass
class SamplingParams:
    """Per-row parameters for ``mk.sample``: a Python scalar, or a [B] tensor on the device."""

    temperature: float | torch.Tensor
    top_k: int | torch.Tensor
    top_p: float | torch.Tensor
    min_p: float | torch.Tensor

    def sample(
        self, logits: torch.Tensor, generator: torch.Generator | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``mk.sample(logits, ...)`` with logprobs. No host sync per step on GPU: the [B]
        tensors are the same objects every step, and ``mk.sample`` range-checks a CUDA
        tensor only once per version."""
        return mk.sample(
            logits, self.temperature, self.top_k, self.top_p, self.min_p,
            generator=generator, return_logprobs=True,
        )


def sampling_params(
    num_prompts: int, n: int, device: torch.device, *, temperature, top_k, top_p, min_p
) -> SamplingParams:
    """Check the four parameters (scalar or one per prompt) and expand them to ``num_prompts * n`` rows."""
    return SamplingParams(
        _one("temperature", temperature, num_prompts, n, device),
        _one("top_k", top_k, num_prompts, n, device),
        _one("top_p", top_p, num_prompts, n, device),
        _one("min_p", min_p, num_prompts, n, device),
    )
