"""``Lockstep``: extra models decoded in lockstep with a main decode loop, for fused mixing.

Each model gets its own left-padded prompt batch and its own ``DynamicCache``; every step it
is fed the tokens the loop sampled and returns its next-token logits, ready for
:func:`mta_kernels.mix_and_sample`. Nothing here waits for the device: shapes are known on
the host, and tokens, masks and positions stay on the device.
"""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Integral

import torch

from mta.prompts import left_pad

__all__ = ["Lockstep"]


def _vocab_size(model) -> int | None:
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    v = getattr(config, "vocab_size", None)
    return int(v) if isinstance(v, Integral) else None


def _is_id_list(x: object) -> bool:
    if isinstance(x, torch.Tensor):
        return x.dim() == 1
    return isinstance(x, (list, tuple)) and all(isinstance(t, Integral) and not isinstance(t, bool) for t in x)


class _Stream:
    """One model: its cache, attention mask (grown by doubling) and next positions."""

    def __init__(self, model, prompt_ids: list[list[int]], n: int):
        from transformers import DynamicCache

        self.model = model
        self.device = model.device
        self.vocab_size = _vocab_size(model)
        enc = left_pad(prompt_ids, 0, self.device)  # pads are masked: any in-vocabulary id works
        self.cache = DynamicCache(config=model.config)
        out = model(
            input_ids=enc.input_ids, attention_mask=enc.attention_mask, position_ids=enc.position_ids,
            past_key_values=self.cache, use_cache=True, logits_to_keep=1,
        )
        logits = out.logits[:, -1, :]
        mask, lengths = enc.attention_mask, enc.attention_mask.sum(-1)
        if n > 1:
            self.cache.batch_repeat_interleave(n)
            logits, mask, lengths = (t.repeat_interleave(n, dim=0) for t in (logits, mask, lengths))
        self.logits = logits
        self.width = mask.shape[1]  # tokens in the cache, padding included
        self._mask = torch.cat([mask, torch.ones_like(mask)], dim=1)  # capacity doubles when full
        self.position = lengths.unsqueeze(1).clone()  # [B, 1]: position of the next token fed

    def advance(self, tokens: torch.Tensor) -> torch.Tensor:
        if self.width + 1 > self._mask.shape[1]:
            self._mask = torch.cat([self._mask, torch.ones_like(self._mask)], dim=1)
        self.width += 1
        tokens = tokens.to(self.device)
        if self.vocab_size is not None:
            # Finished rows are fed the main model's padding id, which may lie outside a smaller
            # vocabulary; their outputs are ignored, so any valid id does.
            tokens = tokens.clamp(0, self.vocab_size - 1)
        out = self.model(
            input_ids=tokens.unsqueeze(1), attention_mask=self._mask[:, : self.width], position_ids=self.position,
            past_key_values=self.cache, use_cache=True,
        )
        self.position += 1
        self.logits = out.logits[:, -1, :]
        return self.logits


