"""Braking as a vLLM v1 logits processor (``vllm.v1.sample.logits_processor.LogitsProcessor``)."""

from __future__ import annotations

from typing import Any

import torch

from mta_kernels.braking import BrakingConfig, BrakingState, MarkerTables, braking_step

__all__ = ["VllmBrakingLogitsProcessor"]


def _vllm_base() -> type:
    try:  # vLLM >= 0.10: the v1 logits-processor interface
        from vllm.v1.sample.logits_processor import LogitsProcessor
    except ImportError:
        return object
    return LogitsProcessor


class VllmBrakingLogitsProcessor(_vllm_base()):  # type: ignore[misc]
    """vLLM v1 logits processor (``vllm.v1.sample.logits_processor.LogitsProcessor``).

    vLLM is not installed in this project's environment: the logic here is tested against a
    minimal stand-in of the interface (``BatchUpdate`` with ``batch_size``, ``added`` =
    ``(index, SamplingParams, prompt_tok_ids, output_tok_ids)``, ``removed`` = indices,
    ``moved`` = ``(a, b, MoveDirectionality)``; ``apply(logits)``), not against vLLM itself.

    Requests opt in with ``SamplingParams(extra_args={"braking": {...}})`` holding
    :class:`BrakingConfig` fields as scalars; rows without it are left untouched (they never
    enter the thinking phase). The marker tables come from ``tables=`` (tests) or are built
    from the model's tokenizer the first time.

    Each persistent-batch slot owns one row of a :class:`BrakingState` of capacity
    ``max_num_seqs``; moves and swaps permute those rows. ``output_tok_ids`` is vLLM's live
    list of the request's output tokens: ``apply`` consumes its last element when it grew.
    """

    def __init__(self, vllm_config: Any = None, device: torch.device | str = "cpu", is_pin_memory: bool = False,
                 *, tables: MarkerTables | None = None, capacity: int | None = None):
        self.device = torch.device(device)
        if tables is None:
            from transformers import AutoTokenizer

            tok = AutoTokenizer.from_pretrained(vllm_config.model_config.tokenizer)
            tables = MarkerTables.from_tokenizer(tok, vocab_size=vllm_config.model_config.get_vocab_size())
        self.tables = tables.to(self.device)
        if capacity is None:
            capacity = vllm_config.scheduler_config.max_num_seqs
        self.capacity = int(capacity)
        self.state = BrakingState.new(self.capacity, self.device, in_think=False)
        self._cfg: dict[int, dict] = {}  # slot -> braking kwargs
        self._outputs: dict[int, list[int]] = {}  # slot -> live output token list
        self._consumed: dict[int, int] = {}  # slot -> number of output tokens consumed

    @classmethod
    def validate_params(cls, sampling_params: Any) -> None:
        args = (getattr(sampling_params, "extra_args", None) or {}).get("braking")
        if args is not None:
            BrakingConfig(**args)  # unknown keys raise TypeError

    def is_argmax_invariant(self) -> bool:
        return False  # forcing the brake text changes the argmax

    def _reset_row(self, i: int, thinking: bool) -> None:
        self.state.reset_row(i, thinking)

    def update_state(self, batch_update: Any) -> None:
        if batch_update is None:
            return
        for index, params, _prompt, output_tok_ids in batch_update.added:
            args = (getattr(params, "extra_args", None) or {}).get("braking")
            self._cfg.pop(index, None)
            self._outputs.pop(index, None)
            self._consumed.pop(index, None)
            self._reset_row(index, args is not None)
            if args is not None:
                self._cfg[index] = dict(args)
                self._outputs[index] = output_tok_ids
                self._consumed[index] = len(output_tok_ids)
        for index in batch_update.removed:
            self._cfg.pop(index, None)
            self._outputs.pop(index, None)
            self._consumed.pop(index, None)
            self._reset_row(index, False)
        for a, b, direction in batch_update.moved:
            swap = getattr(direction, "name", str(direction)) == "SWAP"
            rows = torch.tensor([a, b], device=self.device)
            for t in self.state.tensors():
                ta, tb = t[rows].unbind(0)
                t[b] = ta
                if swap:
                    t[a] = tb
            for d in (self._cfg, self._outputs, self._consumed):
                va, vb = d.pop(a, None), d.pop(b, None)
                if va is not None:
                    d[b] = va
                if swap and vb is not None:
                    d[a] = vb
            if not swap:
                self._reset_row(a, False)

    def _config(self, B: int) -> BrakingConfig:
        def col(key, default, dtype, off):
            vals = [off] * B
            for i, args in self._cfg.items():
                if i < B:
                    v = args.get(key, default)
                    vals[i] = off if v is None else v
            return torch.tensor(vals, dtype=dtype, device=self.device)

        inf = float("inf")
        return BrakingConfig(
            max_thinking_tokens=col("max_thinking_tokens", None, torch.int64, -1),
            marker_ratio=col("marker_ratio", None, torch.float32, inf),
            min_thinking_tokens=col("min_thinking_tokens", 0, torch.int64, 0),
            max_steps=col("max_steps", None, torch.int64, -1),
            end_think_margin=col("end_think_margin", None, torch.float32, -inf),
        )

    def apply(self, logits: torch.Tensor) -> torch.Tensor:
        if not self._cfg:
            return logits
        B = logits.shape[0]
        last = [-1] * B
        for i, out in self._outputs.items():
            if i < B and len(out) > self._consumed[i]:
                last[i] = out[-1]
                self._consumed[i] = len(out)
        view = BrakingState(*(t[:B] for t in self.state.tensors()))
        logits = logits.contiguous()
        braking_step(logits, torch.tensor(last, dtype=torch.int64, device=self.device), view, self.tables,
                     self._config(B))
        return logits
