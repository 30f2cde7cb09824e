"""mta: the methods layer on top of the ``mta_kernels`` ops.

Generation, Self-Braking Tuning, Weak-to-Strong Decoding, TFPI, model-task alignment and
inference-time techniques, composed from the fused ops in :mod:`mta_kernels`; the ``mta``
command-line tool (``mta --help``).

``mta`` imports ``mta_kernels``, never the reverse. Submodules load lazily, so
``import mta`` stays cheap (transformers is imported only when a model is needed):

>>> from mta.models import load_smollm2, tiny_random_model      # doctest: +SKIP
>>> model, tokenizer = load_smollm2()                           # doctest: +SKIP
>>> out = mta.generate(model, tokenizer, ["Hi!"], chat_template=True, seed=0)  # doctest: +SKIP
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_LAZY = {
    "generate": "mta.generation.engine",
    "GenerationResult": "mta.generation.result",
    "Lockstep": "mta.mixing",
    "MixRecipe": "mta.mixing",
    "Mixing": "mta.mixing",
    "MixingLogitsProcessor": "mta.mixing",
    "ModelLogits": "mta.mixing",
    "load_smollm2": "mta.models",
    "tiny_random_model": "mta.models",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'mta' has no attribute {name!r}")
