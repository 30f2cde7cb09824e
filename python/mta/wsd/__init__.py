"""Weak-to-Strong Decoding (arXiv 2506.07434): a small aligned drafter writes the opening,
the base model scores it teacher-forced and takes over at the first confident window —
batched, across different tokenizers.

* :func:`weak_to_strong_decode` — the method (``decode.py``): draft, score, cut, continue;
  returns a :class:`WSDResult` with one :class:`WSDRow` per prompt.
* :func:`score_drafts` — the base model's one batched teacher-forced pass (``scoring.py``).
* ``handover.py`` — carrying the draft between tokenizers as text.
* ``demo.py`` — the GSM8K run behind ``mta wsd``.
"""

from mta.wsd.decode import GAMMA, MAX_DRAFT_TOKENS, WINDOW, weak_to_strong_decode
from mta.wsd.result import WSDResult, WSDRow
from mta.wsd.scoring import score_drafts

__all__ = ["GAMMA", "MAX_DRAFT_TOKENS", "WINDOW", "WSDResult", "WSDRow", "score_drafts", "weak_to_strong_decode"]
