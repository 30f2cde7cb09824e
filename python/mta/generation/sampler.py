"""What the decode loop samples with: a protocol, and the plain fused sampler.

:func:`mta.generate` takes one token per row per step from a *decode sampler*. The plain
one wraps :class:`mta_kernels.Sampler` (built once for the batch: checks and backend choice
done, per step only the kernel); :class:`mta.mixing.Mixing` starts another that runs its
models in lockstep and samples their mixture. The engine knows only this protocol, so it
imports neither :mod:`mta.mixing` nor any other sampler.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch

import mta_kernels as mk
from mta.generation.params import SamplingParams

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
    """:class:`mta_kernels.Sampler` over ``B = prompts * n`` rows: one fused kernel call per step."""

    def __init__(self, params: SamplingParams, batch_size: int, device: torch.device):
        self._sampler = mk.Sampler(batch_size, device, params.temperature, params.top_k, params.top_p, params.min_p)

    def prefill(self, logits: torch.Tensor) -> None:
        pass

    def sample(self, logits: torch.Tensor, generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
        return self._sampler(logits, generator=generator)

    def advance(self, tokens: torch.Tensor) -> None:
        pass
