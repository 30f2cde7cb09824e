"""What :func:`mta.generate` returns."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["FINISH_REASONS", "GenerationResult"]

FINISH_REASONS = ("stop", "eos", "length", "abort")


@dataclass
class GenerationResult:
    """Samples of one :func:`mta.generate` call, prompt-major.

    Sample ``i`` is sample ``i % n`` of prompt ``prompt_indices[i] = i // n``; every per-sample
    list has ``len(prompts) * n`` entries.

    Attributes
    ----------
    texts : list of str
        Decoded completions (special tokens skipped), cut before a stop string; empty
        strings when no tokenizer was given.
    token_ids : list of list of int
        Generated tokens, through the EOS token or the token that completed a stop string.
    logprobs : list of list of float
        Log-probability of each token under the distribution it was sampled from (logits
        after ``logits_processors``, temperature, top-k/top-p/min-p), as returned by
        :func:`mta_kernels.sample`; 0 for greedy rows (temperature 0).
    finish_reasons : list of str
        ``"eos"`` (an EOS token), ``"stop"`` (a stop string), ``"length"``
        (``max_new_tokens``), or ``"abort"`` (a logits processor left no finite logit; the
        sample ends there, without a token).
    prompt_indices : list of int
        The prompt each sample continues.
    prompt_token_ids : list of list of int
        Each prompt's token ids (one entry per prompt, not per sample), unpadded.
    entropies : list of list of float or None
        With ``return_entropy=True``: entropy (nats) of the model's own next-token
        distribution (softmax of the raw logits, before processors and temperature) at each
        generated token.
    n : int
        Samples per prompt.
    prefill_s, decode_s : float
        Wall time of the prefill and of the decode loop.
    steps : int
        Decode steps run (forward passes after the prefill, plus one).
    braking : list of BrakingReport or None
        With ``braking=``: per sample, its thinking length and whether / why it braked.
    """

    texts: list[str]
    token_ids: list[list[int]]
    logprobs: list[list[float]]
    finish_reasons: list[str]
    prompt_indices: list[int]
    prompt_token_ids: list[list[int]]
    entropies: list[list[float]] | None = None
    n: int = 1
    prefill_s: float = 0.0
    decode_s: float = 0.0
    steps: int = 0
    extras: dict = field(default_factory=dict)
    braking: list | None = None

    def __len__(self) -> int:
        return len(self.token_ids)

    @property
    def num_tokens(self) -> int:
        """Generated tokens over all samples."""
        return sum(len(t) for t in self.token_ids)

    @property
    def tokens_per_s(self) -> float:
        """Generated tokens per second of prefill + decode."""
        return self.num_tokens / max(self.prefill_s + self.decode_s, 1e-9)

    def samples_of(self, prompt_index: int) -> list[int]:
        """Indices of the ``n`` samples of prompt ``prompt_index``."""
        return [i for i, p in enumerate(self.prompt_indices) if p == prompt_index]
