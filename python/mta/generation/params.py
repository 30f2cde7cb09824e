"""Sampling parameters: checked once on the host, then drawn every step without a host sync.

Each of ``temperature``, ``top_k``, ``top_p``, ``min_p`` is a scalar (the same for every row)
or one value per prompt (list, tuple or 1-D tensor of length ``len(prompts)``), repeated for
the ``n`` samples of each prompt. Values are range-checked here, once, with the argument
named in the error; the decode loop then builds one :class:`mta_kernels.Sampler` from them.
"""

from __future__ import annotations

from dataclasses import dataclass
from numbers import Integral, Real

import torch

from mta_kernels._validation import ANY, INT64_MAX, INT64_MIN, MIN_P, TEMPERATURE, TOP_P, Interval, as_float, fp32_saturated

__all__ = ["SamplingParams", "sampling_params"]

# The intervals the ops check (mta_kernels._validation), checked here per prompt.
_RANGES: dict[str, tuple[Interval, bool]] = {  # name: (interval, integer)
    "temperature": (TEMPERATURE, False),
    "top_k": (ANY, True),
    "top_p": (TOP_P, False),
    "min_p": (MIN_P, False),
}


def _check_value(name: str, value, interval: Interval, integer: bool) -> None:
    if integer and not INT64_MIN <= value <= INT64_MAX:
        raise ValueError(f"{name} must fit in int64 (|{name}| < 2**63), got {value}")
    interval.check(as_float(value), name)


def _one(name: str, value: object, num_prompts: int, n: int, device: torch.device) -> float | int | torch.Tensor:
    interval, integer = _RANGES[name]
    if isinstance(value, torch.Tensor) and value.dim() == 0:
        value = value.item()
    if isinstance(value, bool):
        raise TypeError(f"{name} must be a number or one value per prompt, got bool")
    if isinstance(value, (Integral, Real)):
        if integer and not isinstance(value, Integral):
            raise TypeError(f"{name} must be an int, got {value!r}")
        _check_value(name, value, interval, integer)
        return int(value) if integer else as_float(value)
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
        _check_value(f"{name}[{i}]", v, interval, integer)
    if len(set(values)) == 1:  # one value after all: a scalar costs nothing per step
        return int(values[0]) if integer else float(values[0])
    if not integer:
        values = [fp32_saturated(as_float(v)) for v in values]
    dtype = torch.int64 if integer else torch.float32
    return torch.tensor(values, dtype=dtype).repeat_interleave(n).to(device)


@dataclass(frozen=True)
class SamplingParams:
    """Per-row parameters for ``mk.Sampler``: a Python scalar, or a [B] tensor on the device."""

    temperature: float | torch.Tensor
    top_k: int | torch.Tensor
    top_p: float | torch.Tensor
    min_p: float | torch.Tensor


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
