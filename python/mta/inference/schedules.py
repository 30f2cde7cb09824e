"""Per-step sampling parameters for ``mta.generate(schedule=...)``, computed on the device.

Each schedule is a :class:`mta.generation.sampler.ParamSchedule`: called once per decode
step with a :class:`~mta.generation.sampler.StepContext` (step index, this step's logits,
last tokens, the call's own parameters, per-row state), it returns ``[B]`` tensors that
:class:`~mta.generation.sampler.ScheduledSampler` writes into the tensors the fused sampler
reads. No schedule here reads a value back to the host, so a GPU decode loop stays
sync-free.

* :class:`EntropyAdaptiveTemperature` — EDT (Zhang et al. 2024, arXiv 2403.14541):
  ``T = T0 · N^(θ / H)`` with ``H`` the entropy of this step's distribution, so confident
  steps sample colder and uncertain ones near ``T0``.
* :class:`Annealing` — a parameter moving from ``start`` to ``end`` over ``steps`` steps
  (linear, cosine or exponential), then held; per-row ``start`` / ``end`` allowed.
* :class:`Piecewise` — per-row values that change at given steps ("row 3 drops to T = 0.2
  at step 40").
* :class:`SwitchOnToken` — per-row state: each row samples with ``before`` until it emits
  one of ``token_ids`` (e.g. the token of ``####`` or ``</think>``), then with ``after``
  ("explore while reasoning, answer greedily").
* :class:`Compose` — several schedules, later ones winning on a shared parameter.

``tests/test_inference_schedule.py`` checks each against a step-by-step reference loop
(uncached forward passes, parameters computed row by row in Python).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch

from mta.generation.sampler import SCHEDULED_PARAMS, StepContext

__all__ = ["Annealing", "Compose", "EntropyAdaptiveTemperature", "Piecewise", "SwitchOnToken", "entropy"]


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """Entropy in nats of ``softmax(logits)`` per row, fp32; ``-inf`` entries count as 0."""
    return torch.special.entr(torch.softmax(logits.float(), dim=-1)).sum(-1)


class _Described:
    """``repr`` from the public attributes, so a schedule's description is stable across
    processes (the evaluation harness compares technique configs when it resumes)."""

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({args})"


def _check_param(param: str) -> str:
    if param not in SCHEDULED_PARAMS:
        raise ValueError(f"param must be one of {SCHEDULED_PARAMS}, got {param!r}")
    return param


def _positive(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (value > 0) or math.isinf(value):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


class EntropyAdaptiveTemperature(_Described):
    """EDT: per row, ``T = T0 · base^(theta / H)`` from the entropy ``H`` of this step.

    Parameters
    ----------
    theta : float
        > 0. Larger: colder on confident steps (tune it per task; 0.5 is our default).
    base : float
        In ``(0, 1)``: ``N`` of the paper's formula (default 0.8).
    t0 : float, optional
        The temperature as ``H → ∞``; default: the call's own temperature per row.
    min_temperature, max_temperature : float
        Clamp on the result (``H = 0`` gives ``T = min_temperature``; 0 is greedy).

    Notes
    -----
    ``H`` is the entropy of ``softmax(logits)`` at temperature 1, of the logits the sampler
    gets (after ``logits_processors`` and braking), in nats.
    """

    def __init__(self, theta: float = 0.5, base: float = 0.8, *, t0: float | None = None,
                 min_temperature: float = 0.0, max_temperature: float = float("inf")):
        self.theta = _positive(theta, "theta")
        if isinstance(base, bool) or not isinstance(base, (int, float)) or not 0 < base < 1:
            raise ValueError(f"base must be in (0, 1), got {base!r}")
        self.base = float(base)
        self.t0 = None if t0 is None else _positive(t0, "t0")
        if not 0 <= min_temperature <= max_temperature:
            raise ValueError(f"need 0 <= min_temperature <= max_temperature, got {min_temperature!r}, "
                             f"{max_temperature!r}")
        self.min_temperature, self.max_temperature = float(min_temperature), float(max_temperature)

    def __call__(self, ctx: StepContext) -> dict[str, torch.Tensor]:
        h = entropy(ctx.logits)
        t0 = ctx.base.temperature if self.t0 is None else self.t0
        # base ** (theta / H) = exp(theta * ln(base) / H); H = 0 gives exp(-inf) = 0.
        t = t0 * torch.exp((self.theta * math.log(self.base)) / h)
        return {"temperature": t.clamp_(self.min_temperature, self.max_temperature)}


_SHAPES = ("linear", "cosine", "exponential")


class Annealing(_Described):
    """``param`` goes from ``start`` to ``end`` over ``steps`` decode steps, then stays at ``end``.

    Parameters
    ----------
    start, end : float or Tensor [B]
        Values at step 0 and at step ``steps`` and after (per row when tensors).
    steps : int
        >= 1.
    param : str
        ``"temperature"`` (default), ``"top_p"``, ``"min_p"`` or ``"top_k"``.
    shape : {"linear", "cosine", "exponential"}
        The fraction ``f`` of the way at step ``s``: ``s / steps``;
        ``(1 - cos(pi s / steps)) / 2``; or geometric interpolation
        (``start · (end / start)^(s / steps)``, both > 0).
    """

    def __init__(self, start, end, steps: int, *, param: str = "temperature", shape: str = "linear"):
        self.param = _check_param(param)
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps must be an int >= 1, got {steps!r}")
        if shape not in _SHAPES:
            raise ValueError(f"shape must be one of {_SHAPES}, got {shape!r}")
        for name, v in (("start", start), ("end", end)):
            if not isinstance(v, (int, float, torch.Tensor)) or isinstance(v, bool):
                raise TypeError(f"{name} must be a number or a [B] tensor, got {type(v).__name__}")
            if shape == "exponential" and not bool(torch.all(torch.as_tensor(v) > 0)):
                raise ValueError(f"shape='exponential' needs {name} > 0")
        self.start, self.end, self.steps, self.shape = start, end, steps, shape

    def fraction(self, step: int) -> float:
        """How far along (0 … 1) the schedule is at ``step`` (for linear and cosine)."""
        s = min(step, self.steps) / self.steps
        return (1 - math.cos(math.pi * s)) / 2 if self.shape == "cosine" else s

    def __call__(self, ctx: StepContext) -> dict[str, torch.Tensor | float]:
        start, end = self.start, self.end
        if isinstance(start, torch.Tensor):
            start = start.to(ctx.rows.device)[ctx.rows]
        if isinstance(end, torch.Tensor):
            end = end.to(ctx.rows.device)[ctx.rows]
        if self.shape == "exponential":
            s = min(ctx.step, self.steps) / self.steps
            value = start * (end / start) ** s
        else:
            value = start + (end - start) * self.fraction(ctx.step)
        return {self.param: value}


class Piecewise(_Described):
    """Per-row values that change at given steps: ``changes[b] = [(step, value), ...]``.

    Row ``b`` uses the value of its last change at or before the current step; before its
    first change it keeps the call's own value. Rows are the ``B = prompts · n`` rows of
    the generate call (prompt-major); pass one list per row, or one list for every row.
    Built into a ``[B, S]`` table on the device once, so a step is one column lookup.

    Examples
    --------
    >>> sched = Piecewise("temperature", [[(0, 1.0), (16, 0.2)], [(0, 0.7)]])  # doctest: +SKIP
    """

    def __init__(self, param: str, changes: Sequence[Sequence[tuple[int, float]]]):
        self.param = _check_param(param)
        if not isinstance(changes, Sequence) or not changes:
            raise ValueError("changes must be a non-empty list (one list of (step, value) pairs per row)")
        rows = []
        for b, row in enumerate(changes):
            if not isinstance(row, Sequence):
                raise TypeError(f"changes[{b}] must be a list of (step, value) pairs")
            pairs = []
            for pair in row:
                if (not isinstance(pair, Sequence) or len(pair) != 2 or isinstance(pair[0], bool)
                        or not isinstance(pair[0], int) or pair[0] < 0
                        or isinstance(pair[1], bool) or not isinstance(pair[1], (int, float))):
                    raise ValueError(f"changes[{b}] must hold (step >= 0, number) pairs, got {pair!r}")
                pairs.append((int(pair[0]), float(pair[1])))
            rows.append(sorted(pairs))
        self.changes = rows
        self.width = 1 + max((s for row in rows for s, _ in row), default=0)
        self._tables: dict = {}

    def _table(self, batch: int, base: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(values [B, S], set [B, S] bool)`` for ``batch`` rows on ``base``'s device."""
        key = (batch, base.device)
        if key not in self._tables:
            rows = self.changes if len(self.changes) == batch else (
                self.changes * batch if len(self.changes) == 1 else None)
            if rows is None:
                raise ValueError(f"Piecewise has {len(self.changes)} rows of changes but the batch has {batch} "
                                 "rows (prompts * n); give one list per row or one for all")
            values = torch.zeros((batch, self.width), dtype=torch.float64)
            known = torch.zeros((batch, self.width), dtype=torch.bool)
            for b, row in enumerate(rows):
                for step, value in row:
                    values[b, step:] = value
                    known[b, step:] = True
            self._tables[key] = (values.to(base.device), known.to(base.device))
        return self._tables[key]

    def __call__(self, ctx: StepContext) -> dict[str, torch.Tensor]:
        own = getattr(ctx.base, self.param)
        batch = int(ctx.state.setdefault("piecewise_batch", ctx.rows.shape[0]))  # rows at the first step
        values, known = self._table(batch, own)
        col = min(ctx.step, self.width - 1)
        v, k = values[ctx.rows, col], known[ctx.rows, col]
        return {self.param: torch.where(k, v.to(own.dtype), own)}


