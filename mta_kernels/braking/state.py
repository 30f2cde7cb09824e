"""Per-row braking configuration and decoding state."""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass, field

import torch

from mta_kernels._validation import (
    ANY,
    NON_NEGATIVE,
    Interval,
    check_int,
    check_number,
    check_tensor_values,
    filled,
    per_row_param,
)
from mta_kernels.braking.layout import STATE_FIELDS, Config, Counter, Flag, TableField, state_column

__all__ = ["BrakingConfig", "BrakingState", "BRAKE_REASONS", "DELIM_START"]

#: brake_reason codes (csrc/braking_row.h's BrakeReason; a test keeps the two equal).
BRAKE_REASONS = {0: "none", 1: "budget", 2: "marker ratio", 3: "steps", 4: "margin"}

#: Step-delimiter matcher state at the start of thinking: "inside a break", so blank lines
#: before the first step do not count as a delimiter (as mta.sbt.split_steps drops them).
DELIM_START = 2

_NAN = math.nan  # one object, so the cached fills below hit

# Each trigger: (interval of its values, whether it is an integer count). Checked when a
# value is assigned (at construction too), so a bad config fails where it is written.
_TRIGGERS: dict[str, tuple[Interval, bool]] = {
    "max_thinking_tokens": (ANY, True),
    "marker_ratio": (NON_NEGATIVE, False),
    "min_thinking_tokens": (ANY, True),
    "max_steps": (ANY, True),
    "end_think_margin": (ANY, False),
}


def _check_trigger(name: str, value: object) -> None:
    """A trigger value: None, a number of the right kind, or a 0-d / [B] tensor of it."""
    interval, integer = _TRIGGERS[name]
    if value is None:
        return
    if isinstance(value, torch.Tensor):
        if value.dim() > 1:
            raise ValueError(f"{name} must be a scalar or a [B] tensor, got shape {tuple(value.shape)}")
        if integer and (value.dtype.is_floating_point or value.dtype.is_complex or value.dtype == torch.bool):
            raise TypeError(f"{name} must be an integer tensor, got {value.dtype}")
        if not integer and (value.dtype.is_complex or value.dtype == torch.bool):
            raise TypeError(f"{name} must be a floating-point tensor, got {value.dtype}")
        if not integer:
            check_tensor_values(value, name, interval)
    elif integer:
        check_int(value, name)
    else:
        check_number(value, name, interval)


def _ratio_threshold(value: float | torch.Tensor | None, batch: int, device: torch.device) -> torch.Tensor:
    """``marker_ratio`` as the ``[B]`` fp64 threshold the kernels compare ``marker / thinking``
    (an fp64 quotient, correctly rounded) against, so 6 marker tokens of 20 reach 0.3.

    A Python number is kept exactly. A tensor is compared at its own precision: a float32
    (or bf16 / fp16) threshold ``r`` becomes the lower end of the interval of values that
    round to ``r`` in that dtype, so a float32 ``0.3`` (0.30000001) is reached by 6 / 20 too.
    """
    if value is None:
        return filled(_NAN, batch, device, torch.float64)
    if not isinstance(value, torch.Tensor):
        return filled(float(value), batch, device, torch.float64)
    low_precision = value.dtype in (torch.float32, torch.bfloat16, torch.float16)
    dtype = value.dtype if low_precision else torch.float64
    r = per_row_param(value, "marker_ratio", batch, device, NON_NEGATIVE, dtype=dtype)
    if not low_precision:
        return r
    below = torch.nextafter(r, torch.full_like(r, -math.inf))
    return (below.double() + r.double()) / 2  # inf stays inf: off


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
    Each value is checked when it is assigned (at construction too): a wrong type or a
    value out of range raises ``TypeError`` / ``ValueError`` naming the trigger there, not
    at the first decode step; a ``[B]`` tensor's length is checked against the batch when
    the config first meets one.

    Parameters
    ----------
    max_thinking_tokens : int or Tensor [B] int, optional
        Budget trigger: brake once ``thinking_tokens >= max_thinking_tokens``. A negative
        entry turns it off for that row.
    marker_ratio : float or Tensor [B], optional
        Ratio trigger: brake once ``marker_tokens / thinking_tokens >= marker_ratio``
        (and ``thinking_tokens >= min_thinking_tokens``). ``inf`` turns it off for a row.
        Compared exactly: the quotient in fp64 against a number as given, or against a
        float32 / bf16 / fp16 tensor at that tensor's precision, so 6 marker tokens of 20
        reach 0.3 either way.
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

    def __setattr__(self, name: str, value: object) -> None:
        if name in _TRIGGERS:
            _check_trigger(name, value)  # raises TypeError / ValueError naming the trigger
        object.__setattr__(self, name, value)

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

        # Checked as [B] int64 / fp32 rows, then widened: fp64 holds both exactly (integers
        # up to 2^53), so every comparison keeps its result. The ratio threshold is fp64
        # from the start (the fp32 0.3 is above 6 / 20).
        columns = {
            Config.MAX_THINKING_TOKENS: integer(self.max_thinking_tokens, "max_thinking_tokens"),
            Config.MARKER_RATIO: _ratio_threshold(self.marker_ratio, batch, device),
            Config.MIN_THINKING_TOKENS: integer(self.min_thinking_tokens, "min_thinking_tokens"),
            Config.MAX_STEPS: integer(self.max_steps, "max_steps"),
            Config.END_THINK_MARGIN: real(self.end_think_margin, "end_think_margin", ANY),
        }
        return torch.stack([columns[field].to(torch.float64) for field in Config], dim=1)


