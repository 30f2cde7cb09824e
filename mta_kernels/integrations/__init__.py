"""The ops as other libraries' logits processors, one import path per class.

* ``from mta_kernels.integrations.transformers import BrakingLogitsProcessor``:
  braking in transformers' ``generate`` (and :func:`mta.generate`), any batch size.
* ``from mta_kernels.integrations.transformers import MixingLogitsProcessor``: guided
  logits mixing in transformers' ``generate`` (and :func:`mta.generate`).
* ``from mta_kernels.integrations.vllm import VllmBrakingLogitsProcessor``: braking in the
  vLLM v1 engine (``LLM(..., logits_processors=[...])``, the V1 model runner).

Importing this package imports neither library: the ``transformers`` module needs only
torch, and the ``vllm`` module imports vLLM's interface when it is itself imported.
"""
