"""The one vocabulary of input checks: every op and ``mta.generate`` use these.

Every message names the argument. The intervals of the documented parameters are defined
once here (:data:`TEMPERATURE`, :data:`TOP_P`, ...), so a range and its error text cannot
drift apart between ops.

Two process-wide caches live here (docs/architecture.md "Process-wide caches"):
:func:`filled` (scalars as ``[B]`` tensors) and the checked-tensor cache of
:func:`per_row_param`; :func:`clear_caches` empties both.
"""

from __future__ import annotations

import functools
import math
import weakref
from dataclasses import dataclass
from numbers import Integral, Real

import torch

LOGIT_DTYPES = (torch.float32, torch.bfloat16, torch.float16)

__all__ = [
    "LOGIT_DTYPES",
    "INT64_MAX",
    "INT64_MIN",
    "FINITE",
    "FINITE_NUMBER",
    "Interval",
    "MIN_P",
    "NON_NEGATIVE",
    "NON_NEGATIVE_FINITE",
    "POSITIVE",
    "POSITIVE_FINITE",
    "PROBABILITY",
    "TEMPERATURE",
    "TOP_P",
    "as_float",
    "check_bool",
    "check_float_2d",
    "check_int",
    "check_logits_2d",
    "check_number",
    "check_optional_int",
    "check_generator",
    "check_row_ints",
    "check_tensor",
    "check_tensor_values",
    "clear_caches",
    "filled",
    "fp32_saturated",
    "is_integer_dtype",
    "per_model_param",
    "per_row_param",
    "sampling_rows",
]


# ---------------------------------------------------------------------------------------
# intervals
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Interval:
    """A range of allowed values; NaN is never inside. ``text`` overrides the ``in [lo, hi]``
    wording of errors (e.g. "a finite number > 0")."""

    lo: float = -math.inf
    hi: float = math.inf
    lo_open: bool = False
    hi_open: bool = False
    text: str | None = None

    def __str__(self) -> str:
        if self.text is not None:
            return self.text
        left, right = "(" if self.lo_open else "[", ")" if self.hi_open else "]"
        return f"in {left}{float(self.lo)}, {float(self.hi)}{right}"

    def holds(self, value: float) -> bool:
        if math.isnan(value):
            return False
        above_lo = value > self.lo if self.lo_open else value >= self.lo
        below_hi = value < self.hi if self.hi_open else value <= self.hi
        return above_lo and below_hi

    def outside(self, t: torch.Tensor) -> torch.Tensor:
        """Bool mask of the entries of ``t`` not in the interval (NaN included)."""
        below = t <= self.lo if self.lo_open else t < self.lo
        above = t >= self.hi if self.hi_open else t > self.hi
        return below | above | t.isnan()

    def check(self, value: float, name: str) -> None:
        if not self.holds(value):
            raise ValueError(f"{name} must be {self}, got {value!r}")


_INF = math.inf
#: Anything but NaN.
ANY = Interval()
#: Finite numbers (mixing weights); FINITE_NUMBER says so in words.
FINITE = Interval(-_INF, _INF, lo_open=True, hi_open=True)
FINITE_NUMBER = Interval(-_INF, _INF, lo_open=True, hi_open=True, text="a finite number")
#: Finite and >= 0 (a guidance strength, an advantage eps).
NON_NEGATIVE_FINITE = Interval(0.0, _INF, hi_open=True, text="a finite number >= 0")
#: Sampling temperature: 0 is greedy.
TEMPERATURE = Interval(0.0, _INF, hi_open=True)
#: A temperature that divides (mixing, log-probabilities): no greedy, no inf. The two
#: differ only in the wording of their errors.
POSITIVE = Interval(0.0, _INF, lo_open=True, hi_open=True)
POSITIVE_FINITE = Interval(0.0, _INF, lo_open=True, hi_open=True, text="a finite number > 0")
#: top-p: 1 is off, 0 would keep nothing.
TOP_P = Interval(0.0, 1.0, lo_open=True)
#: A probability or a fraction of one (min-p, plausibility).
PROBABILITY = Interval(0.0, 1.0)
MIN_P = PROBABILITY
#: Non-negative (inf allowed).
NON_NEGATIVE = Interval(0.0, _INF)


