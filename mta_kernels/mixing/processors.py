"""Guided logits mixing as a transformers ``LogitsProcessor``.

The model being decoded is model 0: its ``scores`` come in; the other K − 1 models' logits
for the same step come from ``sources``, callables ``source(input_ids) -> [B, V]``
(:class:`mta.mixing.ModelLogits` runs a transformers model with its own KV cache). The
processor returns the mixture, which transformers' warpers (temperature, top-k, top-p) and
sampler — or :func:`mta.generate`'s sampler — then treat as the logits.

Only torch is imported here; transformers is not needed to build or call the processor.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

import torch

from mta_kernels.mixing.recipes import MixRecipe

__all__ = ["MixingLogitsProcessor"]

LogitsSource = Callable[..., torch.Tensor]


def _takes_state(fn: Callable) -> bool:
    try:
        return "state" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


class MixingLogitsProcessor:
    """transformers ``LogitsProcessor``: ``processor(input_ids, scores) -> mixed scores``.

    Each call asks every source for its next-token logits at ``input_ids`` and returns
    ``recipe.mix([scores, *others], vocab_size)`` in fp32: ``-inf`` where the recipe removed
    a token. With ``vocab_size`` smaller than the width of ``scores``, the columns past it
    come back as ``-inf`` (never chosen), so the result keeps the width transformers expects.

    Works in ``model.generate(..., logits_processor=LogitsProcessorList([processor]))``
    (greedy: the argmax of the mixture; sampling: transformers' warpers run on the mixture)
    and in :func:`mta.generate` (``logits_processors=[processor]``), which also passes its
    decode ``state`` on to the sources that take one (for :func:`mta.generate` prefer its
    ``mixing=`` argument: the same mixture, sampled in one fused pass).

    Parameters
    ----------
    recipe : MixRecipe
        The mixture; model 0 is the model being decoded.
    sources : sequence of callables
        ``recipe.num_models - 1`` callables ``source(input_ids) -> Tensor [B, V_k]`` giving
        models 1..K-1's logits for the token after ``input_ids`` (a source whose signature
        has a ``state`` parameter also gets :func:`mta.generate`'s decode state). Their
        results are moved to the device of ``scores``.
    vocab_size : int, optional
        Mix the first ``vocab_size`` tokens; needed when the models' widths differ.

    Examples
    --------
    Contrastive decoding of ``expert`` against ``amateur`` (two transformers causal LMs that
    share a tokenizer)::

        from transformers import LogitsProcessorList
        from mta.mixing import ModelLogits
        from mta_kernels.mixing.recipes import contrastive_decoding

        proc = MixingLogitsProcessor(contrastive_decoding(beta=0.5), [ModelLogits(amateur)])
        out = expert.generate(input_ids, do_sample=False, max_new_tokens=32,
                              logits_processor=LogitsProcessorList([proc]))
        proc.reset()  # before the next generate call

    With any callable as the source:

    >>> import torch
    >>> from mta_kernels.mixing.recipes import weighted_ensemble
    >>> proc = MixingLogitsProcessor(weighted_ensemble([1.0, 1.0]), [lambda ids: torch.tensor([[3.0, 0.0]])])
    >>> proc(torch.tensor([[5, 6]]), torch.tensor([[0.0, 1.0]])).argmax(-1)
    tensor([0])
    """

    def __init__(self, recipe: MixRecipe, sources: Sequence[LogitsSource], *, vocab_size: int | None = None):
        if not isinstance(recipe, MixRecipe):
            raise TypeError(f"recipe must be a MixRecipe, got {type(recipe).__name__}")
        if callable(sources):
            sources = [sources]
        if isinstance(sources, (str, bytes)) or not isinstance(sources, Sequence):
            raise TypeError(f"sources must be a sequence of callables, got {type(sources).__name__}")
        if len(sources) != recipe.num_models - 1:
            raise ValueError(
                f"the recipe mixes {recipe.describe_models()}: model 0 is the one being decoded, so "
                f"sources must hold the other {recipe.num_models - 1}, got {len(sources)}"
            )
        for i, source in enumerate(sources):
            if not callable(source):
                raise TypeError(f"sources[{i}] must be callable (input_ids) -> [B, V] logits")
        self.recipe = recipe
        self.sources = list(sources)
        self.vocab_size = vocab_size
        self._source_takes_state = [_takes_state(s) for s in self.sources]

    def reset(self) -> None:
        """Reset every source that can be reset (before a new generation)."""
        for source in self.sources:
            reset = getattr(source, "reset", None)
            if callable(reset):
                reset()

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        # Two arguments only: transformers' LogitsProcessorList refuses any other parameter.
        return self.call_with_state(input_ids, scores)

    def call_with_state(
        self, input_ids: torch.LongTensor, scores: torch.FloatTensor, state: Any = None
    ) -> torch.FloatTensor:
        """``__call__`` with :func:`mta.generate`'s decode ``state`` (which calls this one),
        passed on to the sources that take a ``state`` keyword."""
        others = []
        for source, takes_state in zip(self.sources, self._source_takes_state):
            logits = source(input_ids, state=state) if takes_state else source(input_ids)
            others.append(logits.to(scores.device) if isinstance(logits, torch.Tensor) else logits)
        mixed = self.recipe.mix([scores, *others], vocab_size=self.vocab_size)
        width = scores.shape[-1] if isinstance(scores, torch.Tensor) and scores.dim() == 2 else mixed.shape[1]
        if mixed.shape[1] < width:
            pad = mixed.new_full((mixed.shape[0], width - mixed.shape[1]), float("-inf"))
            mixed = torch.cat([mixed, pad], dim=1)
        return mixed
