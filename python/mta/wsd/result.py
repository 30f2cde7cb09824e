"""What :func:`mta.wsd.weak_to_strong_decode` returns: one record per prompt, and the batch's timings."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

__all__ = ["WSDResult", "WSDRow"]


@dataclass
class WSDRow:
    """One prompt's Weak-to-Strong decode.

    Token counts in *base* tokens are the draft text re-tokenised by the base tokenizer (the
    switch point is computed there); *drafter* tokens are the ones the drafter generated.

    Attributes
    ----------
    index : int
        The prompt's position in the batch.
    text : str
        The response: the kept draft prefix followed by the base model's continuation, as the
        base tokenizer decodes them together.
    draft_text : str
        The whole greedy draft (special tokens skipped, cut before a stop string).
    draft_token_ids : list of int
        The drafter's tokens of the whole draft.
    draft_finish : str
        How the draft ended: ``"eos"``, ``"stop"`` or ``"length"`` (``max_draft_tokens``).
    draft_base_token_ids : list of int
        ``draft_text`` in the base model's tokens (what was scored).
    draft_base_logprobs : list of float
        The base model's teacher-forced log-probability of each of those tokens.
    switch_point : int
        Base tokens of the draft kept: ``mk.wsd_switch_point``'s cut.
    switched : bool
        Whether a window of the draft reached ``gamma`` (the base model took over there);
        False: the whole draft is kept (it is continued only if it ran out of length).
    kept_text : str
        The first ``switch_point`` base tokens of the draft, decoded.
    kept_draft_tokens : int
        How many of the drafter's tokens ``kept_text`` covers (the largest prefix of
        ``draft_token_ids`` whose text fits in it).
    base_token_ids : list of int
        Tokens the base model generated after the kept prefix (empty when it did not run).
    base_text : str
        Their text (the part of ``text`` after the kept prefix), cut before a stop string.
    base_finish : str or None
        ``"eos"``, ``"stop"``, ``"length"``, ``"abort"``; None when the base did not continue.
    """

    index: int
    text: str
    draft_text: str
    draft_token_ids: list[int]
    draft_finish: str
    draft_base_token_ids: list[int]
    draft_base_logprobs: list[float]
    switch_point: int
    switched: bool
    kept_text: str
    kept_draft_tokens: int
    base_token_ids: list[int]
    base_text: str
    base_finish: str | None

    @property
    def draft_tokens(self) -> int:
        """Tokens the drafter generated (kept or not: batched drafting writes the whole draft)."""
        return len(self.draft_token_ids)

    @property
    def base_tokens(self) -> int:
        """Tokens the base model generated after the switch."""
        return len(self.base_token_ids)

    @property
    def output_tokens(self) -> int:
        """Length of the response in base tokens: kept draft plus continuation."""
        return self.switch_point + self.base_tokens


@dataclass
class WSDResult:
    """A batch of Weak-to-Strong decodes.

    Attributes
    ----------
    rows : list of WSDRow
        One per prompt, in prompt order.
    draft_s, score_s, continue_s : float
        Wall time of the three batched phases: greedy drafting, the base model's
        teacher-forced scoring pass (with the switch points), the base continuation.
    total_s : float
        Wall time of the whole call (tokenisation and text handling included).
    params : dict
        ``window``, ``gamma``, ``max_draft_tokens``, ``max_new_tokens``.
    """

    rows: list[WSDRow]
    draft_s: float = 0.0
    score_s: float = 0.0
    continue_s: float = 0.0
    total_s: float = 0.0
    params: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def texts(self) -> list[str]:
        return [row.text for row in self.rows]

    @property
    def switch_points(self) -> list[int]:
        return [row.switch_point for row in self.rows]

    def records(self) -> list[dict]:
        """One JSON-ready dict per row: its fields, its token counts and the batch's timings
        (``batch_size`` and the phase times are shared by the whole batch, not per row)."""
        batch = {"batch_size": len(self.rows), "batch_draft_s": self.draft_s, "batch_score_s": self.score_s,
                 "batch_continue_s": self.continue_s, "batch_total_s": self.total_s, **self.params}
        return [
            {**asdict(row), "draft_tokens": row.draft_tokens, "base_tokens": row.base_tokens,
             "output_tokens": row.output_tokens, **batch}
            for row in self.rows
        ]
