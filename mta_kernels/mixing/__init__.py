"""Guided logits mixing: K models' next-token scores combined, filtered and sampled in one pass.

``mix_logits`` returns the mixture; ``mix_and_sample`` samples it without materialising it
per model (one read of each model's logits on GPU); ``wsd_switch_point`` is Weak-to-Strong
Decoding's switch rule. Recipes (proxy-tuning, contrastive decoding, classifier-free
guidance, weighted ensembles) are in :mod:`mta_kernels.mixing.recipes`, transformers
``LogitsProcessor`` in :mod:`mta_kernels.integrations.transformers`.

Layers: this module (checks) -> the kernels declared in ``ops.py`` (Triton in
``triton_kernels.py``, the fused C++ CPU ``mix_and_sample``) -> the torch reference
(``reference.py``).
"""

from __future__ import annotations

import torch

from mta_kernels._validation import MIN_P, TOP_P, check_generator, per_row_param
from mta_kernels.mixing.inputs import MixInputs, mix_inputs
from mta_kernels.mixing.ops import MAX_FUSED_MODELS, MIX_AND_SAMPLE, MIX_LOGITS, mix_then_sample
from mta_kernels.mixing.reference import mix_and_sample_reference, mix_logits_reference
from mta_kernels.mixing.switch_point import wsd_switch_point

__all__ = ["MAX_FUSED_MODELS", "mix_and_sample", "mix_logits", "mix_and_sample_reference", "mix_logits_reference",
           "wsd_switch_point"]


def _sampling_params(inputs: MixInputs, top_k, top_p, min_p):
    B, device = inputs.batch, inputs.device
    return (
        per_row_param(top_k, "top_k", B, device, integer=True),
        per_row_param(top_p, "top_p", B, device, TOP_P),
        per_row_param(min_p, "min_p", B, device, MIN_P),
    )


def _too_many_models(op, inputs: MixInputs) -> bool:
    """The Triton kernels take at most MAX_FUSED_MODELS models; say so once when a call has more."""
    if len(inputs.logits) > MAX_FUSED_MODELS and op.backend(inputs.device) == "triton":
        op.refuse("triton", f"it takes at most {MAX_FUSED_MODELS} models, this call mixes {len(inputs.logits)}")
        return True
    return False


def mix_logits(
    logits,
    weights,
    *,
    normalize: bool = True,
    temperature=1.0,
    plausibility=0.0,
    vocab_size: int | None = None,
) -> torch.Tensor:
    """Mix K models' next-token logits: ``s = Σ_k w_k · f(logits_k / T_k)``.

    Parameters
    ----------
    logits : Tensor [K, B, V] or sequence of K Tensors [B, V_k]
        fp32 / bf16 / fp16; the models of a sequence may differ in dtype. NaN counts as
        ``-inf``; a scaled logit past the fp32 range saturates at its largest finite value.
    weights : number, K numbers, or Tensor [K] / [K, B]
        ``w_k``, finite; per row with [K, B]. A model with weight 0 is ignored.
    normalize : bool
        ``f = log_softmax`` (mix log-probabilities) if True, else the identity (raw logits,
        as proxy-tuning mixes them).
    temperature : number, K numbers, or Tensor [K] / [K, B]
        ``T_k > 0``, per model (and per row).
    plausibility : float or Tensor [B]
        ``α`` in [0, 1]: tokens whose probability under model 0 (at ``T_0``) is below ``α``
        times model 0's max become ``-inf`` (contrastive decoding's adaptive plausibility
        constraint); 0 is off, 1 keeps only model 0's argmax.
    vocab_size : int, optional
        Mix the first ``vocab_size`` tokens; needed when the logits differ in width (e.g.
        151936 vs 151665: padded embedding rows), otherwise an error names the widths.

    Returns
    -------
    Tensor [B, V] float32
        ``-inf`` where removed; a NaN sum (``+inf - inf``) also counts as ``-inf``.

    Examples
    --------
    >>> import torch, mta_kernels as mk
    >>> base, expert, anti = torch.tensor([[1.0, 2.0]]), torch.tensor([[3.0, 0.0]]), torch.tensor([[1.0, 0.0]])
    >>> mk.mix_logits([base, expert, anti], [1.0, 0.5, -0.5], normalize=False)  # proxy-tuning
    tensor([[2., 2.]])
    """
    inputs = mix_inputs(logits, weights, normalize, temperature, plausibility, vocab_size)
    V = inputs.logits[0].shape[1]
    if inputs.batch == 0:
        return torch.empty((0, V), dtype=torch.float32, device=inputs.device)
    if _too_many_models(MIX_LOGITS, inputs):
        return MIX_LOGITS.fn("reference")(inputs)
    return MIX_LOGITS.kernel(inputs.device)(inputs)


