"""Input checks of the mixing ops: K models' logits, their vocabularies, per-model parameters."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from numbers import Integral

import torch

from mta_kernels._validation import (
    FINITE,
    POSITIVE,
    PROBABILITY,
    check_bool,
    check_float_2d,
    per_model_param,
    per_row_param,
)

__all__ = ["MixInputs", "mix_inputs", "model_logits"]


def model_logits(logits: object, vocab_size: int | None) -> list[torch.Tensor]:
    """K ``[B, V]`` views (no copy) cut to the shared vocabulary.

    ``logits`` is a ``[K, B, V]`` tensor or a sequence of K ``[B, V_k]`` tensors (dtypes may
    differ). Widths that differ need ``vocab_size`` (<= every width): a model's logits past
    it (padded embedding rows) are dropped.
    """
    if isinstance(logits, torch.Tensor):
        if logits.dim() != 3:
            raise ValueError(
                f"logits must be a [K, B, V] tensor or a sequence of K [B, V] tensors, got shape {tuple(logits.shape)}"
            )
        models = list(logits.unbind(0))
    elif isinstance(logits, Sequence) and not isinstance(logits, (str, bytes)):
        models = list(logits)
    else:
        raise TypeError(f"logits must be a [K, B, V] tensor or a sequence of K [B, V] tensors, got {type(logits).__name__}")
    if not models:
        raise ValueError("logits holds no model (K = 0)")
    for k, x in enumerate(models):
        check_float_2d(x, f"logits[{k}]", "[B, V]")
    batch, device = models[0].shape[0], models[0].device
    for k, x in enumerate(models[1:], start=1):
        if x.shape[0] != batch:
            raise ValueError(f"logits[{k}] has {x.shape[0]} rows but logits[0] has {batch}")
        if x.device != device:
            raise ValueError(f"logits[{k}] is on {x.device} but logits[0] is on {device}")
    widths = [x.shape[1] for x in models]
    if vocab_size is None:
        if len(set(widths)) > 1:
            listed = ", ".join(f"logits[{k}] has {w}" for k, w in enumerate(widths))
            raise ValueError(
                f"the models' vocabularies differ ({listed}); pass vocab_size=N to mix the first N "
                "tokens of each (e.g. the tokenizer's size when the larger ones are padded embedding rows)"
            )
        vocab_size = widths[0]
    else:
        if isinstance(vocab_size, bool) or not isinstance(vocab_size, Integral):
            raise TypeError(f"vocab_size must be an int, got {type(vocab_size).__name__}")
        if not 1 <= vocab_size <= min(widths):
            raise ValueError(f"vocab_size must be in [1, {min(widths)}] (the narrowest logits), got {vocab_size}")
    if vocab_size == 0:
        raise ValueError("logits have an empty vocabulary (V = 0)")
    # Column stride 1 lets the kernels read rows directly; a row stride of V_k >= V is fine.
    return [(x if x.stride(1) == 1 or x.shape[0] == 0 else x.contiguous())[:, :vocab_size] for x in models]


@dataclass(frozen=True)
class MixInputs:
    """Checked, normalised inputs of one mixing call."""

    logits: list[torch.Tensor]  # K x [B, V], column stride 1
    weights: torch.Tensor  # [K, B] fp32
    temperature: torch.Tensor  # [K, B] fp32
    plausibility: torch.Tensor  # [B] fp32
    normalize: bool
    uses_plausibility: bool  # False only when plausibility is the number 0 (kernels skip it)

    @property
    def batch(self) -> int:
        return self.logits[0].shape[0]

    @property
    def device(self) -> torch.device:
        return self.logits[0].device


def mix_inputs(logits, weights, normalize, temperature, plausibility, vocab_size) -> MixInputs:
    """Check every argument of ``mix_logits`` / ``mix_and_sample`` (errors name it)."""
    models = model_logits(logits, vocab_size)
    check_bool(normalize, "normalize")
    K, B, device = len(models), models[0].shape[0], models[0].device
    return MixInputs(
        logits=models,
        weights=per_model_param(weights, "weights", K, B, device, FINITE),
        temperature=per_model_param(temperature, "temperature", K, B, device, POSITIVE),
        plausibility=per_row_param(plausibility, "plausibility", B, device, PROBABILITY),
        normalize=normalize,
        uses_plausibility=isinstance(plausibility, torch.Tensor) or plausibility > 0,
    )
