"""Per-row braking configuration and decoding state."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from mta_kernels._validation import ANY, NON_NEGATIVE, filled, per_row_param
from mta_kernels.braking.layout import STATE_FIELDS, Config, Counter, Flag, state_column

__all__ = ["BrakingConfig", "BrakingState", "BRAKE_REASONS", "DELIM_START"]

#: brake_reason codes (csrc/braking_row.h's BrakeReason; a test keeps the two equal).
BRAKE_REASONS = {0: "none", 1: "budget", 2: "marker ratio", 3: "steps", 4: "margin"}

#: Step-delimiter matcher state at the start of thinking: "inside a break", so blank lines
#: before the first step do not count as a delimiter (as mta.sbt.split_steps drops them).
DELIM_START = 2

_NAN = math.nan  # one object, so the cached fills below hit


def _same_values(old: tuple, versions: tuple, new: tuple) -> bool:
    """Whether ``new`` equals the memoised ``old``: the same tensor objects at the same
    version, equal scalars of the same type (a plain loop: this runs every decode step)."""
    for a, version, b in zip(old, versions, new):
        if a is b:
            if version is not None and b._version != version:
                return False
        elif isinstance(a, torch.Tensor) or type(a) is not type(b) or a != b:
            return False
    return True


@dataclass
class BrakingConfig:
    """Braking triggers; each a scalar or a per-row ``[B]`` tensor, ``None`` disables it.

    Values may change between steps (real-time adjustment): they are read at every step.

    Parameters
    ----------
    max_thinking_tokens : int or Tensor [B] int, optional
        Budget trigger: brake once ``thinking_tokens >= max_thinking_tokens``. A negative
        entry turns it off for that row.
    marker_ratio : float or Tensor [B], optional
        Ratio trigger: brake once ``marker_tokens / thinking_tokens >= marker_ratio``
        (and ``thinking_tokens >= min_thinking_tokens``). ``inf`` turns it off for a row.
    min_thinking_tokens : int or Tensor [B] int
        Thinking tokens required before the ratio trigger may fire.
    max_steps : int or Tensor [B] int, optional
        Steps trigger: brake once ``steps >= max_steps``. Negative: off for a row.
    end_think_margin : float or Tensor [B], optional
        Margin trigger: brake once ``max log p - log p(end_think) <= margin`` on this step's
        logits (the model nearly wants to stop). ``-inf``: off for a row. Only this trigger
        reads the logits rows.
    """

    max_thinking_tokens: int | torch.Tensor | None = None
    marker_ratio: float | torch.Tensor | None = None
    min_thinking_tokens: int | torch.Tensor = 0
    max_steps: int | torch.Tensor | None = None
    end_think_margin: float | torch.Tensor | None = None
    _memo: tuple | None = field(default=None, init=False, repr=False, compare=False)

    def _values(self) -> tuple:
        return (self.max_thinking_tokens, self.marker_ratio, self.min_thinking_tokens, self.max_steps,
                self.end_think_margin)

    def normalised(self, batch: int, device: torch.device) -> torch.Tensor:
        """The ``[B, len(Config)]`` float64 config the kernels take (columns
        :class:`~mta_kernels.braking.layout.Config`): integer triggers as integers (off: -1),
        ``marker_ratio`` and ``end_think_margin`` as their fp32 value (off: NaN).

        Memoised per config: scalars by value, tensors by identity and version (the memo
        holds them, so an id is never reused), so a new value or an in-place edit between
        steps still takes effect. The returned tensor must be treated as read-only.
        """
        vals = self._values()
        memo = self._memo
        if memo is not None and memo[0] == batch and memo[1] == device and _same_values(memo[2], memo[3], vals):
            return memo[4]
        out = self._normalise(batch, device)
        versions = tuple(v._version if isinstance(v, torch.Tensor) else None for v in vals)
        self._memo = (batch, device, vals, versions, out)
        return out

    def _normalise(self, batch: int, device: torch.device) -> torch.Tensor:

        def integer(value, name):
            if value is None:
                return filled(-1, batch, device, torch.int64)
            return per_row_param(value, name, batch, device, integer=True)

        def real(value, name, interval):
            if value is None:
                return filled(_NAN, batch, device, torch.float32)
            return per_row_param(value, name, batch, device, interval)

        # Checked and rounded as the [B] int64 / fp32 rows they were, then widened: fp64 holds
        # both exactly (integers up to 2^53), so every comparison keeps its result.
        columns = {
            Config.MAX_THINKING_TOKENS: integer(self.max_thinking_tokens, "max_thinking_tokens"),
            Config.MARKER_RATIO: real(self.marker_ratio, "marker_ratio", NON_NEGATIVE),
            Config.MIN_THINKING_TOKENS: integer(self.min_thinking_tokens, "min_thinking_tokens"),
            Config.MAX_STEPS: integer(self.max_steps, "max_steps"),
            Config.END_THINK_MARGIN: real(self.end_think_margin, "end_think_margin", ANY),
        }
        return torch.stack([columns[field].to(torch.float64) for field in Config], dim=1)


class _Column:
    """A named ``[B]`` field of :class:`BrakingState`: a view of one column of its packed
    storage. Assigning to the field copies into that column (the storage stays shared)."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name
        self.position = STATE_FIELDS.index(name)

    def __get__(self, state: BrakingState | None, owner: type | None = None):
        if state is None:
            return self
        return state._fields[self.position]

    def __set__(self, state: BrakingState, value: torch.Tensor | bool | int) -> None:
        state._fields[self.position].copy_(torch.as_tensor(value))