class Lockstep:
    """Extra causal LMs advanced in lockstep with a decode loop: their logits at every step.

    :func:`mta.generate` uses it for ``mixing=``; it can equally drive a hand-written loop.
    Row ``b`` of the batch is sample ``b % n`` of prompt ``b // n`` (prompt-major, as in
    :func:`mta.generate`). Every model runs on its own device in its own dtype.

    Parameters
    ----------
    models : sequence of transformers causal LMs
        The extra models (for a :class:`~mta_kernels.mixing.recipes.MixRecipe`: models
        1..K-1, model 0 being the loop's own).
    n : int
        Samples per prompt: each prompt is prefilled once and its cache rows repeated.

    Examples
    --------
    Contrastive decoding, greedy, by hand:

    >>> import torch, mta_kernels as mk
    >>> from transformers import DynamicCache
    >>> from mta.models import tiny_random_model
    >>> from mta_kernels.mixing.recipes import contrastive_decoding
    >>> expert, amateur = tiny_random_model(vocab_size=100, seed=0), tiny_random_model(vocab_size=100, seed=1)
    >>> recipe, prompt = contrastive_decoding(beta=0.5), [5, 6, 7]
    >>> lockstep = Lockstep([amateur])
    >>> others = lockstep.prefill([prompt])                      # amateur: [1, 100]
    >>> kv = DynamicCache(config=expert.config)
    >>> with torch.no_grad():
    ...     logits = expert(torch.tensor([prompt]), past_key_values=kv).logits[:, -1]
    ...     for _ in range(4):
    ...         token = recipe.sample([logits, *others], top_k=1)  # greedy on the mixture
    ...         others = lockstep.advance(token)
    ...         logits = expert(token[:, None], past_key_values=kv).logits[:, -1]
    >>> lockstep.steps
    4
    """

    def __init__(self, models: Sequence, *, n: int = 1):
        if callable(models) and not isinstance(models, Sequence):
            models = [models]
        models = list(models)
        if not models:
            raise ValueError("models is empty: Lockstep needs at least one model")
        for i, m in enumerate(models):
            if not callable(m) or not hasattr(m, "config"):
                raise TypeError(f"models[{i}] must be a transformers causal LM, got {type(m).__name__}")
        if isinstance(n, bool) or not isinstance(n, Integral) or n < 1:
            raise ValueError(f"n must be an int >= 1, got {n!r}")
        self.models = models
        self.n = int(n)
        self._streams: list[_Stream] | None = None
        self.steps = 0  # tokens fed since the prefill

    @property
    def batch_size(self) -> int | None:
        """Rows (prompts x n) after :meth:`prefill`, else None."""
        return None if self._streams is None else self._streams[0].logits.shape[0]

    @property
    def logits(self) -> list[torch.Tensor]:
        """Each model's latest next-token logits [B, V_k] (on its own device)."""
        if self._streams is None:
            raise RuntimeError("Lockstep: call prefill() first")
        return [s.logits for s in self._streams]

    @torch.no_grad()
    def prefill(self, prompt_ids: Sequence) -> list[torch.Tensor]:
        """Run every model on its prompts (a fresh cache each); their next-token logits.

        Parameters
        ----------
        prompt_ids : list
            The prompts as token ids: a list of P token-id lists shared by every model, or
            one such list per model (e.g. a different unconditional prompt for CFG). Each
            model's prompts are left-padded into one batch, so lengths may differ.

        Returns
        -------
        list of Tensor [P * n, V_k], one per model.
        """
        per_model = self._per_model(prompt_ids)
        self._streams = [_Stream(m, ids, self.n) for m, ids in zip(self.models, per_model)]
        self.steps = 0
        return self.logits

    @torch.no_grad()
    def advance(self, tokens: torch.Tensor) -> list[torch.Tensor]:
        """Feed one token per row to every model; their logits for the token after it.

        Parameters
        ----------
        tokens : Tensor [B] int64
            The tokens the loop chose this step (finished rows: any id, e.g. padding).

        Returns
        -------
        list of Tensor [B, V_k], one per model.
        """
        if self._streams is None:
            raise RuntimeError("Lockstep: call prefill() before advance()")
        if not isinstance(tokens, torch.Tensor) or tokens.dim() != 1 or tokens.shape[0] != self.batch_size:
            shape = tuple(tokens.shape) if isinstance(tokens, torch.Tensor) else type(tokens).__name__
            raise ValueError(f"tokens must be a [B] tensor with B={self.batch_size}, got {shape}")
        self.steps += 1
        return [s.advance(tokens) for s in self._streams]

    def _per_model(self, prompt_ids: Sequence) -> list[list[list[int]]]:
        if isinstance(prompt_ids, (str, bytes)) or not isinstance(prompt_ids, Sequence) or not prompt_ids:
            raise TypeError("prompt_ids must be a non-empty list of token-id lists (or one such list per model)")
        if all(_is_id_list(p) for p in prompt_ids):
            per_model = [prompt_ids] * len(self.models)
        elif len(prompt_ids) == len(self.models) and all(
            isinstance(q, Sequence) and q and all(_is_id_list(p) for p in q) for q in prompt_ids
        ):
            per_model = list(prompt_ids)
        else:
            raise TypeError(
                "prompt_ids must be a list of token-id lists shared by every model, or one such list per model "
                f"({len(self.models)} models)"
            )
        out = []
        for k, prompts in enumerate(per_model):
            rows = [p.tolist() if isinstance(p, torch.Tensor) else [int(t) for t in p] for p in prompts]
            if len(rows) != len(per_model[0]):
                raise ValueError(f"models[{k}] has {len(rows)} prompts but models[0] has {len(per_model[0])}")
            vocab = _vocab_size(self.models[k])
            for i, row in enumerate(rows):
                if not row:
                    raise ValueError(f"prompt {i} of models[{k}] is empty: every prompt needs at least one token")
                bad = [t for t in row if t < 0 or (vocab is not None and t >= vocab)]
                if bad:
                    raise ValueError(f"prompt {i} of models[{k}] holds token id {bad[0]}, outside its vocabulary "
                                     f"[0, {vocab})")
            out.append(rows)
        return out
