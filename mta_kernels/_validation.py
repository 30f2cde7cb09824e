"""Input checks shared by the public ops: every message names the argument."""

from __future__ import annotations

import functools
import math
import weakref
from numbers import Integral, Real

import torch

LOGIT_DTYPES = (torch.float32, torch.bfloat16, torch.float16)

__all__ = ["LOGIT_DTYPES", "check_float_2d", "check_logits_2d", "check_row_ints", "filled", "per_model_param", "per_row_param"]


def check_float_2d(t: object, name: str, shape: str) -> torch.Tensor:
    """A 2-D fp32/bf16/fp16 tensor; ``shape`` (e.g. "[N, H]") only names it in errors."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dim() != 2:
        raise ValueError(f"{name} must have shape {shape}, got shape {tuple(t.shape)}")
    if t.dtype not in LOGIT_DTYPES:
        raise TypeError(f"{name} must be float32, bfloat16 or float16, got {t.dtype}")
    return t


def check_row_ints(t: object, name: str, batch: int, device: torch.device, other: str = "logits") -> torch.Tensor:
    """A [B] integer tensor on ``device`` (where ``other`` lives), as int64."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a [B] integer tensor, got {type(t).__name__}")
    if t.dim() != 1 or t.shape[0] != batch:
        raise ValueError(f"{name} must have shape [B] with B={batch}, got shape {tuple(t.shape)}")
    if t.dtype.is_floating_point or t.dtype.is_complex or t.dtype == torch.bool:
        raise TypeError(f"{name} must be an integer tensor, got {t.dtype}")
    if t.device != device:
        raise ValueError(f"{name} is on {t.device} but {other} are on {device}")
    return t.to(torch.int64)


def check_logits_2d(logits: object, name: str = "logits", shape: str = "[B, V]") -> torch.Tensor:
    """A [B, V] fp32/bf16/fp16 tensor with V >= 1, made contiguous."""
    logits = check_float_2d(logits, name, shape)
    if logits.shape[1] == 0:
        raise ValueError(f"{name} has an empty vocabulary (shape {tuple(logits.shape)})")
    return logits.contiguous()


def _check_range(name: str, lo: float, hi: float, lo_open: bool, hi_open: bool, bad: bool) -> None:
    if bad:
        left = "(" if lo_open else "["
        right = ")" if hi_open else "]"
        raise ValueError(f"{name} must be in {left}{lo}, {hi}{right}")


# CUDA parameter tensors whose values already passed the range check, by identity and
# version: a decode loop passes the same [B] tensors every step, and checking them again
# would cost a host synchronisation per token.
_checked_tensors: dict[int, tuple[weakref.ref, int]] = {}


def _already_checked(t: torch.Tensor) -> bool:
    entry = _checked_tensors.get(id(t))
    return entry is not None and entry[0]() is t and entry[1] == t._version


def _remember_checked(t: torch.Tensor) -> None:
    if len(_checked_tensors) > 1024:
        _checked_tensors.clear()
    _checked_tensors[id(t)] = (weakref.ref(t), t._version)


def _check_tensor_range(
    value: torch.Tensor, out: torch.Tensor, name: str, lo: float, hi: float, lo_open: bool, hi_open: bool
) -> None:
    """Range-check ``out`` (``value`` converted); a CUDA ``value`` once per identity and version."""
    device = value.device
    on_gpu = device.type != "cpu"
    capturing = device.type == "cuda" and torch.cuda.is_current_stream_capturing()
    if out.numel() and not capturing and not torch.compiler.is_compiling() and not (on_gpu and _already_checked(value)):
        below = out <= lo if lo_open else out < lo
        above = out >= hi if hi_open else out > hi
        bad = bool((below | above | out.isnan()).any())
        _check_range(name, lo, hi, lo_open, hi_open, bad)
        if on_gpu:
            _remember_checked(value)


