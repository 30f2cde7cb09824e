"""Braking as a vLLM v1 logits processor.

::

    from vllm import LLM, SamplingParams
    from mta_kernels.integrations.vllm import VllmBrakingLogitsProcessor

    llm = LLM(model, logits_processors=[VllmBrakingLogitsProcessor])
    params = SamplingParams(max_tokens=4096, extra_args={"braking": {"max_thinking_tokens": 1024,
                                                                     "marker_ratio": 0.08}})

``vllm serve`` takes it by name: ``--logits-processors
mta_kernels.integrations.vllm:VllmBrakingLogitsProcessor``.

The interface is ``vllm.v1.sample.logits_processor.LogitsProcessor``, tested against
vLLM 0.33.0 (``make test-vllm``): vLLM builds the processor once per engine as
``cls(vllm_config, device, is_pin_memory)``, tells it about the persistent batch with
``update_state(BatchUpdate)`` before each step and calls ``apply(logits)`` on the
``[num_reqs, V]`` fp32 logits. vLLM 0.33 runs this interface in its V1 model runner only;
on a GPU with Triton it defaults to Model Runner V2, whose processors have another
interface and which refuses this class at start-up, so run with
``VLLM_USE_V2_MODEL_RUNNER=0``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from numbers import Integral, Real
from typing import Any

import torch

from mta_kernels.braking import BrakingConfig, BrakingState, MarkerTables, braking_step

__all__ = ["BrakingArgsError", "VllmBrakingLogitsProcessor"]

#: The ``SamplingParams.extra_args`` key a request's braking settings live under.
EXTRA_ARGS_KEY = "braking"

_INT_FIELDS = ("max_thinking_tokens", "min_thinking_tokens", "max_steps")
_FLOAT_FIELDS = ("marker_ratio", "end_think_margin")
# Per-slot column value for "this trigger is off" (a slot without braking, or a request
# that left the setting out); min_thinking_tokens is a threshold, 0 when unset.
_OFF = {"max_thinking_tokens": -1, "min_thinking_tokens": 0, "max_steps": -1,
        "marker_ratio": float("inf"), "end_think_margin": float("-inf")}
_UNSET = {"max_thinking_tokens": None, "min_thinking_tokens": 0, "max_steps": None,
          "marker_ratio": None, "end_think_margin": None}


class BrakingArgsError(ValueError, TypeError):
    """Bad ``extra_args["braking"]``. A ``ValueError``, which vLLM answers as a bad request
    (HTTP 400), and a ``TypeError`` like ``BrakingConfig(**args)`` with an unknown key."""


def _vllm_base() -> type:
    try:
        from vllm.v1.sample.logits_processor import LogitsProcessor
    except ImportError:  # vLLM absent: the class still works with duck-typed batch updates
        return object
    return LogitsProcessor


def _braking_args(sampling_params: Any) -> dict[str, Any] | None:
    """A request's ``extra_args["braking"]`` checked, or None when it does not brake."""
    args = (getattr(sampling_params, "extra_args", None) or {}).get(EXTRA_ARGS_KEY)
    if args is None:
        return None
    if not isinstance(args, Mapping):
        raise BrakingArgsError(f"extra_args[{EXTRA_ARGS_KEY!r}] must be a dict of BrakingConfig fields, "
                               f"got {type(args).__name__}")
    unknown = sorted(set(args) - set(_OFF))
    if unknown:
        raise BrakingArgsError(f"extra_args[{EXTRA_ARGS_KEY!r}] has unknown keys {unknown}; "
                               f"known: {sorted(_OFF)}")
    for key, value in args.items():
        kind = Integral if key in _INT_FIELDS else Real
        if value is not None and (isinstance(value, bool) or not isinstance(value, kind)):
            raise BrakingArgsError(f"extra_args[{EXTRA_ARGS_KEY!r}][{key!r}] must be "
                                   f"{'an integer' if kind is Integral else 'a number'} or None, got {value!r}")
    try:
        BrakingConfig(**args).normalised(1, torch.device("cpu"))  # the interval checks
    except (TypeError, ValueError) as e:
        raise BrakingArgsError(f"extra_args[{EXTRA_ARGS_KEY!r}]: {e}") from e
    return dict(args)


