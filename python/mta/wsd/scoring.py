"""The base model scores every draft teacher-forced, in one batched forward pass.

Rows are ``base prompt + draft`` (both in the base model's tokens), left-padded with
positions counting real tokens, as :func:`mta.generate` feeds them. The backbone gives
the hidden states; only the positions that predict a draft token are gathered ([N, H] for N
draft tokens in all) and turned into log-probabilities by :func:`mta_kernels.linear_token_logprobs`,
which never holds the [N, V] logits (at Gemma's V = 262144, 16 drafts of 512 tokens would
be 8.6 GB of fp32 logits).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

import mta_kernels as mk
from mta.prompts import left_pad

__all__ = ["score_drafts"]

# Draft tokens per log-prob call: bounds the progress bar's step, not the memory (the op
# chunks on its own).
_TOKENS_PER_CALL = 1024


def _backbone(model):
    backbone = getattr(model, "base_model", None)
    if backbone is None or backbone is model:
        raise TypeError(
            f"base: {type(model).__name__} has no backbone separate from its LM head (model.base_model); "
            "pass a transformers *ForCausalLM model"
        )
    return backbone


def _head(model):
    """``(weight [V, H], bias or None, softcap or None)`` of the model's LM head."""
    head = model.get_output_embeddings()
    if not isinstance(head, torch.nn.Linear):
        raise TypeError(f"base: the LM head of {type(model).__name__} is {type(head).__name__}, not a Linear layer")
    softcap = getattr(model.config.get_text_config(), "final_logit_softcapping", None)
    return head.weight, head.bias, softcap


def _head_logprobs(model, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    weight, bias, softcap = _head(model)
    hidden = hidden.to(weight.dtype)
    if not softcap:
        return mk.linear_token_logprobs(hidden, weight, targets, bias=bias)
    # Soft-capped logits (Gemma-2 style, c·tanh(z/c)) are not a linear map of the hidden
    # state: materialise this call's logits (at most _TOKENS_PER_CALL rows) and cap them.
    logits = torch.nn.functional.linear(hidden, weight, bias)
    logits = torch.tanh(logits / softcap) * softcap
    return mk.token_logprobs(logits, targets)


@torch.inference_mode()
def score_drafts(
    model,
    prompt_ids: Sequence[Sequence[int]],
    draft_ids: Sequence[Sequence[int]],
    *,
    pad_id: int,
    progress: bool = False,
) -> list[list[float]]:
    """Teacher-forced log-probability of every draft token under ``model``.

    Parameters
    ----------
    model
        A transformers causal LM whose logits are its LM head applied to its backbone's last
        hidden state (optionally soft-capped): Llama, Qwen2, GPT-2, Gemma-3, ...
    prompt_ids : list of list of int
        Each row's prompt in the model's tokens, non-empty.
    draft_ids : list of list of int
        Each row's draft in the model's tokens (may be empty).
    pad_id : int
        Padding token id (masked out; its value does not matter).
    progress : bool
        A tqdm bar over the log-prob calls.

    Returns
    -------
    list of list of float
        ``logprobs[b][j] = log p(draft_ids[b][j] | prompt_ids[b] + draft_ids[b][:j])``.
    """
    if len(prompt_ids) != len(draft_ids):
        raise ValueError(f"prompt_ids has {len(prompt_ids)} rows but draft_ids has {len(draft_ids)}")
    lengths = [len(d) for d in draft_ids]
    if sum(lengths) == 0:
        return [[] for _ in draft_ids]
    device = model.device
    enc = left_pad([list(p) + list(d) for p, d in zip(prompt_ids, draft_ids)], pad_id, device)
    width = enc.input_ids.shape[1]
    # The last column predicts nothing that is scored: leave it out of the pass.
    hidden = _backbone(model)(
        input_ids=enc.input_ids[:, :-1], attention_mask=enc.attention_mask[:, :-1],
        position_ids=enc.position_ids[:, :-1], use_cache=False,
    ).last_hidden_state
    # Row b's draft token j sits at column width - n_b + j and is predicted one column earlier.
    rows = torch.repeat_interleave(torch.arange(len(lengths)), torch.tensor(lengths))
    cols = torch.cat([torch.arange(width - n - 1, width - 1) for n in lengths])
    gathered = hidden[rows.to(device), cols.to(device)]
    del hidden
    targets = torch.tensor([t for d in draft_ids for t in d], dtype=torch.int64, device=device)

    from mta.progress import progress_bar

    starts = range(0, targets.numel(), _TOKENS_PER_CALL)
    parts = [
        _head_logprobs(model, gathered[s: s + _TOKENS_PER_CALL], targets[s: s + _TOKENS_PER_CALL])
        for s in progress_bar(starts, desc="wsd score", unit="chunk", enabled=progress, leave=False)
    ]
    flat = torch.cat(parts).tolist()
    out, at = [], 0
    for n in lengths:
        out.append(flat[at: at + n])
        at += n
    return out
