"""transformers ``LogitsProcessor`` classes: braking and guided logits mixing.

* :class:`BrakingLogitsProcessor` keeps a :class:`~mta_kernels.braking.BrakingState` and
  calls :func:`~mta_kernels.braking.braking_step` once per decode step with the token each
  row sampled last.
* :class:`MixingLogitsProcessor` mixes the scores of the model being decoded (model 0) with
  the other K - 1 models' logits for the same step, which come from ``sources``, callables
  ``source(input_ids) -> [B, V]`` (:class:`mta.mixing.ModelLogits` runs a transformers model
  with its own KV cache). It returns the mixture, which transformers' warpers (temperature,
  top-k, top-p) and sampler, or :func:`mta.generate`'s sampler, then treat as the logits.

Both follow transformers' ``processor(input_ids, scores) -> scores`` protocol and also take
:func:`mta.generate`'s decode state through ``call_with_state``. Only torch is imported
here: transformers is not needed to build or call them. The vLLM adapter is in
:mod:`mta_kernels.integrations.vllm`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

import torch

from mta_kernels.braking import BrakingConfig, BrakingState, MarkerTables, braking_step
from mta_kernels.mixing.recipes import MixRecipe

__all__ = ["BrakingLogitsProcessor", "MixingLogitsProcessor"]


class BrakingLogitsProcessor:
    """transformers ``LogitsProcessor``: ``processor(input_ids, scores) -> scores``.

    The first call of a generation starts a fresh state and consumes nothing: the prompt is
    not thinking text. A call starts a new generation when the batch size or device changed,
    when ``input_ids`` did not grow by exactly one token since the last call, or (inside
    :func:`mta.generate`, which passes its decode ``state``) at decode step 0. Each later
    call consumes ``input_ids[:, -1]``, the token sampled at the previous step; with a decode
    ``state``, rows already finished consume nothing (their EOS and padding are not
    thinking). ``cfg`` may be replaced or its per-row tensors modified between steps. Works
    at any batch size; ``scores`` is modified in place and returned.

    Parameters
    ----------
    tables : MarkerTables
        Moved to the scores' device on first use.
    cfg : BrakingConfig
    in_think : bool or Tensor [B] bool
        Whether rows start inside ``<think>`` (the prompt opened it); rows that do not
        (ThinkFree prompts) pass through untouched.
    """

    def __init__(self, tables: MarkerTables, cfg: BrakingConfig, in_think: bool | torch.Tensor = True):
        if not isinstance(tables, MarkerTables):
            raise TypeError(f"tables must be MarkerTables, got {type(tables).__name__}")
        if not isinstance(cfg, BrakingConfig):
            raise TypeError(f"cfg must be a BrakingConfig, got {type(cfg).__name__}")
        self.tables = tables
        self.cfg = cfg
        self.in_think = in_think
        self.state: BrakingState | None = None
        self._width = -1  # input_ids width at the last call

    def reset(self) -> None:
        """Forget the state: the next call starts a new generation."""
        self.state = None
        self._width = -1

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        # Two arguments only: transformers' LogitsProcessorList refuses any other parameter.
        return self.call_with_state(input_ids, scores)

    def call_with_state(
        self, input_ids: torch.LongTensor, scores: torch.FloatTensor, state: Any = None
    ) -> torch.FloatTensor:
        """``__call__`` with :func:`mta.generate`'s decode ``state`` (which calls this one)."""
        B, width = scores.shape[0], input_ids.shape[-1]
        if self.tables.device != scores.device:
            self.tables = self.tables.to(scores.device)
        fresh = (
            self.state is None or self.state.batch_size != B or self.state.device != scores.device
            or width != self._width + 1 or getattr(state, "step", None) == 0
        )
        self._width = width
        if fresh:
            self.state = BrakingState.new(B, scores.device, self.in_think)
            last = None
        else:
            last = input_ids[:, -1]
            finished = getattr(state, "finished", None)
            if finished is not None:
                last = last.masked_fill(finished, -1)
        if not scores.is_contiguous():
            scores = scores.contiguous()
        return braking_step(scores, last, self.state, self.tables, self.cfg)


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
