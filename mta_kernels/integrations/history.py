"""What a stateful transformers ``LogitsProcessor`` saw last: the next step, or a new generation?

transformers' ``generate`` gives a processor nothing but ``(input_ids, scores)``: no call
id, no "new generation" signal, no beam indices. A processor that keeps per-row state (the
braking counters, another model's KV cache) must tell from ``input_ids`` alone whether this
call continues the rows it saw last. :class:`RowHistory` keeps those rows and answers:

* the rows it saw, each extended by ``k >= 1`` tokens: the same generation, ``k`` new tokens;
* another batch size, device or prompt, or the same prompt at its own width: a new
  generation starts;
* the same prompt but rows that are not the ones it saw, extended: the rows were reordered
  or rewound — beam search (``num_beams > 1``) regroups beams every step, assisted decoding
  rewinds rejected draft tokens — and a state kept per row would now belong to other rows.
  That raises (:class:`RowHistoryError`) instead of giving a wrong result.

The check compares the whole ``[B, W]`` prefix with what was seen (and keeps a copy), so it
costs one read of ``input_ids`` per step and, on a GPU, one host sync — transformers'
``generate`` already syncs every step. :func:`mta.generate` passes its decode state instead,
and its processors skip this check.
"""

from __future__ import annotations

import torch

__all__ = ["RowHistory", "RowHistoryError"]


class RowHistoryError(ValueError):
    """The rows of a generation changed under a stateful processor (reordered or rewound)."""


class RowHistory:
    """The ``input_ids`` of a processor's last call, and the prompt width of its generation.

    Parameters
    ----------
    owner : str
        Named in error messages (``"BrakingLogitsProcessor"``, ``"ModelLogits"``).
    """

    __slots__ = ("owner", "ids", "prompt_width")

    def __init__(self, owner: str):
        self.owner = owner
        self.reset()

    def reset(self) -> None:
        """Forget what was seen: the next call starts a generation."""
        self.ids: torch.Tensor | None = None
        self.prompt_width = 0

    def advance(self, input_ids: torch.Tensor, *, max_new: int | None = None) -> int:
        """Record ``input_ids`` [B, W]; return how many tokens it added to the rows seen last.

        Returns ``k >= 1`` when every row is the row seen at the last call followed by ``k``
        tokens (``k <= max_new`` when given; a longer extension counts as a new prompt that
        begins with the last sequence), else 0: this call starts a generation, whose prompt
        is ``input_ids``.

        Raises
        ------
        RowHistoryError
            The same prompt as the current generation, longer than it, but rows that do not
            extend the rows seen last.
        """
        seen = self.ids
        B, W = input_ids.shape
        added = 0
        if seen is not None and seen.shape[0] == B and seen.device == input_ids.device:
            seen_width, prompt = seen.shape[1], self.prompt_width
            if W > seen_width and torch.equal(input_ids[:, :seen_width], seen):
                added = W - seen_width
                if max_new is not None and added > max_new:
                    added = 0
            elif W > prompt and torch.equal(input_ids[:, :prompt], seen[:, :prompt]):
                what = ("is no longer than at the last call: the rows were rewound, or the same step came twice"
                        if W <= seen_width else "does not extend the rows of the last call: they were reordered")
                raise RowHistoryError(
                    f"{self.owner}: input_ids ({B} x {W}, the last call {B} x {seen_width}) starts with the same "
                    f"prompt but {what}. Beam search (num_beams > 1) and assisted decoding, which reorder or "
                    "rewind rows, are not supported; for a new generate call whose prompt begins with the last "
                    "one's, call reset() before it"
                )
        if added == 0:
            self.prompt_width = W
        self.ids = input_ids.detach().clone()  # generate may write its buffers in place
        return added
