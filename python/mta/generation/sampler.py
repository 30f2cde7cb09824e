"""What the decode loop samples with: a protocol, and the plain fused sampler.

:func:`mta.generate` takes one token per row per step from a *decode sampler*. The plain
one wraps :class:`mta_kernels.Sampler` (built once for the batch: checks and backend choice
done, per step only the kernel); :class:`mta.mixing.Mixing` starts another that runs its
models in lockstep and samples their mixture. The engine knows only this protocol, so it
imports neither :mod:`mta.mixing` nor any other sampler.

:class:`ScheduledSampler` is the plain one with parameters that change every step: a
:class:`ParamSchedule` turns the step index, this step's logits and per-row state into
per-row temperature / top-k / top-p / min-p tensors on the device, written in place into the
tensors the fused kernel reads (``generate(schedule=...)``; schedules in
:mod:`mta.inference.schedules`).

A sampler that also has ``keep_rows(index)`` lets the loop drop finished rows
(``generate(compact_every=...)``); one without it (the mixing sampler, whose lockstep
models hold their own caches) makes that option a clear error.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch

import mta_kernels as mk
from mta.generation.params import SamplingParams
from mta_kernels._validation import sampling_rows
from mta_kernels.sampling.ops import SAMPLE

__all__ = ["DecodeSampler", "ParamSchedule", "PlainSampler", "SamplerFactory", "ScheduledSampler", "StepContext"]


@runtime_checkable
class DecodeSampler(Protocol):
    """One generation's sampler: ``prefill`` once, then ``sample`` and ``advance`` each step."""

    def prefill(self, logits: torch.Tensor) -> None:
        """See the first step's logits [B, V] (model 0's, after the prompt) before any sampling."""

    def sample(self, logits: torch.Tensor, generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(tokens [B] int64, logprobs [B] fp32)``; token ``-1`` where nothing can be drawn."""

    def advance(self, tokens: torch.Tensor) -> None:
        """The tokens [B] fed to the model for the next step."""


@runtime_checkable
class SamplerFactory(Protocol):
    """What ``generate(mixing=...)`` takes: binds to one call and returns its sampler."""

    def start(self, model, tokenizer, prompt_ids: list[list[int]], *, n: int, params: SamplingParams,
              chat_template: bool, add_special_tokens: bool | None) -> DecodeSampler:
        ...


class PlainSampler:
    """:class:`mta_kernels.Sampler` over ``B = prompts * n`` rows: one fused kernel call per step.

    After :meth:`keep_rows` it samples only the kept rows, yet still draws the ``B`` uniforms
    of the full batch each step and uses the kept rows' ones: every row then gets the same
    draw as in the uncompacted loop, so a seeded generation does not depend on compaction.
    """

    def __init__(self, params: SamplingParams, batch_size: int, device: torch.device):
        self._params, self._batch_size, self._device = params, batch_size, device
        self._rows: torch.Tensor | None = None  # original rows still sampled; None: all of them
        self._sampler = mk.Sampler(batch_size, device, params.temperature, params.top_k, params.top_p, params.min_p)

    def prefill(self, logits: torch.Tensor) -> None:
        pass

    def sample(self, logits: torch.Tensor, generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
        if self._rows is None:
            return self._sampler(logits, generator=generator)
        uniform = torch.rand(self._batch_size, generator=generator, device=self._device, dtype=torch.float32)
        return self._kernel(logits.contiguous(), *self._sampler.params, uniform[self._rows])

    def keep_rows(self, index: torch.Tensor) -> None:
        """Sample only rows ``index`` ([B'] int64 positions in the current rows) from now on:
        the sampler is rebuilt on those rows' parameters."""
        self._rows = index if self._rows is None else self._rows[index]
        p = self._params
        kept = [v[self._rows] if isinstance(v, torch.Tensor) else v for v in (p.temperature, p.top_k, p.top_p, p.min_p)]
        self._sampler = mk.Sampler(int(self._rows.numel()), self._device, *kept)
        self._kernel = SAMPLE.kernel(self._device)

    def advance(self, tokens: torch.Tensor) -> None:
        pass


#: The parameters a schedule may set each step, with the range each is clamped to.
SCHEDULED_PARAMS = ("temperature", "top_k", "top_p", "min_p")


@dataclass
class StepContext:
    """What a :class:`ParamSchedule` sees at one decode step (all tensors on the device).

    Row ``b`` of every ``[B]`` tensor is live row ``b``; ``rows[b]`` is its index in the
    original batch (``arange(B)`` until rows are dropped with ``keep_rows``), so a schedule
    holding per-row tables indexes them with ``rows``.
    """

    step: int  # decode step: 0 is the first generated token
    logits: torch.Tensor  # [B, V], this step's logits (after logits_processors and braking)
    last_tokens: torch.Tensor  # [B] int64, the token each row took at the previous step (-1 at step 0)
    base: SamplingParams  # the call's own parameters, each a [B] tensor (read them, don't write them)
    rows: torch.Tensor  # [B] int64, original row index of each live row
    state: dict  # the schedule's per-generation state: [B, ...] tensors here follow keep_rows


@runtime_checkable
class ParamSchedule(Protocol):
    """Per-step sampling parameters computed on the device (``generate(schedule=...)``).

    Called once per decode step, before the fused sampler, with a :class:`StepContext`;
    returns None (no change) or the parameters to change this step, each a ``[B]`` tensor on the device or a
    Python number (e.g. ``{"temperature": t}``); parameters it leaves out keep their value
    from the previous step. Must not synchronise with the host (no ``.item()``, no
    ``bool(tensor)``) if the decode loop is to stay sync-free. Concrete schedules:
    :mod:`mta.inference.schedules`.
    """

    def __call__(self, ctx: StepContext) -> Mapping[str, torch.Tensor | float | int]:
        ...


class ScheduledSampler:
    """The fused sampler with per-row parameters a :class:`ParamSchedule` rewrites every step.

    One :class:`mta_kernels.Sampler` is built over four ``[B]`` tensors this object owns
    (the sampler reads them, uncopied, at every call); each step the schedule's values are
    written into them in place, NaN replaced by the call's own value and clamped into the
    kernel's ranges (temperature ``>= 0``, top-p in ``[1e-6, 1]``, min-p in ``[0, 1]``), then
    the same fused kernel samples the batch. Nothing reads a value back to the host.

    Every step's parameters are recorded in ``[max_new_tokens, B]`` tensors
    (:meth:`trace`, also ``GenerationResult.extras["schedule"]``).
    """

    _LIMITS = {"temperature": (0.0, None), "top_k": (None, None), "top_p": (1e-6, 1.0), "min_p": (0.0, 1.0)}

    def __init__(self, params: SamplingParams, batch_size: int, device: torch.device, schedule: ParamSchedule,
                 max_new_tokens: int):
        if not callable(schedule):
            raise TypeError(f"schedule must be callable (a ParamSchedule), got {type(schedule).__name__}")
        B = batch_size
        rows = sampling_rows(params.temperature, params.top_k, params.top_p, params.min_p, B, device)
        # The call's own values (read-only for schedules) and the live tensors the kernel reads.
        self.base = SamplingParams(*(r.clone() for r in rows))
        self.live = {name: r.clone() for name, r in zip(SCHEDULED_PARAMS, rows)}
        self._sampler = mk.Sampler(B, device, *(self.live[name] for name in SCHEDULED_PARAMS))
        for name, used in zip(SCHEDULED_PARAMS, self._sampler.params):
            if used is not self.live[name]:  # the in-place updates must reach the kernel
                raise RuntimeError(f"mk.Sampler copied {name}; ScheduledSampler needs it to read the tensor given")
        self.schedule = schedule
        self.device = device
        self.rows = torch.arange(B, device=device)
        self._batch_size = B
        self._compacted = None  # the bare kernel, once rows were dropped (keep_rows)
        self.last_tokens = torch.full((B,), -1, dtype=torch.int64, device=device)
        self.state: dict = {}
        self.step = 0
        self._max_steps = max_new_tokens
        self._trace = {name: torch.zeros((max_new_tokens, B), dtype=r.dtype, device=device)
                       for name, r in self.live.items()}

    def prefill(self, logits: torch.Tensor) -> None:
        pass

    def _apply(self, name: str, value) -> None:
        if name not in self.live:
            raise ValueError(f"schedule returned {name!r}; it may set {', '.join(SCHEDULED_PARAMS)}")
        live = self.live[name]
        if not isinstance(value, torch.Tensor):
            live.fill_(value)
        else:
            if value.dim() > 1 or (value.dim() == 1 and value.shape[0] != live.shape[0]):
                raise ValueError(f"schedule returned {name} of shape {tuple(value.shape)}; expected "
                                 f"[{live.shape[0]}] (one value per live row) or a scalar")
            if value.is_floating_point() and name != "top_k":
                value = torch.where(torch.isnan(value), getattr(self.base, name), value)
            live.copy_(value)
        lo, hi = self._LIMITS[name]
        if lo is not None or hi is not None:
            live.clamp_(lo, hi)

    def sample(self, logits: torch.Tensor, generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
        ctx = StepContext(self.step, logits, self.last_tokens, self.base, self.rows, self.state)
        changes = self.schedule(ctx)
        for name, value in (changes or {}).items():
            self._apply(name, value)
        if self.step < self._max_steps:
            for name, live in self.live.items():
                self._trace[name][self.step, self.rows] = live
        self.step += 1
        if self._compacted is None:
            return self._sampler(logits, generator=generator)
        # As PlainSampler: the full batch's uniforms, the kept rows' ones used.
        uniform = torch.rand(self._batch_size, generator=generator, device=self.device, dtype=torch.float32)
        return self._compacted(logits.contiguous(), *self._sampler.params, uniform[self.rows])

    def advance(self, tokens: torch.Tensor) -> None:
        self.last_tokens = tokens

    def keep_rows(self, index: torch.Tensor) -> None:
        """Keep only the rows ``index`` ([B'] int64, on the device) from now on: parameters,
        the schedule's ``[B, ...]`` state and the row map follow; the trace keeps every row."""
        B = self.rows.shape[0]
        self.rows = self.rows[index]
        self.last_tokens = self.last_tokens[index]
        self.base = SamplingParams(*(getattr(self.base, f)[index] for f in SCHEDULED_PARAMS))
        self.live = {name: t[index] for name, t in self.live.items()}
        self.state = {k: (v[index] if isinstance(v, torch.Tensor) and v.dim() >= 1 and v.shape[0] == B else v)
                      for k, v in self.state.items()}
        self._sampler = mk.Sampler(self.rows.shape[0], self.device, *(self.live[n] for n in SCHEDULED_PARAMS))
        self._compacted = SAMPLE.kernel(self.device)

    def trace(self) -> dict[str, torch.Tensor]:
        """Each parameter at each step, ``[steps, B]`` (original rows; zeros where a row was dropped)."""
        return {name: t[: self.step] for name, t in self._trace.items()}
