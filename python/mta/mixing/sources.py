"""``ModelLogits``: a transformers causal LM as a logits source of :class:`MixingLogitsProcessor`.

The model keeps its own KV cache: the first call prefills, every later call runs only the
tokens added since, so a mixing step costs one incremental forward pass per extra model.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from mta.prompts import left_pad
from mta_kernels.integrations.history import RowHistory

__all__ = ["ModelLogits"]


def _rows_to(t: torch.Tensor, batch: int, name: str) -> torch.Tensor:
    """``t`` [B', ...] repeated to ``batch`` rows (B' divides batch: n samples per prompt)."""
    rows = t.shape[0]
    if rows == batch:
        return t
    if rows == 0 or batch % rows:
        raise ValueError(
            f"{name} has {rows} rows but input_ids has {batch}: give one row per sequence, or one per prompt "
            "when each prompt is sampled n times (rows are then repeated n times each)"
        )
    return t.repeat_interleave(batch // rows, dim=0)


class ModelLogits:
    """Next-token logits of a transformers causal LM, incrementally with its own KV cache.

    A source for :class:`mta_kernels.integrations.transformers.MixingLogitsProcessor`:
    ``source(input_ids) -> [B, V]`` logits for the token after ``input_ids``.

    * First call: prefill. Without ``prompt_ids`` the model reads ``input_ids`` itself
      (left padding masked by ``attention_mask`` when given, or, inside :func:`mta.generate`,
      by the decode state's prompt lengths). With ``prompt_ids`` (classifier-free guidance's
      unconditional branch, a different system prompt, ...) it reads its own prompt instead,
      followed by the tokens generated so far.
    * Later calls: only the tokens ``input_ids`` gained since the previous call are run.
      Every row must be the row of the previous call followed by at least one token
      (compared in full, so the cache never serves another sequence): anything else is an
      error — a new ``generate`` call (call :meth:`reset` first, whatever its prompt), or
      rows reordered or rewound by beam search (``num_beams > 1``) or assisted decoding,
      which are not supported. :func:`mta.generate` passes its decode state instead: the
      source resets itself at step 0 and trusts the engine's rows (no comparison, no sync).

    Positions count real tokens only (``cumsum(mask) - 1``), as transformers' ``generate``
    and :func:`mta.generate` do, so a left-padded row sees the same positions as unpadded.

    Parameters
    ----------
    model
        A transformers causal LM (in eval mode); runs on its own device.
    prompt_ids : Tensor [B', P'] or list of token-id lists, optional
        This model's own prompt per row (a list is left-padded here). ``B'`` is the batch
        size or the number of prompts when each is sampled ``n`` times (rows are then
        repeated ``n`` times each, as transformers' ``num_return_sequences`` does).
    attention_mask : Tensor [B', P'], optional
        0 on left padding: of ``prompt_ids`` when given, else of the prompt in ``input_ids``
        at the first call (pass the same mask as to ``model.generate``). Default: no padding.

    Examples
    --------
    Classifier-free guidance in transformers' ``generate``, the unconditional branch being
    the same model on a bare BOS prompt::

        from transformers import LogitsProcessorList
        from mta_kernels.integrations.transformers import MixingLogitsProcessor
        from mta_kernels.mixing.recipes import classifier_free_guidance

        enc = tokenizer(["Write a poem about the sea."], return_tensors="pt")
        uncond = ModelLogits(model, prompt_ids=[[tokenizer.bos_token_id]])
        proc = MixingLogitsProcessor(classifier_free_guidance(1.5), [uncond])
        out = model.generate(**enc, do_sample=False, max_new_tokens=40,
                             logits_processor=LogitsProcessorList([proc]))

    Stand-alone, on the growing sequence:

    >>> from mta.models import tiny_random_model
    >>> source = ModelLogits(tiny_random_model("llama", vocab_size=100))
    >>> source(torch.tensor([[5, 6, 7]])).shape        # prefill
    torch.Size([1, 100])
    >>> source(torch.tensor([[5, 6, 7, 8]])).shape     # one new token
    torch.Size([1, 100])
    """

    def __init__(self, model, *, prompt_ids: torch.Tensor | Sequence[Sequence[int]] | None = None,
                 attention_mask: torch.Tensor | None = None):
        if not callable(model):
            raise TypeError(f"model must be a transformers causal LM, got {type(model).__name__}")
        if prompt_ids is not None and not isinstance(prompt_ids, torch.Tensor):
            if attention_mask is not None:
                raise ValueError(
                    "attention_mask goes with prompt_ids as a tensor; a list of token-id lists is padded here"
                )
            rows = [list(r) for r in prompt_ids]
            if not rows or any(len(r) == 0 for r in rows):
                raise ValueError("prompt_ids must hold at least one row, each with at least one token")
            enc = left_pad(rows, 0, torch.device("cpu"))
            prompt_ids, attention_mask = enc.input_ids, enc.attention_mask
        if prompt_ids is not None and (prompt_ids.dim() != 2 or prompt_ids.dtype.is_floating_point):
            raise ValueError(f"prompt_ids must be integer token ids of shape [B, P], got {prompt_ids.dtype} "
                             f"{tuple(prompt_ids.shape)}")
        if attention_mask is not None:
            if not isinstance(attention_mask, torch.Tensor) or attention_mask.dim() != 2:
                raise ValueError("attention_mask must be a [B, P] tensor")
            if prompt_ids is not None and attention_mask.shape != prompt_ids.shape:
                raise ValueError(f"attention_mask has shape {tuple(attention_mask.shape)} but prompt_ids has "
                                 f"{tuple(prompt_ids.shape)}")
        self.model = model
        self.prompt_ids = prompt_ids
        self.attention_mask = attention_mask
        self._history = RowHistory("ModelLogits")
        self.reset()

    def reset(self) -> None:
        """Drop the cache: the next call prefills (a new generation)."""
        self.cache = None
        self._seen = 0  # input_ids columns consumed
        self._mask: torch.Tensor | None = None  # [B, cached tokens]
        self._next_position: torch.Tensor | None = None  # [B, 1]
        self._history.reset()

    @property
    def device(self) -> torch.device:
        return self.model.device

    def _prompt_mask(self, input_ids: torch.Tensor, state: Any) -> torch.Tensor:
        """Attention mask of the whole of ``input_ids`` for the prefill (no own prompt)."""
        B, W = input_ids.shape
        ones = torch.ones((B, W), dtype=torch.int64, device=self.device)
        if self.attention_mask is not None:
            mask = _rows_to(self.attention_mask.to(self.device, torch.int64), B, "attention_mask")
            if mask.shape[1] > W:
                raise ValueError(f"attention_mask has {mask.shape[1]} columns but input_ids only {W}")
            return torch.cat([mask, ones[:, mask.shape[1]:]], dim=1)
        lengths = getattr(state, "prompt_lengths", None)
        if lengths is not None:  # mta.generate: row b's prompt is its last prompt_lengths[b] of L columns
            L = int(state.prompt_width)
            col = torch.arange(W, device=self.device)
            pad = (L - lengths.to(self.device)).unsqueeze(1)
            return (col >= pad).to(torch.int64)  # generated columns (>= L) are real tokens
        return ones

    def _forward(self, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        out = self.model(
            input_ids=ids, attention_mask=mask, position_ids=positions, past_key_values=self.cache,
            use_cache=True, logits_to_keep=1,
        )
        return out.logits[:, -1, :]

    def _prefill(self, input_ids: torch.Tensor, state: Any) -> torch.Tensor:
        from transformers import DynamicCache

        B, W = input_ids.shape
        if self.prompt_ids is None:
            ids, mask = input_ids, self._prompt_mask(input_ids, state)
        else:
            # Own prompt, then what was generated after the main prompt so far (nothing at the
            # first step of a generation).
            start = int(getattr(state, "prompt_width", W))
            generated = input_ids[:, start:]
            prompt = _rows_to(self.prompt_ids.to(self.device), B, "prompt_ids")
            if self.attention_mask is not None:
                prompt_mask = _rows_to(self.attention_mask.to(self.device, torch.int64), B, "attention_mask")
            else:
                prompt_mask = torch.ones_like(prompt)
            ids = torch.cat([prompt, generated], dim=1)
            mask = torch.cat([prompt_mask, torch.ones_like(generated)], dim=1)
        self.cache = DynamicCache(config=self.model.config)
        positions = (mask.cumsum(-1) - 1).clamp_(min=0)
        logits = self._forward(ids, mask, positions)
        self._mask = mask
        self._next_position = mask.sum(-1, keepdim=True)
        self._seen = W
        return logits

    @torch.no_grad()
    def __call__(self, input_ids: torch.LongTensor, state: Any = None) -> torch.Tensor:
        """Logits [B, V] for the token after each row of ``input_ids`` [B, L]."""
        if not isinstance(input_ids, torch.Tensor) or input_ids.dim() != 2:
            raise ValueError("input_ids must be a [B, L] tensor of token ids")
        if state is not None and getattr(state, "step", None) == 0:
            self.reset()  # mta.generate's first decode step: a new generation
        input_ids = input_ids.to(self.device)
        if state is None:  # transformers' generate: the rows must be the ones cached, grown
            added = self._history.advance(input_ids)
            if self.cache is not None and added == 0:
                B, W = input_ids.shape
                what = (f"has {B} rows but the cached sequences have {self._mask.shape[0]}" if B != self._mask.shape[0]
                        else f"({B} x {W}) does not extend the {B} x {self._seen} tokens already consumed")
                self.reset()  # the cache is stale: never continue from it
                raise ValueError(f"ModelLogits: input_ids {what}: a new generation? call reset() "
                                 "(or MixingLogitsProcessor.reset()) before it")
        if self.cache is None:
            return self._prefill(input_ids, state)
        B, W = input_ids.shape
        if B != self._mask.shape[0]:
            raise ValueError(
                f"ModelLogits: input_ids has {B} rows but the cached sequences have {self._mask.shape[0]}; "
                "a new generation? call reset() (or MixingLogitsProcessor.reset()) before it"
            )
        grown = W - self._seen
        if grown < 1:
            raise ValueError(
                f"ModelLogits: input_ids has {W} tokens but {self._seen} were already consumed; it must grow by "
                "at least one token per call. A new generation? call reset() (or MixingLogitsProcessor.reset()) "
                "before it"
            )
        new = input_ids[:, self._seen:]
        self._mask = torch.cat([self._mask, torch.ones_like(new)], dim=1)
        positions = self._next_position + torch.arange(grown, device=self.device)
        logits = self._forward(new, self._mask, positions)
        self._next_position = self._next_position + grown
        self._seen = W
        return logits
