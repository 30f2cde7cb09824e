"""``mta.rl``: a GRPO / DAPO trainer for transformers causal LMs on verifiable rewards.

Built on the library's pieces: rollouts from :func:`mta.generate` (one prefill per prompt,
finished rows dropped from the batch), old log-probs recomputed teacher-forced with
:func:`mta_kernels.linear_token_logprobs`, :func:`mta_kernels.group_advantages`,
:func:`mta_kernels.policy_loss`; rewards from :mod:`mta.rewards`.

>>> from mta.rl import RLConfig, Trainer                                   # doctest: +SKIP
>>> Trainer(RLConfig(model="smollm2", data="arithmetic", steps=10)).train()  # doctest: +SKIP

Modules: ``config`` (the documented fields), ``loading`` (model / data, checked before any
compute), ``stream`` (data order), ``rollout``, ``logprobs`` (teacher-forced), ``objective``
(advantages, PSR / NSR, loss, KL), ``trainer``, ``checkpoint``, ``metrics`` (JSONL, plots),
``evaluate`` (held-out greedy accuracy), ``cli`` (``mta rl train|plot``).
"""

from mta.lazy_exports import lazy_exports

__all__ = ["OBJECTIVES", "RLConfig", "Trainer", "load_config"]

# Imported on first use: `mta` builds its command line from mta.rl.cli, and importing this
# package must not import torch for commands that never train (`mta sbt score`).
_HOME = {"OBJECTIVES": "config", "RLConfig": "config", "load_config": "config", "Trainer": "trainer"}


__getattr__, __dir__ = lazy_exports("mta.rl", _HOME, globals())
