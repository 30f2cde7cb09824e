"""transformers ``LogitsProcessor`` classes: braking and guided logits mixing.

* :class:`BrakingLogitsProcessor` builds a :class:`~mta_kernels.braking.BrakingController`
  at the first step of each generation (tables, config and kernel checked once) and runs its
  step once per decode step with the token each row sampled last.
* :class:`MixingLogitsProcessor` mixes the scores of the model being decoded (model 0) with
  the other K - 1 models' logits for the same step, which come from ``sources``, callables
  ``source(input_ids) -> [B, V]`` (:class:`mta.mixing.ModelLogits` runs a transformers model
  with its own KV cache). It returns the mixture, which transformers' warpers (temperature,
  top-k, top-p) and sampler, or :func:`mta.generate`'s sampler, then treat as the logits.

Both follow transformers' ``processor(input_ids, scores) -> scores`` protocol and also take
:func:`mta.generate`'s decode state through ``call_with_state``. Inside transformers'
``generate`` a stateful processor tells the next step from a new generation by the content
of ``input_ids`` (:mod:`mta_kernels.integrations.history`); beam search and assisted
decoding, which reorder or rewind rows, raise. Only torch is imported here: transformers
is not needed to build or call them. The vLLM adapter is in
:mod:`mta_kernels.integrations.vllm`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from numbers import Integral
from typing import Any

import torch

from mta_kernels._validation import check_int
from mta_kernels.braking import BrakingConfig, BrakingController, BrakingState, MarkerTables
from mta_kernels.braking.step import check_config
from mta_kernels.integrations.history import RowHistory, RowHistoryError
from mta_kernels.mixing.recipes import MixRecipe

__all__ = ["BrakingLogitsProcessor", "MixingLogitsProcessor", "RowHistoryError"]


def _token_ids(value: int | Sequence[int] | None, name: str) -> tuple[int, ...] | None:
    """``None``, or the ids as a tuple of ints >= 0 (one int or a sequence of them)."""
    if value is None:
        return None
    ids = [value] if isinstance(value, Integral) else value
    if isinstance(ids, (str, bytes)) or not isinstance(ids, (Sequence, torch.Tensor)):
        raise TypeError(f"{name} must be an int, a sequence of ints or None, got {type(value).__name__}")
    ids = ids.reshape(-1).tolist() if isinstance(ids, torch.Tensor) else list(ids)
    for i in ids:
        if isinstance(i, bool) or not isinstance(i, Integral) or i < 0:
            raise ValueError(f"{name} must hold token ids (ints >= 0), got {value!r}")
    return tuple(int(i) for i in ids)


class BrakingLogitsProcessor:
    """transformers ``LogitsProcessor``: ``processor(input_ids, scores) -> scores``.

    The first call of a generation builds a :class:`~mta_kernels.braking.BrakingController`
    for its batch and consumes nothing: the prompt is not thinking text. Each later call
    consumes ``input_ids[:, -1]``, the token sampled at the previous step. ``scores`` is
    modified in place and returned.

    **Thinking tokens** (the one definition, here and in :class:`mta.generate`'s
    :class:`~mta.generation.BrakingReport`): the tokens a row generated inside the thinking
    before it ended — naturally at the end-of-thinking token, or by a brake. The closing tag
    and the forced brake text are not thinking tokens (the report counts the forced tokens
    separately); a finished row's EOS and the padding after it neither.

    Where a call belongs:

    * inside :func:`mta.generate` (``braking=``), which passes its decode ``state``: step 0
      starts a generation, and rows already finished consume nothing;
    * inside transformers' ``generate`` (two arguments): a call continues the generation
      when every row of ``input_ids`` is the row of the last call plus one token; another
      batch size, device or prompt starts a new one (so reusing the processor needs no
      :meth:`reset`). Rows whose past changed under the same prompt — beam search
      (``num_beams > 1``) regroups beams, assisted decoding rewinds — raise a
      :class:`~mta_kernels.integrations.history.RowHistoryError`. A row is finished once it
      has consumed an id of ``eos_token_id`` (or ``pad_token_id``): transformers pads it
      while the other rows go on, and that padding is not thinking. A finished row leaves
      the thinking (``state.in_think`` False) and consumes nothing more.

    The state counts what was consumed: a processor never sees the token sampled at the
    last step. :func:`mta.generation.braking_reports` reads the complete counts off the
    generated tokens.

    Parameters
    ----------
    tables : MarkerTables
        Moved to the scores' device on first use.
    cfg : BrakingConfig
        Read at every step: it may be replaced (``processor.cfg = ...``, checked then) or its
        per-row tensors modified between steps.
    in_think : bool or Tensor [B] bool
        Whether rows start inside ``<think>`` (the prompt opened it); rows that do not
        (ThinkFree prompts) pass through untouched.
    eos_token_id : int or sequence of int, optional
        The ids that end a row, e.g. ``model.generation_config.eos_token_id``; ``[]`` when
        rows never end early. Needed inside transformers' ``generate`` with more than one
        row (a ``ValueError`` says so); a single row is never padded, and
        :func:`mta.generate` says which rows finished.
    pad_token_id : int, optional
        Also ends a row when consumed: transformers feeds it to rows its stopping criteria
        ended (stop strings too). Give it only if the model never generates it as text.
    """

    def __init__(self, tables: MarkerTables, cfg: BrakingConfig, in_think: bool | torch.Tensor = True, *,
                 eos_token_id: int | Sequence[int] | None = None, pad_token_id: int | None = None):
        if not isinstance(tables, MarkerTables):
            raise TypeError(f"tables must be MarkerTables, got {type(tables).__name__}")
        if not isinstance(in_think, (bool, torch.Tensor)):
            raise TypeError(f"in_think must be a bool or a [B] bool tensor, got {type(in_think).__name__}")
        self.tables = tables
        self.cfg = cfg
        self.in_think = in_think
        self.eos_token_id = _token_ids(eos_token_id, "eos_token_id")
        self.pad_token_id = None if pad_token_id is None else check_int(pad_token_id, "pad_token_id", lo=0)
        self._ending = (*(self.eos_token_id or ()), *(() if pad_token_id is None else (self.pad_token_id,)))
        self.controller: BrakingController | None = None
        self._history = RowHistory("BrakingLogitsProcessor")
        self._finished: torch.Tensor | None = None  # [B] bool, inside transformers' generate
        self._ending_ids: torch.Tensor | None = None  # _ending on the device, None when empty

    @property
    def cfg(self) -> BrakingConfig:
        return self._cfg

    @cfg.setter
    def cfg(self, cfg: BrakingConfig) -> None:
        self._cfg = check_config(cfg)
        if getattr(self, "controller", None) is not None:
            self.controller.cfg = cfg  # checked against the batch now

    @property
    def state(self) -> BrakingState | None:
        """The current generation's per-row state (``None`` before the first call)."""
        return self.controller.state if self.controller is not None else None

    def reset(self) -> None:
        """Forget the state: the next call starts a new generation."""
        self.controller = None
        self._history.reset()
        self._finished = None

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        # Two arguments only: transformers' LogitsProcessorList refuses any other parameter.
        return self.call_with_state(input_ids, scores)

    def call_with_state(
        self, input_ids: torch.LongTensor, scores: torch.FloatTensor, state: Any = None
    ) -> torch.FloatTensor:
        """``__call__`` with :func:`mta.generate`'s decode ``state`` (which calls this one)."""
        if not isinstance(scores, torch.Tensor) or scores.dim() != 2:
            raise ValueError(f"scores must be a [B, V] tensor, got {getattr(scores, 'shape', type(scores).__name__)}")
        if not isinstance(input_ids, torch.Tensor) or input_ids.dim() != 2 or input_ids.shape[0] != scores.shape[0]:
            raise ValueError(f"input_ids must be a [B, L] tensor with the B={scores.shape[0]} rows of scores, "
                             f"got {getattr(input_ids, 'shape', type(input_ids).__name__)}")
        B, device = scores.shape[0], scores.device
        if self.tables.device != device:
            self.tables = self.tables.to(device)
        if state is not None and hasattr(state, "step"):  # mta.generate: its decode state says it all
            self._history.reset()
            if state.step == 0 or self.controller is None:
                self._start(B, device)
                last = None
            else:
                last = self._unfinished_tokens(input_ids.select(1, -1), getattr(state, "finished", None))
        else:
            last = self._transformers_step(input_ids, B, device)
        if not scores.is_contiguous():
            scores = scores.contiguous()
        return self.controller.step(scores, last)

    def _start(self, B: int, device: torch.device) -> None:
        self.controller = BrakingController(self.tables, self._cfg, B, device, in_think=self.in_think)

    def _transformers_step(self, input_ids: torch.Tensor, B: int, device: torch.device) -> torch.Tensor | None:
        """The tokens to consume inside transformers' generate (``None`` at a generation's start)."""
        added = self._history.advance(input_ids, max_new=1)
        controller = self.controller
        if added == 0 or controller is None or controller.batch_size != B or controller.device != device:
            if self.eos_token_id is None and B > 1:
                self._history.reset()
                raise ValueError(
                    f"BrakingLogitsProcessor called on {B} rows as a transformers LogitsProcessor needs "
                    "eos_token_id: transformers pads a row that finished while the others go on, and that "
                    "padding must not count as thinking. Pass eos_token_id=model.generation_config.eos_token_id "
                    "(and pad_token_id when stop strings end rows), or eos_token_id=[] when rows never end early"
                )
            self._start(B, device)
            self._finished = torch.zeros(B, dtype=torch.bool, device=device)
            if self._ending_ids is None or self._ending_ids.device != device:
                self._ending_ids = torch.tensor(self._ending, dtype=torch.int64, device=device) if self._ending else None
            return None
        last = input_ids.select(1, -1)
        if self._ending_ids is not None:
            self._finished |= torch.isin(last, self._ending_ids)  # its EOS is not consumed either
        return self._unfinished_tokens(last, self._finished)

    def _unfinished_tokens(self, last: torch.Tensor, finished: torch.Tensor | None) -> torch.Tensor:
        """``last`` as int64, -1 (nothing to consume) on finished rows, which leave the thinking."""
        if last.dtype != torch.int64:
            last = last.long()
        if finished is None:
            return last
        self.controller.state.in_think.masked_fill_(finished, False)  # frozen: no trigger on padding
        return last.masked_fill(finished, -1)


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
