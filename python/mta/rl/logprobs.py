"""Teacher-forced token log-probabilities of rollouts, through :func:`mta_kernels.linear_token_logprobs`.

A batch of (prompt, response) pairs is packed right-padded (each row: its prompt, then its
response, then padding; positions count from 0, as in the engine), the model's backbone
runs once, and only the hidden states that predict a response token go through the LM
head — fused with the log-softmax by ``mk.linear_token_logprobs``, chunked so the [N, V]
logits never exist at once. The temperature is the sampling one: ``log softmax(z / T)``,
the distribution the rollout engine drew from before any top-k / top-p filter.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

import mta_kernels as mk

__all__ = ["Packed", "check_lm_head", "pack", "sequence_logprobs"]


@dataclass
class Packed:
    """Rows of prompt + response, right-padded, and where their response tokens are."""

    input_ids: torch.Tensor  # [B, S] int64
    attention_mask: torch.Tensor  # [B, S] int64
    position_ids: torch.Tensor  # [B, S] int64
    gather: torch.Tensor  # [N] flat positions (b * S + s) whose hidden state predicts a response token
    targets: torch.Tensor  # [N] the response tokens
    rows: torch.Tensor  # [N] row of each response token
    cols: torch.Tensor  # [N] its index in the response
    width: int  # R: response-aligned outputs are [B, R]


def pack(prompts: list[list[int]], responses: list[list[int]], pad_id: int, device: torch.device,
         width: int | None = None) -> Packed:
    """Pack ``prompts[b] + responses[b]`` per row; ``width`` (default: the longest response)
    is the width of the response-aligned tensors the log-probs come back in."""
    B = len(prompts)
    lengths = [len(p) + len(r) for p, r in zip(prompts, responses)]
    S = max(lengths)
    R = max((len(r) for r in responses), default=0) if width is None else width
    ids = torch.full((B, S), pad_id, dtype=torch.int64)
    mask = torch.zeros((B, S), dtype=torch.int64)
    gather, targets, rows, cols = [], [], [], []
    for b, (p, r) in enumerate(zip(prompts, responses)):
        ids[b, : lengths[b]] = torch.tensor(p + r, dtype=torch.int64)
        mask[b, : lengths[b]] = 1
        start = b * S + len(p) - 1  # the hidden state at position len(p) - 1 predicts response token 0
        gather += range(start, start + len(r))
        targets += r
        rows += [b] * len(r)
        cols += range(len(r))
    position = torch.arange(S, dtype=torch.int64).expand(B, S).clone()

    def t(x: list[int]) -> torch.Tensor:
        return torch.tensor(x, dtype=torch.int64, device=device)

    return Packed(ids.to(device), mask.to(device), position.to(device), t(gather), t(targets), t(rows), t(cols), R)


def check_lm_head(model) -> None:
    """Refuse models whose logits are not ``hidden @ W.T (+ b)`` (what the fused op computes)."""
    head = model.get_output_embeddings()
    if head is None or not isinstance(getattr(head, "weight", None), torch.Tensor) or head.weight.dim() != 2:
        raise ValueError(f"{type(model).__name__} has no linear LM head (get_output_embeddings()); the trainer "
                         "computes log-probs as hidden @ lm_head.weight.T")
    config = model.config.get_text_config()
    for name in ("final_logit_softcapping", "logit_scale"):
        if getattr(config, name, None) not in (None, 1.0):
            raise ValueError(f"{type(model).__name__} applies {name} to its logits, which mk.linear_token_logprobs "
                             "does not model")


def sequence_logprobs(model, packed: Packed, temperature: float, *, entropy: bool = False,
                      autocast: torch.dtype | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-probabilities [B, R] (and entropies [B, R]) of the packed response tokens at
    ``temperature``; 0 outside each response. Differentiable when grad is enabled."""
    B, S = packed.input_ids.shape
    device = packed.input_ids.device
    with torch.autocast(device.type, dtype=autocast, enabled=autocast is not None):
        hidden = model.base_model(
            input_ids=packed.input_ids, attention_mask=packed.attention_mask, position_ids=packed.position_ids,
            use_cache=False,
        ).last_hidden_state
    h = hidden.reshape(B * S, -1).index_select(0, packed.gather)
    head = model.get_output_embeddings()
    weight, bias = head.weight, getattr(head, "bias", None)
    if weight.dtype != h.dtype:  # bf16 autocast: the head in the activations' dtype, as the model's own forward
        weight = weight.to(h.dtype)
        bias = bias.to(h.dtype) if bias is not None else None
    out = mk.linear_token_logprobs(h, weight, packed.targets, bias=bias, temperature=float(temperature),
                                   return_entropy=entropy)
    logp, ent = out if entropy else (out, None)
    logp_br = torch.zeros((B, packed.width), dtype=torch.float32, device=device)
    logp_br = logp_br.index_put((packed.rows, packed.cols), logp)
    ent_br = None
    if ent is not None:
        ent_br = torch.zeros((B, packed.width), dtype=torch.float32, device=device)
        ent_br = ent_br.index_put((packed.rows, packed.cols), ent.detach())
    return logp_br, ent_br