def mix_and_sample(
    logits,
    weights,
    *,
    normalize: bool = True,
    temperature=1.0,
    plausibility=0.0,
    top_k: int | torch.Tensor = 0,
    top_p: float | torch.Tensor = 1.0,
    min_p: float | torch.Tensor = 0.0,
    generator: torch.Generator | None = None,
    return_logprobs: bool = False,
    vocab_size: int | None = None,
):
    """Sample one token per row from ``softmax(filter(mix_logits(...)))`` in one fused pass.

    The same distribution as ``mk.sample(mk.mix_logits(...), 1.0, top_k, top_p, min_p)``,
    and with the same generator the same draw. The log-softmax normalisers shift a row's
    scores by one constant, which no top-k / top-p / min-p cut and no softmax can see, so
    the fused kernels skip them: each model's logits are read once (model 0 twice when
    ``plausibility`` is on, for its max) and the K x [B, V] scores are never stored.
    For greedy decoding on the mixture use ``top_k=1``; a sampling temperature ``τ`` on
    the mixture is ``weights / τ``.

    Parameters
    ----------
    logits, weights, normalize, temperature, plausibility, vocab_size
        As in :func:`mix_logits`.
    top_k, top_p, min_p : scalar or Tensor [B]
        As in :func:`mta_kernels.sample`, applied to the mixture.
    generator : torch.Generator, optional
        On the logits' device: one ``U[0, 1)`` draw per row.
    return_logprobs : bool
        Also return the chosen token's log-probability under the filtered mixture.

    Returns
    -------
    tokens : Tensor [B] int64
        ``-1`` for a row where nothing is left (no finite mixed score).
    logprobs : Tensor [B] float32, only if ``return_logprobs``

    Examples
    --------
    >>> import torch, mta_kernels as mk
    >>> expert, amateur = torch.tensor([[2.0, 1.9, -5.0]]), torch.tensor([[2.0, 0.0, -9.0]])
    >>> mk.mix_and_sample([expert, amateur], [1.0, -1.0], plausibility=0.1, top_k=1)  # contrastive
    tensor([1])
    """
    inputs = mix_inputs(logits, weights, normalize, temperature, plausibility, vocab_size)
    top_k_hint = top_k if isinstance(top_k, int) else None
    top_k, top_p, min_p = _sampling_params(inputs, top_k, top_p, min_p)
    device = inputs.device
    check_generator(generator, device)
    uniform = torch.rand(inputs.batch, generator=generator, device=device, dtype=torch.float32)
    if inputs.batch == 0:
        tokens = torch.empty(0, dtype=torch.int64, device=device)
        logprobs = torch.empty(0, dtype=torch.float32, device=device)
    else:
        kernel = MIX_AND_SAMPLE.kernel(device)
        if _too_many_models(MIX_AND_SAMPLE, inputs):
            kernel = mix_then_sample
        tokens, logprobs = kernel(inputs, top_k, top_p, min_p, uniform, top_k_hint)
    return (tokens, logprobs) if return_logprobs else tokens