@functools.lru_cache(maxsize=256)
def filled(value: float, batch: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    # Scalars become [B] tensors once per (value, B, device): no allocation and no fill
    # launch per decode step. The kernels only read them.
    return torch.full((batch,), value, dtype=dtype, device=device)


def per_row_param(
    value: object,
    name: str,
    batch: int,
    device: torch.device,
    *,
    integer: bool = False,
    lo: float = -math.inf,
    hi: float = math.inf,
    lo_open: bool = False,
    hi_open: bool = False,
) -> torch.Tensor:
    """A scalar or a [B] tensor -> a [B] tensor on ``device`` (int64 if ``integer`` else fp32).

    Scalars are range-checked for free. Tensor values are range-checked too, which costs one
    device-to-host copy for a CUDA tensor the first time it is seen (again only after it is
    modified in place); skipped while a CUDA graph is being captured (the kernels clamp, so
    an out-of-range value there never reads out of bounds).
    """
    if isinstance(value, torch.Tensor):
        if value.dim() == 0:
            value = value.reshape(1).expand(batch)
        if value.dim() != 1 or value.shape[0] != batch:
            raise ValueError(f"{name} must be a scalar or a [B] tensor with B={batch}, got shape {tuple(value.shape)}")
        if value.device != device:
            raise ValueError(f"{name} is on {value.device} but logits are on {device}")
        if integer:
            if value.dtype.is_floating_point or value.dtype.is_complex or value.dtype == torch.bool:
                raise TypeError(f"{name} must be an integer tensor, got {value.dtype}")
            out = value.to(torch.int64)
        else:
            if not (value.dtype.is_floating_point or value.dtype in (torch.int32, torch.int64)):
                raise TypeError(f"{name} must be a floating-point tensor, got {value.dtype}")
            out = value.to(torch.float32)
        _check_tensor_range(value, out, name, lo, hi, lo_open, hi_open)
        return out.contiguous()
    if isinstance(value, bool) or not isinstance(value, (Integral, Real)):
        raise TypeError(f"{name} must be a number or a [B] tensor, got {type(value).__name__}")
    if integer and not isinstance(value, Integral):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    v = float(value)
    bad = math.isnan(v) or v < lo or v > hi or (lo_open and v <= lo) or (hi_open and v >= hi)
    _check_range(name, lo, hi, lo_open, hi_open, bad)
    dtype = torch.int64 if integer else torch.float32
    if torch.compiler.is_compiling():
        return torch.full((batch,), value, dtype=dtype, device=device)
    return filled(value, batch, device, dtype)


@functools.lru_cache(maxsize=256)
def _per_model_values(values: tuple[float, ...], batch: int, device: torch.device) -> torch.Tensor:
    # One host-to-device copy per distinct list: a decode loop passes the same list each step.
    return torch.tensor(values, dtype=torch.float32, device=device).unsqueeze(1).expand(-1, batch).contiguous()


def per_model_param(
    value: object,
    name: str,
    models: int,
    batch: int,
    device: torch.device,
    *,
    lo: float = -math.inf,
    hi: float = math.inf,
    lo_open: bool = False,
    hi_open: bool = False,
) -> torch.Tensor:
    """A scalar, K numbers, or a [K] / [K, B] tensor -> a [K, B] fp32 tensor on ``device``.

    Range checks as in :func:`per_row_param` (a CUDA tensor costs one device-to-host copy
    the first time it is seen).
    """
    shape_msg = f"a number, {models} numbers, or a [K] / [K, B] tensor with K={models}, B={batch}"
    if isinstance(value, torch.Tensor):
        if value.dim() == 0:
            value = value.reshape(1).expand(models)
        if value.dim() == 1 and value.shape[0] == models:
            expanded = value.unsqueeze(1).expand(models, batch)
        elif value.dim() == 2 and tuple(value.shape) == (models, batch):
            expanded = value
        else:
            raise ValueError(f"{name} must be {shape_msg}, got shape {tuple(value.shape)}")
        if value.device != device:
            raise ValueError(f"{name} is on {value.device} but logits are on {device}")
        if not (value.dtype.is_floating_point or value.dtype in (torch.int32, torch.int64)):
            raise TypeError(f"{name} must be a floating-point tensor, got {value.dtype}")
        out = expanded.to(torch.float32)
        _check_tensor_range(value, out, name, lo, hi, lo_open, hi_open)
        return out.contiguous()
    if isinstance(value, (list, tuple)):
        if len(value) != models:
            raise ValueError(f"{name} must be {shape_msg}, got {len(value)} numbers")
        values = value
    elif isinstance(value, (Integral, Real)) and not isinstance(value, bool):
        values = (value,) * models
    else:
        raise TypeError(f"{name} must be {shape_msg}, got {type(value).__name__}")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (Integral, Real)):
            raise TypeError(f"{name} must hold numbers, got {type(v).__name__} {v!r}")
        f = float(v)
        bad = math.isnan(f) or f < lo or f > hi or (lo_open and f <= lo) or (hi_open and f >= hi)
        _check_range(name, lo, hi, lo_open, hi_open, bad)
    values = tuple(float(v) for v in values)
    if torch.compiler.is_compiling():
        return torch.tensor(values, dtype=torch.float32, device=device).unsqueeze(1).expand(-1, batch).contiguous()
    return _per_model_values(values, batch, device)