# ---------------------------------------------------------------------------------------
# Python values
# ---------------------------------------------------------------------------------------


def as_float(value: Real) -> float:
    """``float(value)``, with an integer too large for a float read as +-inf (so a range
    check rejects it by name instead of ``float()`` raising OverflowError)."""
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


_FP32_MAX = torch.finfo(torch.float32).max


def fp32_saturated(value: float) -> float:
    """A checked float as an fp32 row holds it: past the fp32 range it saturates at the
    largest finite fp32 (a temperature of 1e300 is as flat as one of 3.4e38)."""
    return max(-_FP32_MAX, min(_FP32_MAX, value))


def check_number(value: object, name: str, interval: Interval = ANY) -> float:
    """A real number (not a bool) inside ``interval``, as a float."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    v = as_float(value)
    interval.check(v, name)
    return v


#: The int64 range: Python ints past it cannot become a tensor value or a size.
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def check_int(value: object, name: str, lo: int | None = None, hi: int | None = None) -> int:
    """An integer (not a bool) in ``[lo, hi]`` (either bound optional; an int64 either way),
    as an int."""
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if lo is not None and value < lo:
        raise ValueError(f"{name} must be >= {lo}, got {value}")
    if hi is not None and value > hi:
        raise ValueError(f"{name} must be <= {hi}, got {value}")
    if not INT64_MIN <= value <= INT64_MAX:
        raise ValueError(f"{name} must fit in int64 (|{name}| < 2**63), got {value}")
    return int(value)


def check_optional_int(value: object, name: str, lo: int) -> int | None:
    """None, or an int >= ``lo`` (e.g. an optional chunk size)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, Integral) or value < lo:
        which = "a positive integer" if lo == 1 else f"an integer >= {lo}"
        raise ValueError(f"{name} must be {which} or None, got {value!r}")
    return int(value)


def check_generator(generator: object, device: torch.device, other: str = "logits") -> torch.Generator | None:
    """None, or a ``torch.Generator`` on the device type of ``device`` (where ``other`` lives)."""
    if generator is None:
        return None
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    if generator.device.type != device.type:
        raise ValueError(f"generator is on {generator.device} but {other} are on {device}")
    return generator


def check_bool(value: object, name: str) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__}")
    return value


# ---------------------------------------------------------------------------------------
# tensors
# ---------------------------------------------------------------------------------------


def is_integer_dtype(dtype: torch.dtype) -> bool:
    return not dtype.is_floating_point and not dtype.is_complex and dtype != torch.bool


def check_tensor(t: object, name: str) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    return t


def check_float_2d(t: object, name: str, shape: str) -> torch.Tensor:
    """A 2-D fp32/bf16/fp16 tensor; ``shape`` (e.g. "[N, H]") only names it in errors."""
    check_tensor(t, name)
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
    if not is_integer_dtype(t.dtype):
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


def check_tensor_values(value: torch.Tensor, name: str, interval: Interval) -> None:
    """Raise unless every entry of ``value`` lies in ``interval`` (a CUDA tensor costs one
    host sync, once per identity and version; skipped under graph capture / compile)."""
    _check_tensor_range(value, value, name, interval)


def _check_tensor_range(value: torch.Tensor, out: torch.Tensor, name: str, interval: Interval) -> None:
    """Range-check ``out`` (``value`` converted); a CUDA ``value`` once per identity and version."""
    device = value.device
    on_gpu = device.type != "cpu"
    capturing = device.type == "cuda" and torch.cuda.is_current_stream_capturing()
    if out.numel() and not capturing and not torch.compiler.is_compiling() and not (on_gpu and _already_checked(value)):
        if bool(interval.outside(out).any()):
            raise ValueError(f"{name} must be {interval}")
        if on_gpu:
            _remember_checked(value)


