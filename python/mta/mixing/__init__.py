"""Guided logits mixing with transformers models: proxy-tuning, contrastive decoding,
classifier-free guidance and weighted ensembles.

Two ways to decode a mixture of K models (model 0 = the model being decoded):

* fused, in :func:`mta.generate`: ``mixing=Mixing(other_models, recipe)`` — the other models
  run in lockstep (:class:`Lockstep`) and one :func:`mta_kernels.mix_and_sample` call per
  step mixes, filters and samples;
* in transformers' ``generate``: a
  :class:`~mta_kernels.integrations.transformers.MixingLogitsProcessor` whose sources are
  :class:`ModelLogits` (each model with its own KV cache).

The recipes (:class:`MixRecipe` and its constructors) live in
:mod:`mta_kernels.mixing.recipes` and are re-exported here.

>>> import mta
>>> from mta.mixing import Mixing, contrastive_decoding
>>> out = mta.generate(expert, tok, prompts, mixing=Mixing(amateur, contrastive_decoding()))  # doctest: +SKIP
"""

from mta.mixing.generate import Mixing
from mta.mixing.lockstep import Lockstep
from mta.mixing.sources import ModelLogits
from mta_kernels.integrations.transformers import MixingLogitsProcessor
from mta_kernels.mixing.recipes import (
    MixRecipe,
    classifier_free_guidance,
    contrastive_decoding,
    proxy_tuning,
    weighted_ensemble,
)

__all__ = [
    "Lockstep",
    "MixRecipe",
    "Mixing",
    "MixingLogitsProcessor",
    "ModelLogits",
    "classifier_free_guidance",
    "contrastive_decoding",
    "proxy_tuning",
    "weighted_ensemble",
]