class SwitchOnToken(_Described):
    """Per row: parameters ``before`` until the row emits one of ``token_ids``, then ``after``.

    The switch is per-row state on the device (``ctx.state["switched"]``, [B] bool), set
    from the previous step's token, so each row changes at its own step.

    Parameters
    ----------
    token_ids : int or list of int
        Tokens that flip a row (e.g. the id of ``"####"`` or ``"</think>"``).
    after : dict
        Parameters once switched, e.g. ``{"temperature": 0.0}`` (greedy answer).
    before : dict, optional
        Parameters until then; default: the call's own.
    """

    def __init__(self, token_ids, after: Mapping[str, float], before: Mapping[str, float] | None = None):
        ids = [token_ids] if isinstance(token_ids, int) and not isinstance(token_ids, bool) else list(token_ids)
        if not ids or any(isinstance(i, bool) or not isinstance(i, int) or i < 0 for i in ids):
            raise ValueError(f"token_ids must be an int >= 0 or a non-empty list of them, got {token_ids!r}")
        self.token_ids = ids
        for name, spec in (("after", after), ("before", before or {})):
            if not isinstance(spec, Mapping):
                raise TypeError(f"{name} must be a dict of parameters, got {type(spec).__name__}")
            for key, value in spec.items():
                _check_param(key)
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise TypeError(f"{name}[{key!r}] must be a number, got {value!r}")
        if not after:
            raise ValueError("after must set at least one parameter")
        self.after, self.before = dict(after), dict(before or {})
        self._ids: dict = {}

    def __call__(self, ctx: StepContext) -> dict[str, torch.Tensor]:
        device = ctx.last_tokens.device
        if device not in self._ids:
            self._ids[device] = torch.tensor(self.token_ids, dtype=torch.int64, device=device)
        if "switched" not in ctx.state:
            ctx.state["switched"] = torch.zeros(ctx.last_tokens.shape[0], dtype=torch.bool, device=device)
        switched = ctx.state["switched"]
        switched |= torch.isin(ctx.last_tokens, self._ids[device])
        out = {}
        for name in dict.fromkeys([*self.before, *self.after]):
            own = getattr(ctx.base, name)
            before = self.before.get(name)
            after = self.after.get(name)
            b = own if before is None else torch.full_like(own, before)
            a = own if after is None else torch.full_like(own, after)
            out[name] = torch.where(switched, a, b)
        return out


class Compose(_Described):
    """Several schedules each step, in order; a later one wins on a parameter both set."""

    def __init__(self, *schedules):
        if not schedules or any(not callable(s) for s in schedules):
            raise TypeError("Compose takes one or more schedules (callables with a StepContext)")
        self.schedules = schedules

    def __call__(self, ctx: StepContext) -> dict:
        out = {}
        for schedule in self.schedules:
            out.update(schedule(ctx) or {})
        return out
