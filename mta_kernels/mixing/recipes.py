"""Named mixing recipes: proxy-tuning, contrastive decoding, classifier-free guidance, ensembles.

A :class:`MixRecipe` is the set of arguments of :func:`mta_kernels.mix_logits` /
:func:`mta_kernels.mix_and_sample` that defines one method, with the order of the models it
expects. The constructors below write each method's formula in the op's terms

    s = Σ_k w_k · f(logits_k / T_k),   f = log_softmax if normalize else identity,

plus the plausibility cut on model 0. Model 0 is always the model being decoded (the one
whose ``scores`` a ``LogitsProcessor`` receives, ``generate``'s ``model`` in
:func:`mta.generate`).

>>> import torch
>>> from mta_kernels.mixing.recipes import proxy_tuning
>>> base, expert, anti = torch.tensor([[1.0, 2.0]]), torch.tensor([[3.0, 0.0]]), torch.tensor([[1.0, 0.0]])
>>> proxy_tuning(alpha=0.5).mix([base, expert, anti])
tensor([[2., 2.]])
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from mta_kernels._validation import FINITE_NUMBER, NON_NEGATIVE_FINITE, POSITIVE_FINITE, check_number
from mta_kernels.mixing import mix_and_sample, mix_logits

__all__ = ["MixRecipe", "classifier_free_guidance", "contrastive_decoding", "proxy_tuning", "weighted_ensemble"]


def _count_models(logits: object) -> int | None:
    if isinstance(logits, torch.Tensor):
        return logits.shape[0] if logits.dim() == 3 else None
    if isinstance(logits, Sequence) and not isinstance(logits, (str, bytes)):
        return len(logits)
    return None  # the op's own check names the problem


@dataclass(frozen=True)
class MixRecipe:
    """How K models' next-token logits are mixed: the arguments of ``mk.mix_logits``.

    Parameters
    ----------
    weights : tuple of float
        ``w_k``, one per model, finite (a list is turned into a tuple).
    normalize : bool
        Mix log-probabilities (``log_softmax`` of each model) if True, raw logits if False.
    plausibility : float
        ``α`` in [0, 1]: tokens whose probability under model 0 is below ``α`` times model
        0's max are removed (contrastive decoding's adaptive plausibility); 0 is off.
    temperature : float or tuple of float
        ``T_k > 0``, one for all models or one per model, applied to each model's logits
        before ``f``.
    roles : tuple of str, optional
        What each model is, in order (``("base", "expert", "anti_expert")``); only used in
        error messages and ``repr``.

    Examples
    --------
    >>> import torch
    >>> recipe = MixRecipe(weights=(1.0, -0.5), normalize=True, plausibility=0.1)
    >>> expert, amateur = torch.tensor([[2.0, 1.9, -5.0]]), torch.tensor([[2.0, 0.0, -9.0]])
    >>> recipe.mix([expert, amateur]).isinf().tolist()   # token 2 is implausible under model 0
    [[False, False, True]]
    >>> recipe.sample([expert, amateur], top_k=1)       # greedy on the mixture
    tensor([1])
    """

    weights: tuple[float, ...]
    normalize: bool
    plausibility: float = 0.0
    temperature: float | tuple[float, ...] = 1.0
    roles: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        weights = self.weights
        if isinstance(weights, (str, bytes)) or not isinstance(weights, Sequence):
            raise TypeError(f"weights must be a sequence of numbers (one per model), got {type(weights).__name__}")
        if len(weights) == 0:
            raise ValueError("weights is empty: a recipe mixes at least one model")
        object.__setattr__(self, "weights", tuple(check_number(w, f"weights[{k}]", FINITE_NUMBER) for k, w in enumerate(weights)))
        if not isinstance(self.normalize, bool):
            raise TypeError(f"normalize must be a bool, got {type(self.normalize).__name__}")
        alpha = check_number(self.plausibility, "plausibility", NON_NEGATIVE_FINITE)
        if alpha > 1.0:
            raise ValueError(f"plausibility must be in [0, 1], got {self.plausibility!r}")
        object.__setattr__(self, "plausibility", alpha)
        t = self.temperature
        if isinstance(t, Sequence) and not isinstance(t, (str, bytes)):
            if len(t) != len(self.weights):
                raise ValueError(f"temperature has {len(t)} values but the recipe mixes {len(self.weights)} models")
            t = tuple(check_number(x, f"temperature[{k}]", POSITIVE_FINITE) for k, x in enumerate(t))
        else:
            t = check_number(t, "temperature", POSITIVE_FINITE)
        object.__setattr__(self, "temperature", t)
        if self.roles is not None:
            roles = tuple(self.roles)
            if len(roles) != len(self.weights) or not all(isinstance(r, str) for r in roles):
                raise ValueError(f"roles must be {len(self.weights)} strings (one per model), got {self.roles!r}")
            object.__setattr__(self, "roles", roles)

    @property
    def num_models(self) -> int:
        """K, the number of models the recipe mixes (model 0 included)."""
        return len(self.weights)

    def describe_models(self) -> str:
        """``"3 models (base, expert, anti_expert)"``, for messages."""
        roles = f" ({', '.join(self.roles)})" if self.roles else ""
        return f"{self.num_models} model{'s' if self.num_models != 1 else ''}{roles}"

    def _check_count(self, logits: object) -> None:
        got = _count_models(logits)
        if got is not None and got != self.num_models:
            raise ValueError(f"this recipe mixes {self.describe_models()}, got logits of {got}")

    def mix(self, logits, vocab_size: int | None = None) -> torch.Tensor:
        """The mixed scores: :func:`mta_kernels.mix_logits` with this recipe.

        Parameters
        ----------
        logits : Tensor [K, B, V] or sequence of K Tensors [B, V_k]
            The models' logits in the recipe's order.
        vocab_size : int, optional
            Mix the first ``vocab_size`` tokens (needed when the widths differ).

        Returns
        -------
        Tensor [B, V] float32, ``-inf`` where removed.
        """
        self._check_count(logits)
        return mix_logits(
            logits, self.weights, normalize=self.normalize, temperature=self.temperature,
            plausibility=self.plausibility, vocab_size=vocab_size,
        )

    def sample(
        self,
        logits,
        *,
        top_k: int | torch.Tensor = 0,
        top_p: float | torch.Tensor = 1.0,
        min_p: float | torch.Tensor = 0.0,
        generator: torch.Generator | None = None,
        return_logprobs: bool = False,
        vocab_size: int | None = None,
    ):
        """Sample the mixture: :func:`mta_kernels.mix_and_sample` with this recipe.

        ``top_k=1`` is greedy on the mixture. A sampling temperature ``τ`` on the mixture is
        ``dataclasses.replace(recipe, weights=tuple(w / τ for w in recipe.weights))``.

        Returns
        -------
        tokens : Tensor [B] int64 (``-1`` where nothing is left)
        logprobs : Tensor [B] float32, only if ``return_logprobs`` (under the filtered mixture)
        """
        self._check_count(logits)
        return mix_and_sample(
            logits, self.weights, normalize=self.normalize, temperature=self.temperature,
            plausibility=self.plausibility, top_k=top_k, top_p=top_p, min_p=min_p, generator=generator,
            return_logprobs=return_logprobs, vocab_size=vocab_size,
        )


def proxy_tuning(alpha: float = 1.0) -> MixRecipe:
    """Proxy-tuning (Liu et al., 2024): steer a large base model with a small tuned/untuned pair.

    Models, in order: ``(base, expert, anti_expert)`` — the large untuned model being
    decoded, the small tuned model and the small untuned model it was tuned from. Their raw
    logits (no log-softmax) are mixed:

        s = base + α · (expert − anti_expert)      (weights (1, α, −α), normalize=False)

    Parameters
    ----------
    alpha : float
        ``α >= 0``, the strength of the steering (1 in the paper; 0 decodes the base alone).

    Examples
    --------
    >>> import torch
    >>> base, expert, anti = torch.tensor([[1.0, 2.0]]), torch.tensor([[3.0, 0.0]]), torch.tensor([[1.0, 0.0]])
    >>> proxy_tuning(1.0).mix([base, expert, anti])
    tensor([[3., 2.]])
    """
    a = check_number(alpha, "alpha", NON_NEGATIVE_FINITE)
    return MixRecipe(weights=(1.0, a, -a), normalize=False, roles=("base", "expert", "anti_expert"))


def contrastive_decoding(beta: float = 1.0, plausibility: float = 0.1) -> MixRecipe:
    """Contrastive decoding (Li et al., 2023): an expert's log-probabilities minus an amateur's.

    Models, in order: ``(expert, amateur)`` — the model being decoded and a smaller or
    weaker one. Over the tokens the expert finds plausible,

        s = log p_expert − β · log p_amateur       (weights (1, −β), normalize=True)
        V_head = {x : p_expert(x) >= α · max_w p_expert(w)},  s = −inf outside V_head

    The adaptive plausibility constraint (``α = 0.1`` in the paper) keeps the amateur's
    penalty from promoting tokens the expert considers implausible. For an amateur
    temperature (the paper's τ), use ``dataclasses.replace(recipe, temperature=(1.0, τ))``.

    Parameters
    ----------
    beta : float
        ``β >= 0``, the weight of the amateur (1 in the original formulation).
    plausibility : float
        ``α`` in [0, 1].

    Examples
    --------
    >>> import torch
    >>> expert, amateur = torch.tensor([[2.0, 1.9, -5.0]]), torch.tensor([[2.0, 0.0, -9.0]])
    >>> contrastive_decoding().sample([expert, amateur], top_k=1)  # the amateur's favourite loses
    tensor([1])
    """
    b = check_number(beta, "beta", NON_NEGATIVE_FINITE)
    alpha = check_number(plausibility, "plausibility", NON_NEGATIVE_FINITE)
    if alpha > 1.0:
        raise ValueError(f"plausibility must be in [0, 1], got {plausibility!r}")
    return MixRecipe(weights=(1.0, -b), normalize=True, plausibility=alpha, roles=("expert", "amateur"))


def classifier_free_guidance(scale: float = 1.5) -> MixRecipe:
    """Classifier-free guidance for language models (Sanchez et al., 2023).

    Models, in order: ``(conditional, unconditional)`` — usually the same model, run on the
    full prompt and on a prompt without the condition (e.g. only BOS, or without the
    instruction). With guidance strength ``γ``:

        s = log p_u + γ · (log p_c − log p_u)      (weights (γ, 1 − γ), normalize=True)

    ``γ = 1`` is plain conditional decoding; the paper found ``γ = 1.5`` a good default.

    Parameters
    ----------
    scale : float
        ``γ >= 0``.

    Examples
    --------
    >>> import torch
    >>> cond, uncond = torch.tensor([[1.0, 0.9]]), torch.tensor([[2.0, 0.0]])
    >>> classifier_free_guidance(1.5).sample([cond, uncond], top_k=1)  # guided away from token 0
    tensor([1])
    """
    g = check_number(scale, "scale", NON_NEGATIVE_FINITE)
    return MixRecipe(weights=(g, 1.0 - g), normalize=True, roles=("conditional", "unconditional"))


def weighted_ensemble(weights: Sequence[float]) -> MixRecipe:
    """A weighted product of experts: ``s = Σ_k w_k · log p_k`` (normalize=True).

    Models, in the order of ``weights``; model 0 is the model being decoded. Weights need
    not sum to one (the sum acts as an inverse temperature on the ensemble) and may be
    negative (an anti-expert).

    Parameters
    ----------
    weights : sequence of float
        One finite weight per model, at least one.

    Examples
    --------
    >>> import torch
    >>> a, b = torch.tensor([[0.0, 1.0]]), torch.tensor([[3.0, 0.0]])
    >>> weighted_ensemble([0.5, 0.5]).sample([a, b], top_k=1)
    tensor([0])
    """
    if isinstance(weights, (str, bytes)) or not isinstance(weights, Sequence):
        raise TypeError(f"weights must be a sequence of numbers (one per model), got {type(weights).__name__}")
    if len(weights) == 0:
        raise ValueError("weights is empty: an ensemble needs at least one model")
    return MixRecipe(weights=tuple(weights), normalize=True)