# Which tables each packed state fits, per base tensor pair (so the row views that vLLM's
# adapter builds each step share the entry): the sizes ``(S, K)`` (automaton states, forced
# tokens) of the tables it was last checked against or stepped with. Every value a kernel
# writes indexes the tables it steps with, so a state fits every table at least that large
# without a look; smaller tables (a state carried over) are checked once, a host sync on the
# GPU. In-place edits are not tracked: the kernels clamp such values (csrc/braking_row.h).
_FITS: dict[tuple[int, int], tuple[weakref.ref, weakref.ref, int, int]] = {}


def _base(t: torch.Tensor) -> torch.Tensor:
    return t if t._base is None else t._base


def state_problem(counters: torch.Tensor, flags: torch.Tensor, states: int, brake_len: int) -> str | None:
    """What makes a packed state unusable with tables of ``states`` automaton states and
    ``brake_len`` forced tokens, or None: a value some row still thinking would index with.
    Reads the state (a host sync on the GPU)."""
    in_think, braking = flags[:, Flag.IN_THINK], flags[:, Flag.BRAKING]
    thinking = in_think & ~braking
    checks = (
        ("ac_state", Counter.AC_STATE, thinking, states, f"the tables' {states} automaton states"),
        ("delim_state", Counter.DELIM_STATE, thinking, 3, "the delimiter matcher's states 0..2"),
        ("brake_pos", Counter.BRAKE_POS, in_think & braking, brake_len, f"the tables' {brake_len} forced tokens"),
    )
    bad = torch.stack([rows & ((counters[:, col] < 0) | (counters[:, col] >= n)) for _, col, rows, n, _ in checks])
    if bad.numel() == 0 or not bool(bad.any()):
        return None
    which, row = (int(i) for i in bad.nonzero()[0])
    name, col, _, _, what = checks[which]
    return (f"state.{name}[{row}] = {int(counters[row, col])} is outside {what}: a state carried over from "
            "other marker tables? Start a fresh BrakingState for these tables")


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
        state = cls(counters, flags)
        state._record_fit(1, 1)  # fresh values index any tables
        return state

    def ensure_fits(self, tables) -> None:
        """Raise ``ValueError`` unless every row still thinking can be stepped with ``tables``
        (:class:`~mta_kernels.braking.MarkerTables`): automaton state, delimiter state and
        forced-token position inside them.

        Cheap when the state was made for or last stepped with tables at least as large (a
        dictionary look-up); otherwise, e.g. for a state carried over to smaller tables or
        built from tensors, its values are read once (a host sync on the GPU).
        """
        S, K = tables.layout[TableField.STATES], tables.layout[TableField.BRAKE_LEN]
        c, f = self.counters, self.flags
        cb, fb = _base(c), _base(f)
        entry = _FITS.get((id(cb), id(fb)))
        if entry is not None and entry[0]() is cb and entry[1]() is fb and S >= entry[2] and K >= entry[3]:
            if S != entry[2] or K != entry[3]:
                _FITS[id(cb), id(fb)] = (entry[0], entry[1], S, K)  # the step keeps it inside these
            return
        problem = state_problem(c, f, S, K)
        if problem is not None:
            raise ValueError(problem)
        self._record_fit(S, K)

    def _record_fit(self, S: int, K: int) -> None:
        """Remember that this state (all of its base tensors' rows) fits tables >= (S, K)."""
        c, f = self.counters, self.flags
        cb, fb = _base(c), _base(f)
        if c.numel() != cb.numel() or f.numel() != fb.numel():
            return  # rows of a larger state: the other rows were not looked at
        if len(_FITS) > 1024:
            for key in [k for k, (rc, rf, _, _) in _FITS.items() if rc() is None or rf() is None]:
                del _FITS[key]
        _FITS[id(cb), id(fb)] = (weakref.ref(cb), weakref.ref(fb), S, K)

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
