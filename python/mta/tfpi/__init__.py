"""``mta.tfpi``: Thinking-Free Policy Initialization (arXiv 2509.26226).

* :func:`think_free`: the ThinkFree transform (strings, chat messages, token ids;
  idempotent; Qwen3-style ``enable_thinking`` and DeepSeek-R1-style templates);
* :func:`run_stages`: staged RLVR on ThinkFree prompts with growing response lengths
  (``mta tfpi train CONFIG``);
* :func:`compare_modes`: ThinkFree vs thinking of the same model on the same problems
  (``mta tfpi eval``).

Modules: ``transform``, ``stages``, ``evaluate``, ``cli``.
"""

from mta.tfpi.transform import EMPTY_THINK, THINK_CLOSE, THINK_OPEN, render_prompt, think_free, thinking_prompt

__all__ = ["EMPTY_THINK", "THINK_CLOSE", "THINK_OPEN", "compare_modes", "load_tfpi_config", "render_prompt",
           "run_stages", "think_free", "thinking_prompt"]


def __getattr__(name):  # the training and evaluation halves import torch-heavy code: on first use
    if name in ("load_tfpi_config", "run_stages"):
        from mta.tfpi import stages

        return getattr(stages, name)
    if name == "compare_modes":
        from mta.tfpi.evaluate import compare_modes

        return compare_modes
    raise AttributeError(name)
