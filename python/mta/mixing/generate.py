"""``Mixing``: guided logits mixing inside :func:`mta.generate` (the fused path).

``mta.generate(model, ..., mixing=Mixing(others, recipe))`` decodes the mixture of
``model`` (model 0) and ``others`` (models 1..K-1): the extra models are prefilled once per
prompt and advanced in lockstep (:class:`~mta.mixing.lockstep.Lockstep`), and each step one
:func:`mta_kernels.mix_and_sample` call mixes, filters and samples, with ``generate``'s
per-row sampling parameters.
"""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Integral

import torch

import mta_kernels as mk
from mta.prompts import encode_prompts
from mta.mixing.lockstep import Lockstep, _vocab_size
from mta_kernels.mixing.recipes import MixRecipe

__all__ = ["MixedSampler", "Mixing"]


def _is_prompt(x: object) -> bool:
    """One prompt in any of generate's forms: str, chat messages, token ids."""
    if isinstance(x, str):
        return True
    if isinstance(x, torch.Tensor):
        return x.dim() == 1
    if isinstance(x, (list, tuple)) and x:
        return all(isinstance(m, dict) for m in x) or all(
            isinstance(t, Integral) and not isinstance(t, bool) for t in x
        )
    return False


def _prompt_lists(prompts: object, others: int) -> list[list | None]:
    if prompts is None:
        return [None] * others
    if isinstance(prompts, (str, bytes)) or not isinstance(prompts, Sequence):
        raise TypeError(f"prompts must be a list, got {type(prompts).__name__}")
    if prompts and all(_is_prompt(p) for p in prompts):
        if others != 1:
            raise TypeError(
                f"prompts is one list of prompts, but there are {others} other models: give one list of "
                "prompts (or None) per model"
            )
        return [list(prompts)]
    def is_prompt_list(q: object) -> bool:
        return isinstance(q, Sequence) and not isinstance(q, (str, bytes)) and bool(q) and all(map(_is_prompt, q))

    if len(prompts) == others and all(q is None or is_prompt_list(q) for q in prompts):
        return [None if q is None else list(q) for q in prompts]
    raise TypeError(
        "prompts must be, per other model, None (generate's prompts) or a list with one prompt per generate "
        "prompt (a str, a list of chat messages or a list of token ids); with one other model the list of "
        "prompts alone is accepted"
    )


class Mixing:
    """Decode a mixture of models with :func:`mta.generate` (``mixing=`` argument).

    ``generate``'s ``model`` is model 0 of ``recipe``; ``models`` are models 1..K-1, in the
    recipe's order. All share model 0's vocabulary (the same tokenizer), up to padded rows
    cut by ``vocab_size``.

    Every step, the extra models run one incremental forward pass each (their own
    ``DynamicCache``, prefilled once per prompt, rows repeated for the ``n`` samples) and
    one :func:`mta_kernels.mix_and_sample` call samples the mixture with ``generate``'s
    per-row ``top_k`` / ``top_p`` / ``min_p``. ``generate``'s temperature ``τ`` scales the
    mixture (weights ``w_k / τ``, per row); a row at ``τ = 0`` is greedy on the mixture
    (``top_k = 1``). The recipe's own per-model ``temperature`` applies inside the mixture.
    ``generate``'s logprobs are then under the filtered mixture, ``return_entropy`` is the
    entropy of model 0's own distribution, and ``logits_processors`` / ``braking`` act on
    model 0's logits before mixing (a token they remove stays removed when ``w_0 > 0``).
    The extra models never use a static cache or ``torch.compile``.

    Parameters
    ----------
    models : model or sequence of models
        The ``recipe.num_models - 1`` other transformers causal LMs.
    recipe : MixRecipe
        E.g. :func:`~mta_kernels.mixing.recipes.contrastive_decoding`.
    prompts : list, optional
        The other models' own prompts, in any of ``generate``'s prompt forms and tokenised
        as ``generate`` does (tokenizer, ``chat_template``, ``add_special_tokens``): per
        other model, None (``generate``'s prompts) or one prompt per ``generate`` prompt.
        With a single other model, the list of its prompts may be given alone (CFG's
        unconditional prompts). Default: every model reads ``generate``'s prompts.
    vocab_size : int, optional
        Mix the first ``vocab_size`` tokens, needed when the models' logits differ in width
        (otherwise :func:`mta_kernels.mix_logits` raises, naming the widths).

    Examples
    --------
    >>> import mta
    >>> from mta.models import tiny_random_model
    >>> from mta_kernels.mixing.recipes import classifier_free_guidance
    >>> model = tiny_random_model(vocab_size=100)
    >>> out = mta.generate(model, None, [[0, 5, 6, 7], [0, 9]], max_new_tokens=4, temperature=0.0,
    ...                    eos_token_id=[], progress=False,
    ...                    mixing=Mixing(model, classifier_free_guidance(1.5), prompts=[[0], [0]]))
    >>> [len(t) for t in out.token_ids]
    [4, 4]

    Contrastive decoding of a chat model against a smaller one, 4 samples a prompt::

        out = mta.generate(expert, tok, questions, chat_template=True, n=4, temperature=0.8,
                           mixing=Mixing(amateur, contrastive_decoding(beta=0.5)))
    """

    def __init__(self, models, recipe: MixRecipe, *, prompts=None, vocab_size: int | None = None):
        if not isinstance(recipe, MixRecipe):
            raise TypeError(f"recipe must be a MixRecipe (mta_kernels.mixing.recipes), got {type(recipe).__name__}")
        if not isinstance(models, Sequence):
            models = [models]
        models = list(models)
        if len(models) != recipe.num_models - 1:
            raise ValueError(
                f"the recipe mixes {recipe.describe_models()}: generate's model is model 0, so models must hold the "
                f"other {recipe.num_models - 1}, got {len(models)}"
            )
        for i, m in enumerate(models):
            if not callable(m) or not hasattr(m, "config"):
                raise TypeError(f"models[{i}] must be a transformers causal LM, got {type(m).__name__}")
        if vocab_size is not None and (isinstance(vocab_size, bool) or not isinstance(vocab_size, Integral)
                                       or vocab_size < 1):
            raise ValueError(f"vocab_size must be an int >= 1, got {vocab_size!r}")
        self.models = models
        self.recipe = recipe
        self.prompts = _prompt_lists(prompts, len(models))
        self.vocab_size = vocab_size

    def start(self, model, tokenizer, prompt_ids: list[list[int]], *, n: int, params, chat_template: bool,
              add_special_tokens: bool | None) -> MixedSampler:
        """Bind to one :func:`mta.generate` call (called by it): encode the other prompts.

        ``prompt_ids`` are generate's encoded prompts; ``params`` its
        :class:`~mta.generation.params.SamplingParams`.
        """
        P = len(prompt_ids)
        per_model = []
        for k, (other, spec) in enumerate(zip(self.models, self.prompts)):
            source = prompt_ids if spec is None else spec
            if spec is not None and len(spec) != P:
                raise ValueError(f"mixing prompts for models[{k}] has {len(spec)} prompts but generate got {P}")
            try:
                ids = encode_prompts(source, tokenizer, chat_template=chat_template,
                                     add_special_tokens=add_special_tokens, vocab_size=_vocab_size(other))
            except (TypeError, ValueError) as e:
                what = "its own prompts" if spec is not None else "generate's prompts"
                raise type(e)(f"mixing models[{k}] ({what}): {e}") from e
            per_model.append(ids)
        return MixedSampler(self, per_model, n=n, params=params, device=model.device)


