"""Trace parsing: ``<think>…</think>answer`` into thinking, answer and steps.

A step is a paragraph of the thinking: the text is split on blank lines ("\\n\\n"), and
empty steps are dropped. :class:`TraceError` carries the short reason a record is skipped
(the SBT pipeline counts skips by it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["THINK_OPEN", "THINK_CLOSE", "TraceError", "Trace", "split_steps", "thinking_and_answer", "split_trace"]

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"
_STEP_BREAK = re.compile(r"\n[ \t]*\n\s*")  # "\n\n" (blank lines; more than one is one break)


class TraceError(ValueError):
    """A trace that cannot be scored or built; ``reason`` is the short skip reason."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclass
class Trace:
    thinking: str              # text between <think> and </think>, stripped
    answer: str                # text after </think>, stripped
    steps: list[tuple[int, int]]  # character spans of the steps inside ``thinking``


def split_steps(thinking: str) -> list[tuple[int, int]]:
    """Character spans of the steps of ``thinking``: split on "\\n\\n", empty steps dropped."""
    spans, pos = [], 0
    for m in _STEP_BREAK.finditer(thinking):
        spans.append((pos, m.start()))
        pos = m.end()
    spans.append((pos, len(thinking)))
    out = []
    for s, e in spans:
        while s < e and thinking[s].isspace():
            s += 1
        while e > s and thinking[e - 1].isspace():
            e -= 1
        if e > s:
            out.append((s, e))
    return out


def thinking_and_answer(trace: str) -> tuple[str, str]:
    """The stripped thinking and answer of ``<think>…</think>answer`` (opening tag optional).

    Parameters
    ----------
    trace : str

    Returns
    -------
    thinking, answer : str
        The text between the tags and the text after ``</think>``, both stripped.

    Raises
    ------
    TraceError
        Not a string, no ``</think>``, empty thinking or no answer.
    """
    if not isinstance(trace, str):
        raise TraceError("malformed record", f"trace must be a string, got {type(trace).__name__}")
    close = trace.find(THINK_CLOSE)
    if close < 0:
        raise TraceError("no </think>")
    head = trace[:close]
    open_ = head.find(THINK_OPEN)
    thinking = (head[open_ + len(THINK_OPEN):] if open_ >= 0 else head).strip()
    answer = trace[close + len(THINK_CLOSE):].strip()
    if not thinking:
        raise TraceError("empty thinking")
    if not answer:
        raise TraceError("no answer after </think>")
    return thinking, answer


def split_trace(trace: str) -> Trace:
    """Split ``<think>…</think>answer`` into thinking, answer and steps; TraceError if unusable."""
    thinking, answer = thinking_and_answer(trace)
    return Trace(thinking, answer, split_steps(thinking))
