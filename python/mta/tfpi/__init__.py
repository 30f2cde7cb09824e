"""``mta.tfpi``: Thinking-Free Policy Initialization (arXiv 2509.26226).

* :func:`think_free`: the ThinkFree transform (strings, chat messages, token ids;
  idempotent; Qwen3-style ``enable_thinking`` and DeepSeek-R1-style templates);
* :func:`run_stages`: staged RLVR on ThinkFree prompts with growing response lengths
  (``mta tfpi train CONFIG``);
* :func:`compare_modes`: ThinkFree vs thinking of the same model on the same problems
  (``mta tfpi eval``).

Modules: ``transform``, ``stages``, ``evaluate``, ``cli``.
"""

from mta.lazy_exports import lazy_exports

__all__ = ["EMPTY_THINK", "THINK_CLOSE", "THINK_OPEN", "compare_modes", "load_tfpi_config", "render_prompt",
           "run_stages", "think_free", "thinking_prompt"]

# Imported on first use (every module here imports torch): `mta` builds its command line
# from mta.tfpi.cli, and `mta sbt score` must not import torch.
_HOME = {"EMPTY_THINK": "transform", "THINK_CLOSE": "transform", "THINK_OPEN": "transform",
         "render_prompt": "transform", "think_free": "transform", "thinking_prompt": "transform",
         "load_tfpi_config": "stages", "run_stages": "stages", "compare_modes": "evaluate"}

__getattr__, __dir__ = lazy_exports("mta.tfpi", _HOME, globals())