class MixedSampler:
    """One :func:`mta.generate` call's mixing: the lockstep models and the fused sampler.

    The decode loop calls :meth:`prefill` once with model 0's first logits, then per step
    :meth:`sample` (instead of the plain sampler) and :meth:`advance` with the fed tokens.
    """

    def __init__(self, mixing: Mixing, prompt_ids: list[list[list[int]]], *, n: int, params, device):
        self.recipe = mixing.recipe
        self.vocab_size = mixing.vocab_size
        self.lockstep = Lockstep(mixing.models, n=n)
        self.prompt_ids = prompt_ids
        self.device = device
        self.top_p, self.min_p = params.top_p, params.min_p
        self.weights, self.top_k = self._row_weights(params.temperature, params.top_k)
        self.others: list[torch.Tensor] = []

    def _row_weights(self, temperature, top_k):
        """``w_k / τ`` per row ([K, B] when τ is per row); greedy rows (τ = 0) get top_k = 1."""
        w = self.recipe.weights
        if not isinstance(temperature, torch.Tensor):
            if temperature == 0.0:
                return w, 1
            return tuple(x / temperature for x in w), top_k
        greedy = temperature == 0
        tau = torch.where(greedy, 1.0, temperature)
        weights = torch.tensor(w, dtype=torch.float32, device=tau.device).unsqueeze(1) / tau.unsqueeze(0)
        if not isinstance(top_k, torch.Tensor):
            top_k = torch.full_like(greedy, top_k, dtype=torch.int64)
        return weights, torch.where(greedy, 1, top_k)

    def _gather(self, logits: list[torch.Tensor]) -> list[torch.Tensor]:
        return [x.to(self.device) for x in logits]

    def prefill(self, logits: torch.Tensor) -> None:
        """Prefill the extra models; check the vocabularies against model 0's ``logits`` [B, V]."""
        self.others = self._gather(self.lockstep.prefill(self.prompt_ids))
        # The op's own checks (widths, vocab_size) on zero rows: a mismatch raises its error
        # here, before the first step, unchanged.
        mk.mix_logits([logits[:0], *(x[:0] for x in self.others)], self.recipe.weights,
                      normalize=self.recipe.normalize, vocab_size=self.vocab_size)

    def sample(self, logits: torch.Tensor, generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Tokens [B] and their logprobs under the filtered mixture, from one fused call."""
        return mk.mix_and_sample(
            [logits, *self.others], self.weights, normalize=self.recipe.normalize,
            temperature=self.recipe.temperature, plausibility=self.recipe.plausibility, top_k=self.top_k,
            top_p=self.top_p, min_p=self.min_p, generator=generator, return_logprobs=True,
            vocab_size=self.vocab_size,
        )

    def advance(self, tokens: torch.Tensor) -> None:
        """Feed the step's tokens (as fed to model 0) to the extra models."""
        self.others = self._gather(self.lockstep.advance(tokens))
