"""Per-row braking configuration and decoding state."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from mta_kernels._validation import ANY, NON_NEGATIVE, filled, per_row_param

__all__ = ["BrakingConfig", "BrakingState", "BRAKE_REASONS", "DELIM_START"]

#: brake_reason codes.
BRAKE_REASONS = {0: "none", 1: "budget", 2: "marker ratio", 3: "steps", 4: "margin"}

#: Step-delimiter matcher state at the start of thinking: "inside a break", so blank lines
#: before the first step do not count as a delimiter (as mta.sbt.split_steps drops them).
DELIM_START = 2

_NAN = math.nan  # one object, so the cached fills below hit


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

    def normalised(self, batch: int, device: torch.device) -> tuple[torch.Tensor, ...]:
        """``[B]`` tensors (max_thinking_tokens, marker_ratio, min_thinking_tokens, max_steps,
        end_think_margin) as the kernels take them: int64 / fp32, off = -1 / NaN.

        Memoised per config: scalars by value, tensors by identity and version (the memo
        holds them, so an id is never reused), so a new value or an in-place edit between
        steps still takes effect. The returned tensors must be treated as read-only.
        """
        vals = self._values()
        versions = tuple(v._version if isinstance(v, torch.Tensor) else None for v in vals)
        memo = self._memo
        if (memo is not None and memo[0] == batch and memo[1] == device and memo[3] == versions
                and all(a is b or (not isinstance(a, torch.Tensor) and type(a) is type(b) and a == b)
                        for a, b in zip(memo[2], vals))):
            return memo[4]
        out = self._normalise(batch, device)
        self._memo = (batch, device, vals, versions, out)
        return out

    def _normalise(self, batch: int, device: torch.device) -> tuple[torch.Tensor, ...]:

        def integer(value, name):
            if value is None:
                return filled(-1, batch, device, torch.int64)
            return per_row_param(value, name, batch, device, integer=True)

        def real(value, name, interval):
            if value is None:
                return filled(_NAN, batch, device, torch.float32)
            return per_row_param(value, name, batch, device, interval)

        return (
            integer(self.max_thinking_tokens, "max_thinking_tokens"),
            real(self.marker_ratio, "marker_ratio", NON_NEGATIVE),
            integer(self.min_thinking_tokens, "min_thinking_tokens"),
            integer(self.max_steps, "max_steps"),
            real(self.end_think_margin, "end_think_margin", ANY),
        )


@dataclass
class BrakingState:
    """Per-row state of the braking controller; every field a ``[B]`` tensor on one device.

    ``thinking_tokens``, ``marker_tokens``, ``steps``, ``brake_reason``, ``ac_state``
    (automaton state), ``counted_until`` (position up to which marker tokens are counted) and
    ``brake_pos`` (index of the next forced token) and ``delim_state`` (the step-delimiter
    matcher's state, :data:`DELIM_START` at the start of thinking) are int64; ``in_think``,
    ``braking``, ``braked`` bool.
    """

    thinking_tokens: torch.Tensor
    marker_tokens: torch.Tensor
    steps: torch.Tensor
    in_think: torch.Tensor
    braking: torch.Tensor
    braked: torch.Tensor
    brake_reason: torch.Tensor
    ac_state: torch.Tensor
    counted_until: torch.Tensor
    brake_pos: torch.Tensor
    delim_state: torch.Tensor

    @classmethod
    def new(cls, batch_size: int, device: torch.device | str = "cpu", in_think: bool | torch.Tensor = True) -> BrakingState:
        """Fresh state for ``batch_size`` rows; ``in_think`` a bool or a ``[B]`` bool tensor."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 0:
            raise ValueError(f"batch_size must be a non-negative int, got {batch_size!r}")
        device = torch.device(device)

        def zeros(dtype=torch.int64):
            return torch.zeros(batch_size, dtype=dtype, device=device)

        if isinstance(in_think, torch.Tensor):
            if in_think.shape != (batch_size,) or in_think.dtype != torch.bool:
                raise ValueError(f"in_think must be a bool or a [{batch_size}] bool tensor, "
                                 f"got {in_think.dtype} of shape {tuple(in_think.shape)}")
            think = in_think.to(device).clone()
        elif isinstance(in_think, bool):
            think = torch.full((batch_size,), in_think, dtype=torch.bool, device=device)
        else:
            raise TypeError(f"in_think must be a bool or a bool tensor, got {type(in_think).__name__}")
        return cls(
            thinking_tokens=zeros(), marker_tokens=zeros(), steps=zeros(), in_think=think,
            braking=zeros(torch.bool), braked=zeros(torch.bool), brake_reason=zeros(),
            ac_state=zeros(), counted_until=zeros(), brake_pos=zeros(),
            delim_state=torch.full((batch_size,), DELIM_START, dtype=torch.int64, device=device),
        )

    def reset_row(self, row: int, in_think: bool) -> None:
        """Start row ``row`` afresh (a new request in that slot)."""
        for t in self.tensors():
            t[row] = 0
        self.delim_state[row] = DELIM_START
        self.in_think[row] = in_think

    def tensors(self) -> tuple[torch.Tensor, ...]:
        """The fields in the op's argument order (spelled out: this runs every decode step)."""
        return (self.thinking_tokens, self.marker_tokens, self.steps, self.in_think, self.braking, self.braked,
                self.brake_reason, self.ac_state, self.counted_until, self.brake_pos, self.delim_state)

    @property
    def batch_size(self) -> int:
        return int(self.thinking_tokens.shape[0])

    @property
    def device(self) -> torch.device:
        return self.thinking_tokens.device

    def clone(self) -> BrakingState:
        return BrakingState(*(t.clone() for t in self.tensors()))

    def to(self, device: torch.device | str) -> BrakingState:
        return BrakingState(*(t.to(device) for t in self.tensors()))
