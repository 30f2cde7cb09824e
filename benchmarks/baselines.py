"""The samplers a user would otherwise run, rewritten here for the benchmarks.

* :func:`sort_sample` — vLLM's PyTorch-native sampler (``TopKTopPSampler.forward_native``).
* :func:`transformers_sample` with :func:`transformers_processors` — what
  ``model.generate(do_sample=True)`` runs each step: the warper chain, softmax and
  ``torch.multinomial``, using transformers' own warper classes.

They are timing baselines, not oracles: the oracle is
``mta_kernels.sampling.reference``. Both filter like ``mk.filter_logits`` except in the
ties at a cut and, for vLLM, the min-p order (see :func:`sort_sample`).
"""

from __future__ import annotations

import torch
from transformers import (
    LogitsProcessorList,
    MinPLogitsWarper,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

__all__ = ["sort_sample", "transformers_processors", "transformers_sample"]


def sort_sample(
    logits: torch.Tensor,
    temperature: torch.Tensor,
    top_k: torch.Tensor | None,
    top_p: torch.Tensor | None,
    min_p: torch.Tensor | None = None,
    *,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Sort-based sampling, step for step as vLLM's ``forward_native`` path.

    The steps of vLLM's v1 ``Sampler`` for an all-random batch: cast to fp32, divide by
    the temperature in place, min-p (``MinPLogitsProcessor``: softmax, max, mask below
    ``min_p * p_max``), then ``apply_top_k_top_p_pytorch``: sort the whole vocabulary
    *ascending*, top-k by gathering the value at rank ``V - k``, top-p by softmax and an
    in-place cumsum over the sorted logits (remove while the cumulative mass is
    ``<= 1 - p``, always keep the largest), scatter back; then softmax and
    ``random_sample``: ``probs.div_(q.exponential_()).argmax()`` (the exponential race,
    which vLLM prefers to ``torch.multinomial`` because the latter syncs with the host).

    vLLM applies min-p *before* top-k/top-p, transformers after; the kept set differs only
    when both min-p and top-p cut. Recent vLLM sends this step to FlashInfer's sort-free
    sampler or to a Triton top-k/top-p kernel when those are available; this is the
    PyTorch path (``apply_top_k_top_p_pytorch``) they fall back to.

    Parameters
    ----------
    logits : torch.Tensor
        ``[B, V]``, any float dtype. Left untouched: the fp32 cast always copies here
        (vLLM casts in place when the logits already are fp32, which would corrupt the
        input across timed calls; the copy costs one read and one write of the logits).
    temperature : torch.Tensor
        ``[B]`` fp32, all > 0.
    top_k : torch.Tensor or None
        ``[B]`` integer, ``1 <= k <= V``; None disables top-k.
    top_p : torch.Tensor or None
        ``[B]`` fp32 in ``(0, 1]``; None disables top-p.
    min_p : torch.Tensor or None
        ``[B]`` fp32; None disables min-p (vLLM skips it when no request sets it).
    generator : torch.Generator, optional
        Source of the exponential noise.

    Returns
    -------
    torch.Tensor
        ``[B]`` int64 token ids.
    """
    logits = logits.to(torch.float32, copy=True)
    logits.div_(temperature.unsqueeze(1))

    if min_p is not None:
        probs = torch.softmax(logits, dim=-1)
        max_probs = torch.amax(probs, dim=-1, keepdim=True)
        logits[probs < max_probs.mul_(min_p.unsqueeze(1))] = -float("inf")

    if top_k is not None or top_p is not None:
        logits_sort, logits_idx = logits.sort(dim=-1, descending=False)
        if top_k is not None:
            kth = logits_sort.gather(1, (logits_sort.size(1) - top_k.long()).unsqueeze(1))
            logits_sort.masked_fill_(logits_sort < kth, -float("inf"))
        if top_p is not None:
            probs_sort = logits_sort.softmax(dim=-1)
            probs_sum = torch.cumsum(probs_sort, dim=-1, out=probs_sort)
            top_p_mask = probs_sum <= 1 - top_p.unsqueeze(1)
            top_p_mask[:, -1] = False
            logits_sort.masked_fill_(top_p_mask, -float("inf"))
        logits = logits.scatter_(dim=-1, index=logits_idx, src=logits_sort)

    probs = logits.softmax(dim=-1, dtype=torch.float32)
    q = torch.empty_like(probs).exponential_(generator=generator)
    return probs.div_(q).argmax(dim=-1).view(-1)


def transformers_processors(
    temperature: float, top_k: int, top_p: float, min_p: float
) -> LogitsProcessorList:
    """The warper chain ``generate(do_sample=True)`` builds for these settings.

    Mirrors ``GenerationMixin._get_logits_processor``: Temperature (when ``!= 1``), TopK
    (when ``!= 0``), TopP (when ``< 1``), MinP (when set; ``min_p == 0`` here stands for
    unset), each with ``min_tokens_to_keep=1``.
    """
    processors = LogitsProcessorList()
    if temperature != 1.0:
        processors.append(TemperatureLogitsWarper(float(temperature)))
    if top_k != 0:
        processors.append(TopKLogitsWarper(top_k=int(top_k), min_tokens_to_keep=1))
    if top_p < 1.0:
        processors.append(TopPLogitsWarper(top_p=top_p, min_tokens_to_keep=1))
    if min_p > 0:
        processors.append(MinPLogitsWarper(min_p=min_p, min_tokens_to_keep=1))
    return processors


def transformers_sample(
    logits: torch.Tensor,
    processors: LogitsProcessorList,
    *,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """One sampling step of transformers' ``_sample`` loop.

    An fp32 copy of the logits (``.to(copy=True, dtype=torch.float32)``, as ``_sample``
    takes it from the model output), the warper chain, softmax, then ``torch.multinomial``
    (which synchronises with the host on CUDA).

    Parameters
    ----------
    logits : torch.Tensor
        ``[B, V]``, any float dtype; left untouched.
    processors : LogitsProcessorList
        From :func:`transformers_processors`.
    generator : torch.Generator, optional
        Passed to ``torch.multinomial``.

    Returns
    -------
    torch.Tensor
        ``[B]`` int64 token ids.
    """
    scores = logits.to(copy=True, dtype=torch.float32)
    # The warpers ignore input_ids; generate passes the sequences so far.
    input_ids = torch.zeros((logits.shape[0], 1), dtype=torch.long, device=logits.device)
    scores = processors(input_ids, scores)
    probs = torch.softmax(scores, dim=-1)
    return torch.multinomial(probs, num_samples=1, generator=generator).squeeze(1)