@functools.lru_cache(maxsize=256)
def filled(value: float, batch: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    # Scalars become [B] tensors once per (value, B, device): no allocation and no fill
    # launch per decode step. The kernels only read them.
    return torch.full((batch,), value, dtype=dtype, device=device)


def clear_caches() -> None:
    """Empty the process-wide caches: the :func:`filled` tensors and the checked-tensor ids."""
    filled.cache_clear()
    _scalar_sampling_rows.cache_clear()
    _per_model_values.cache_clear()
    _checked_tensors.clear()


def per_row_param(
    value: object,
    name: str,
    batch: int,
    device: torch.device,
    interval: Interval = ANY,
    *,
    integer: bool = False,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """A scalar or a [B] tensor -> a [B] tensor on ``device`` (int64 if ``integer`` else fp32,
    or ``dtype``). Integers must fit in int64.

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
            if not is_integer_dtype(value.dtype):
                raise TypeError(f"{name} must be an integer tensor, got {value.dtype}")
            out = value.to(torch.int64)
        else:
            if not (value.dtype.is_floating_point or value.dtype in (torch.int32, torch.int64)):
                raise TypeError(f"{name} must be a floating-point tensor, got {value.dtype}")
            out = value.to(dtype or torch.float32)
        _check_tensor_range(value, out, name, interval)
        return out.contiguous()
    if isinstance(value, bool) or not isinstance(value, (Integral, Real)):
        raise TypeError(f"{name} must be a number or a [B] tensor, got {type(value).__name__}")
    if integer and not isinstance(value, Integral):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if integer and not INT64_MIN <= value <= INT64_MAX:
        raise ValueError(f"{name} must fit in int64 (|{name}| < 2**63), got {value}")
    if not integer:
        value = as_float(value)
    interval.check(float(value), name)
    dtype = dtype or (torch.int64 if integer else torch.float32)
    if dtype == torch.float32:
        value = fp32_saturated(value)
    if torch.compiler.is_compiling():
        return torch.full((batch,), value, dtype=dtype, device=device)
    return filled(value, batch, device, dtype)


def sampling_rows(temperature, top_k, top_p, min_p, batch: int, device: torch.device) -> tuple[torch.Tensor, ...]:
    """The four sampling parameters (scalars or [B] tensors) as the kernels take them:
    temperature, top_p, min_p fp32 and top_k int64, each [B] on ``device``."""
    if (type(temperature) in _PLAIN and type(top_k) in _PLAIN and type(top_p) in _PLAIN and type(min_p) in _PLAIN
            and not torch.compiler.is_compiling()):
        return _scalar_sampling_rows(temperature, top_k, top_p, min_p, batch, device)
    return _sampling_rows(temperature, top_k, top_p, min_p, batch, device)


_PLAIN = (int, float)


@functools.lru_cache(maxsize=256, typed=True)
def _scalar_sampling_rows(temperature, top_k, top_p, min_p, batch, device) -> tuple[torch.Tensor, ...]:
    # The one-shot ops pass the same plain numbers call after call: checked once per
    # distinct tuple (typed, so 1 and 1.0 and True stay apart; a bad value raises and is
    # not cached).
    return _sampling_rows(temperature, top_k, top_p, min_p, batch, device)


def _sampling_rows(temperature, top_k, top_p, min_p, batch, device) -> tuple[torch.Tensor, ...]:
    return (
        per_row_param(temperature, "temperature", batch, device, TEMPERATURE),
        per_row_param(top_k, "top_k", batch, device, integer=True),
        per_row_param(top_p, "top_p", batch, device, TOP_P),
        per_row_param(min_p, "min_p", batch, device, MIN_P),
    )


@functools.lru_cache(maxsize=256)
def _per_model_values(values: tuple[float, ...], batch: int, device: torch.device) -> torch.Tensor:
    # One host-to-device copy per distinct list: a decode loop passes the same list each step.
    return torch.tensor(values, dtype=torch.float32, device=device).unsqueeze(1).expand(-1, batch).contiguous()


def per_model_param(value: object, name: str, models: int, batch: int, device: torch.device,
                    interval: Interval = ANY) -> torch.Tensor:
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
        _check_tensor_range(value, out, name, interval)
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
        interval.check(as_float(v), name)
    values = tuple(fp32_saturated(as_float(v)) for v in values)
    if torch.compiler.is_compiling():
        return torch.tensor(values, dtype=torch.float32, device=device).unsqueeze(1).expand(-1, batch).contiguous()
    return _per_model_values(values, batch, device)
