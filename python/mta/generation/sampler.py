"""What the decode loop samples with: a protocol, and the plain fused sampler.

:func:`mta.generate` takes one token per row per step from a *decode sampler*. The plain
one wraps :class:`mta_kernels.Sampler` (built once for the batch: checks and backend choice
done, per step only the kernel); :class:`mta.mixing.Mixing` starts another that runs its
models in lockstep and samples their mixture. The engine knows only this protocol, so it
imports neither :mod:`mta.mixing` nor any other sampler.

A sampler that also has ``keep_rows(index)`` lets the loop drop finished rows
(``generate(compact_every=...)``); one without it (the mixing sampler, whose lockstep
models hold their own caches) makes that option a clear error.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch

import mta_kernels as mk
from mta.generation.params import SamplingParams
from mta_kernels.sampling.ops import SAMPLE

__all__ = ["DecodeSampler", "PlainSampler", "SamplerFactory"]


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