def _packed_columns(columns: list[torch.Tensor], dtype: torch.dtype) -> torch.Tensor:
    """A ``[B, n]`` tensor whose column ``i`` is ``columns[i]``: a view when they already are
    the columns of one such tensor (so the state stays shared with them), else a copy."""
    first, n = columns[0], len(columns)
    if all(isinstance(c, torch.Tensor) and c.dim() == 1 and c.shape == first.shape and c.dtype == dtype
           and c.device == first.device for c in columns):
        B, base, storage = first.shape[0], first.storage_offset(), first.untyped_storage().data_ptr()
        if all(c.untyped_storage().data_ptr() == storage and c.storage_offset() == base + i
               and (c.stride(0) == n or B <= 1) for i, c in enumerate(columns)):
            return first.as_strided((B, n), (n, 1), base)
    return torch.stack([torch.as_tensor(c) for c in columns], dim=1).to(dtype)


class BrakingState:
    """Per-row state of the braking controller, packed in two tensors on one device.

    ``counters`` ``[B, len(Counter)]`` int64 and ``flags`` ``[B, len(Flag)]`` bool (columns
    :class:`~mta_kernels.braking.layout.Counter` / :class:`~mta_kernels.braking.layout.Flag`)
    are what the op takes. Each field is a ``[B]`` view of one column:
    ``thinking_tokens``, ``marker_tokens``, ``steps``, ``brake_reason``, ``ac_state``
    (automaton state), ``counted_until`` (position up to which marker tokens are counted),
    ``brake_pos`` (index of the next forced token) and ``delim_state`` (the step-delimiter
    matcher's state, :data:`DELIM_START` at the start of thinking) are int64; ``in_think``,
    ``braking``, ``braked`` bool. Assigning to a field copies into its column.

    Built with :meth:`new`, or ``BrakingState(counters, flags)``, or from the eleven fields
    (in :meth:`tensors` order or by name): fields that are columns of one packed pair (e.g.
    ``t[:B]`` of another state's :meth:`tensors`) are kept as views, other tensors copied.
    """

    __slots__ = ("counters", "flags", "_fields")

    thinking_tokens = _Column()
    marker_tokens = _Column()
    steps = _Column()
    in_think = _Column()
    braking = _Column()
    braked = _Column()
    brake_reason = _Column()
    ac_state = _Column()
    counted_until = _Column()
    brake_pos = _Column()
    delim_state = _Column()

    def __init__(self, *tensors: torch.Tensor, **named: torch.Tensor):
        if len(tensors) + len(named) == 2 and set(named) <= {"counters", "flags"}:
            packed = dict(zip(("counters", "flags"), tensors))
            if set(packed) & set(named):
                raise TypeError("BrakingState(counters, flags): an argument given twice")
            packed.update(named)
            counters, flags = packed["counters"], packed["flags"]
        else:
            if len(tensors) > len(STATE_FIELDS) or set(STATE_FIELDS[:len(tensors)]) & set(named):
                raise TypeError(f"BrakingState takes (counters, flags) or the fields {STATE_FIELDS}")
            fields = dict(zip(STATE_FIELDS, tensors), **named)
            if set(fields) != set(STATE_FIELDS):
                raise TypeError(f"BrakingState takes (counters, flags) or the fields {STATE_FIELDS}; missing "
                                f"{sorted(set(STATE_FIELDS) - set(fields))}, unknown {sorted(set(fields) - set(STATE_FIELDS))}")
            counters = _packed_columns([fields[c.name.lower()] for c in Counter], torch.int64)
            flags = _packed_columns([fields[f.name.lower()] for f in Flag], torch.bool)
        for t, name, dtype, width in ((counters, "counters", torch.int64, len(Counter)),
                                      (flags, "flags", torch.bool, len(Flag))):
            if not isinstance(t, torch.Tensor) or t.dtype != dtype or t.dim() != 2 or t.shape[1] != width:
                raise ValueError(f"{name} must be a [B, {width}] {dtype} tensor, got "
                                 f"{getattr(t, 'dtype', type(t).__name__)} of shape {tuple(getattr(t, 'shape', ()))}")
            if not t.is_contiguous():
                raise ValueError(f"{name} must be contiguous (the kernels update it in place)")
        if counters.shape[0] != flags.shape[0] or counters.device != flags.device:
            raise ValueError(f"counters ({counters.shape[0]} rows on {counters.device}) and flags "
                             f"({flags.shape[0]} rows on {flags.device}) must match")
        self.counters = counters
        self.flags = flags
        columns = [state_column(name) for name in STATE_FIELDS]
        self._fields = tuple((counters if isinstance(c, Counter) else flags)[:, c] for c in columns)

    @classmethod
    def new(cls, batch_size: int, device: torch.device | str = "cpu", in_think: bool | torch.Tensor = True) -> BrakingState:
        """Fresh state for ``batch_size`` rows; ``in_think`` a bool or a ``[B]`` bool tensor."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 0:
            raise ValueError(f"batch_size must be a non-negative int, got {batch_size!r}")
        device = torch.device(device)
        if isinstance(in_think, torch.Tensor):
            if in_think.shape != (batch_size,) or in_think.dtype != torch.bool:
                raise ValueError(f"in_think must be a bool or a [{batch_size}] bool tensor, "
                                 f"got {in_think.dtype} of shape {tuple(in_think.shape)}")
        elif not isinstance(in_think, bool):
            raise TypeError(f"in_think must be a bool or a bool tensor, got {type(in_think).__name__}")
        counters = torch.zeros(batch_size, len(Counter), dtype=torch.int64, device=device)
        counters[:, Counter.DELIM_STATE] = DELIM_START
        flags = torch.zeros(batch_size, len(Flag), dtype=torch.bool, device=device)
        flags[:, Flag.IN_THINK] = in_think.to(device) if isinstance(in_think, torch.Tensor) else in_think
        return cls(counters, flags)

    def reset_row(self, row: int, in_think: bool) -> None:
        """Start row ``row`` afresh (a new request in that slot)."""
        self.counters[row] = 0
        self.counters[row, Counter.DELIM_STATE] = DELIM_START
        self.flags[row] = False
        self.flags[row, Flag.IN_THINK] = in_think

    def tensors(self) -> tuple[torch.Tensor, ...]:
        """The eleven fields as ``[B]`` views, in the order of ``STATE_FIELDS``."""
        return self._fields

    @property
    def batch_size(self) -> int:
        return int(self.counters.shape[0])

    @property
    def device(self) -> torch.device:
        return self.counters.device

    def clone(self) -> BrakingState:
        return BrakingState(self.counters.clone(), self.flags.clone())

    def to(self, device: torch.device | str) -> BrakingState:
        return BrakingState(self.counters.to(device), self.flags.to(device))

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={t!r}" for name, t in zip(STATE_FIELDS, self._fields))
        return f"BrakingState({fields})"
