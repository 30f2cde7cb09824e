"""Prompts in, one left-padded batch out.

A prompt is a string (tokenised as is, or wrapped in the chat template), a list of chat
messages (always templated) or a list of token ids. Every prompt is tokenised on its own and
padded on the left here, so the tokenizer's ``padding_side`` never matters.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from numbers import Integral

import torch

__all__ = ["EncodedPrompts", "encode_prompts", "left_pad"]


@dataclass
class EncodedPrompts:
    """The unique prompts as one left-padded batch."""

    token_ids: list[list[int]]  # per prompt, unpadded
    input_ids: torch.Tensor  # [P, L] int64, left-padded with pad_id
    attention_mask: torch.Tensor  # [P, L] int64, 0 on padding
    position_ids: torch.Tensor  # [P, L] int64, counting real tokens only (as generate does)


def _is_messages(prompt: object) -> bool:
    return isinstance(prompt, (list, tuple)) and len(prompt) > 0 and all(isinstance(m, dict) for m in prompt)


def _token_list(prompt: object, index: int, vocab_size: int | None) -> list[int]:
    if isinstance(prompt, torch.Tensor):
        if prompt.dim() != 1 or prompt.dtype.is_floating_point or prompt.dtype == torch.bool:
            raise TypeError(
                f"prompts[{index}] as a tensor must be 1-D integer token ids, got {prompt.dtype} {tuple(prompt.shape)}"
            )
        prompt = prompt.tolist()
    ids = list(prompt)
    for tok in ids:
        if isinstance(tok, bool) or not isinstance(tok, Integral):
            raise TypeError(
                f"prompts[{index}] must be a str, a list of chat messages or a list of int token ids; "
                f"it holds {type(tok).__name__} {tok!r}"
            )
        if tok < 0 or (vocab_size is not None and tok >= vocab_size):
            raise ValueError(f"prompts[{index}] holds token id {tok}, outside the vocabulary [0, {vocab_size})")
    return [int(t) for t in ids]


def encode_prompts(
    prompts: Sequence,
    tokenizer,
    *,
    chat_template: bool,
    add_special_tokens: bool | None,
    vocab_size: int | None,
) -> list[list[int]]:
    """Token ids of every prompt, unpadded; errors name ``prompts[i]``.

    Plain strings get the tokenizer's special tokens (BOS) unless ``add_special_tokens`` is
    False; templated text does not (the template writes its own).
    """
    if isinstance(prompts, (str, bytes)) or not isinstance(prompts, Sequence):
        raise TypeError(
            f"prompts must be a list of str, chat-message lists or token-id lists, got {type(prompts).__name__}"
        )
    if len(prompts) == 0:
        raise ValueError("prompts is empty: pass at least one prompt")
    if len(prompts) > 0 and all(isinstance(p, Integral) and not isinstance(p, bool) for p in prompts):
        raise TypeError("prompts is a flat list of ints: for one tokenised prompt pass [token_ids]")
    out = []
    for i, prompt in enumerate(prompts):
        if isinstance(prompt, str) or _is_messages(prompt):
            if tokenizer is None:
                raise ValueError(f"prompts[{i}] is text, so a tokenizer is needed (tokenizer=None)")
            if _is_messages(prompt) or chat_template:
                messages = list(prompt) if _is_messages(prompt) else [{"role": "user", "content": prompt}]
                if getattr(tokenizer, "chat_template", None) is None:
                    raise ValueError(f"prompts[{i}] needs the chat template, but the tokenizer has none")
                text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
                special = bool(add_special_tokens) if add_special_tokens is not None else False
            else:
                text = prompt
                special = True if add_special_tokens is None else bool(add_special_tokens)
            ids = tokenizer(text, add_special_tokens=special)["input_ids"]
        elif isinstance(prompt, (list, tuple, torch.Tensor)):
            ids = _token_list(prompt, i, vocab_size)
        else:
            raise TypeError(
                f"prompts[{i}] must be a str, a list of chat messages or a list of int token ids, "
                f"got {type(prompt).__name__}"
            )
        if len(ids) == 0:
            raise ValueError(f"prompts[{i}] is empty (no tokens): every prompt needs at least one token")
        out.append(list(ids))
    return out


def left_pad(token_ids: list[list[int]], pad_id: int, device: torch.device) -> EncodedPrompts:
    """Left-pad ``token_ids`` into one batch; positions count real tokens (pads get 0)."""
    width = max(len(ids) for ids in token_ids)
    input_ids = torch.full((len(token_ids), width), pad_id, dtype=torch.int64)
    mask = torch.zeros((len(token_ids), width), dtype=torch.int64)
    for row, ids in enumerate(token_ids):
        input_ids[row, width - len(ids):] = torch.tensor(ids, dtype=torch.int64)
        mask[row, width - len(ids):] = 1
    positions = (mask.cumsum(-1) - 1).clamp_(min=0)
    return EncodedPrompts(token_ids, input_ids.to(device), mask.to(device), positions.to(device))