def _rows(state: BrakingState, index: slice) -> BrakingState:
    """A view of some rows of ``state`` (writes go through)."""
    return BrakingState(state.counters[index], state.flags[index])


def _move_rows(tensors, a: int, b: int, swap: bool) -> None:
    for t in tensors:
        if swap:
            t[[a, b]] = t[[b, a]]
        else:
            t[b] = t[a]


@dataclasses.dataclass
class _Request:
    args: dict[str, Any]
    output: list[int]  # vLLM's live list of the request's output tokens
    consumed: int = 0  # output tokens consumed by the state row
    started: bool = False  # the row's first step (which consumes nothing) is done


class VllmBrakingLogitsProcessor(_vllm_base()):  # type: ignore[misc]
    """vLLM v1 logits processor (``vllm.v1.sample.logits_processor.LogitsProcessor``).

    Requests opt in with ``SamplingParams(extra_args={"braking": {...}})`` holding
    :class:`~mta_kernels.braking.BrakingConfig` fields as numbers (``validate_params``
    checks them when the request arrives); rows without it are left untouched. A braking
    request starts inside ``<think>`` (the prompt opened it).

    Each persistent-batch slot owns one row of a :class:`~mta_kernels.braking.BrakingState`
    of ``max_num_seqs`` rows, and one entry of the per-slot trigger columns. ``update_state``
    applies the batch update in vLLM's order: removed, added, then moved (a swap exchanges
    two slots, a one-way move empties its source). ``apply`` runs one
    :func:`~mta_kernels.braking.braking_step` over the first ``num_reqs`` rows; a row
    consumes the newest token of its request's output list (vLLM's live list) when that
    list grew since the last step, and nothing otherwise, so a step whose sample vLLM
    discards (a prompt's chunked-prefill step) consumes nothing and forces the same token.

    A request added with output tokens already (resumed after preemption), or whose list
    grew by more than one token or shrank between two steps, has its row rebuilt by
    replaying the steps it missed on those tokens, without the margin trigger (it would
    need those steps' logits); the other triggers come out as in an uninterrupted run.
    With chunked prefill, the margin trigger is also evaluated on the discarded steps.

    Parameters
    ----------
    vllm_config : vllm.config.VllmConfig
        ``scheduler_config.max_num_seqs`` sizes the state; the marker tables come from
        :meth:`build_tables` (the served model's tokenizer) unless ``tables`` is given.
    device : torch.device
        The logits' device.
    is_pin_memory : bool
        Whether host-to-device copies may use pinned memory.
    tables : MarkerTables, optional
        Use these tables instead of :meth:`build_tables` (tests, custom markers).
    capacity : int, optional
        Number of slots instead of ``max_num_seqs``.
    """

    def __init__(self, vllm_config: Any, device: torch.device | str, is_pin_memory: bool,
                 *, tables: MarkerTables | None = None, capacity: int | None = None):
        self.device = torch.device(device)
        self.pin_memory = bool(is_pin_memory) and self.device.type == "cuda"
        self.tables = (self.build_tables(vllm_config) if tables is None else tables).to(self.device)
        self.capacity = int(vllm_config.scheduler_config.max_num_seqs if capacity is None else capacity)
        self.state = BrakingState.new(self.capacity, self.device, in_think=False)
        self._cols = {
            key: torch.full((self.capacity,), off, device=self.device,
                            dtype=torch.int64 if key in _INT_FIELDS else torch.float32)
            for key, off in _OFF.items()
        }
        self._requests: dict[int, _Request] = {}  # slot -> braking request
        self._cfg: tuple[int, BrakingConfig] | None = None  # (rows, config over them), until the batch changes
        # Replays step a one-row view on scratch logits just wide enough for the forced ids.
        self._scratch = torch.zeros(1, self.tables.max_forced_id + 1, device=self.device)

    def build_tables(self, vllm_config: Any) -> MarkerTables:
        """The SBT markers and brake text in the served model's tokens.

        Override in a subclass for other markers, step delimiter or brake text (and pass
        the subclass to vLLM).
        """
        model_config = vllm_config.model_config
        try:
            from vllm.tokenizers import cached_tokenizer_from_config
        except ImportError:  # an older vLLM without vllm.tokenizers: transformers loads it
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(model_config.tokenizer, revision=model_config.tokenizer_revision,
                                                      trust_remote_code=model_config.trust_remote_code)
        else:
            tokenizer = cached_tokenizer_from_config(model_config)
        return MarkerTables.from_tokenizer(tokenizer, vocab_size=model_config.get_vocab_size())

    @classmethod
    def validate_params(cls, sampling_params: Any) -> None:
        """Check ``extra_args["braking"]``; raises :class:`BrakingArgsError` (a ValueError)."""
        _braking_args(sampling_params)

    def is_argmax_invariant(self) -> bool:
        return False  # forcing the brake text changes the argmax

    # ----------------------------------------------------------------------- batch changes
    def _clear(self, slot: int) -> None:
        self._requests.pop(slot, None)
        self.state.reset_row(slot, False)
        for key, col in self._cols.items():
            col[slot] = _OFF[key]

    def update_state(self, batch_update: Any) -> None:
        if not batch_update:
            return
        self._cfg = None
        for slot in batch_update.removed:
            self._clear(slot)
        for slot, params, _prompt, output_tok_ids in batch_update.added:
            self._clear(slot)
            args = _braking_args(params)
            if args is not None:
                self._requests[slot] = _Request(args, output_tok_ids)
                self.state.reset_row(slot, True)
                for key, value in args.items():
                    self._cols[key][slot] = _OFF[key] if value is None else value
        tensors = [self.state.counters, self.state.flags, *self._cols.values()]
        for a, b, direction in batch_update.moved:
            swap = getattr(direction, "name", direction) == "SWAP"
            _move_rows(tensors, a, b, swap)
            req_a, req_b = self._requests.pop(a, None), self._requests.pop(b, None)
            if req_a is not None:
                self._requests[b] = req_a
            if swap and req_b is not None:
                self._requests[a] = req_b
            if not swap:
                self._clear(a)

    # ----------------------------------------------------------------------- decode step
    def _config(self, rows: int) -> BrakingConfig:
        # Views of the columns, kept until the batch changes so that BrakingConfig's memo
        # holds; a trigger no request sets is passed as off (the margin then reads no logits).
        if self._cfg is None or self._cfg[0] != rows:
            used = {k for slot, r in self._requests.items() if slot < rows for k, v in r.args.items() if v is not None}
            self._cfg = (rows, BrakingConfig(**{k: self._cols[k][:rows] if k in used else _UNSET[k] for k in _OFF}))
        return self._cfg[1]

    def _replay(self, slot: int, request: _Request, tokens: list[int]) -> None:
        """Run the steps row ``slot`` missed: the first one (if not run) and one per token."""
        cfg = BrakingConfig(**{**request.args, "end_think_margin": None})
        row = _rows(self.state, slice(slot, slot + 1))
        steps: list[int | None] = ([] if request.started else [None]) + tokens
        for token in steps:
            last = None if token is None else torch.tensor([token], dtype=torch.int64, device=self.device)
            braking_step(self._scratch, last, row, self.tables, cfg)
        request.started = True

    def apply(self, logits: torch.Tensor) -> torch.Tensor:
        if not self._requests:
            return logits
        B = logits.shape[0]
        last = [-1] * B
        for slot, request in self._requests.items():
            if slot >= B:
                continue
            out, n = request.output, len(request.output)
            if n < request.consumed:  # tokens were taken back (vLLM's KV-load failure path)
                self.state.reset_row(slot, True)
                request.consumed, request.started = 0, False
            if n > request.consumed:
                if n - request.consumed > 1 or not request.started:
                    self._replay(slot, request, list(out[request.consumed:n - 1]))
                last[slot] = out[n - 1]
                request.consumed = n
            request.started = True
        last_tokens = torch.tensor(last, dtype=torch.int64, pin_memory=self.pin_memory)
        logits = logits.contiguous()
        braking_step(logits, last_tokens.to(self.device, non_blocking=self.pin_memory), _rows(self.state, slice(0, B)),
                     self.tables, self._config(B))
        return logits
