"""Final answers: pull one out of a completion, and decide whether it equals the gold.

Shared by the rewards, the evaluation harness and the inference-time techniques, so that
"correct" means the same everywhere:

* :func:`extract_answer` takes the last ``\\boxed{...}``, else the text after the last
  ``####`` (GSM8K style), else what follows the last "answer is", else the last number.
* :func:`answers_match` compares two answers: plain numbers (integers, decimals,
  ``1,234``, ``a/b``, ``\\frac{a}{b}``, with ``$`` / ``%`` / a trailing period stripped)
  exactly as fractions, everything else with math-verify. A math-verify call is bounded in
  time (:data:`DEFAULT_TIMEOUT_S`): on the main thread by its own alarm, elsewhere by a
  worker process that is killed when it overruns (sympy can run for ever on a power tower).
  An overrun raises :class:`AnswerCheckTimeout`; callers count it, never hang on it.
"""

from __future__ import annotations

import logging
import multiprocessing
import re
import threading
from fractions import Fraction

__all__ = ["DEFAULT_TIMEOUT_S", "AnswerCheckTimeout", "answers_match", "extract_answer", "is_correct", "parse_number"]

logging.getLogger("math_verify").setLevel(logging.ERROR)

DEFAULT_TIMEOUT_S = 5.0

_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_PLAIN_NUMBER = re.compile(r"^(-?)(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?(?:/(\d+))?$")
_FRAC = re.compile(r"^(-?)\\[dt]?frac\{(-?\d+)\}\{(\d+)\}$")


class AnswerCheckTimeout(TimeoutError):
    """math-verify did not decide within the time bound."""


def _boxed(text: str) -> str | None:
    """The content of the last ``\\boxed{...}`` (or ``\\fbox{...}``), braces balanced."""
    start = max(text.rfind("\\boxed{"), text.rfind("\\fbox{"))
    if start < 0:
        return None
    i = text.index("{", start) + 1
    depth = 1
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[i:j].strip()
    return None


def extract_answer(text: str) -> str | None:
    """The final answer a completion states, or None when it states none.

    Examples
    --------
    >>> extract_answer("so the total is \\\\boxed{\\\\frac{3}{4}}.")
    '\\\\frac{3}{4}'
    >>> extract_answer("She makes 9 * 2 = 18 dollars.\\n#### 18")
    '18'
    >>> extract_answer("The answer is 42.")
    '42'
    >>> extract_answer("7 + 5 = 12")
    '12'
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    boxed = _boxed(text)
    if boxed:
        return boxed
    if "####" in text:
        tail = text.rsplit("####", 1)[1].strip().splitlines()
        if tail and tail[0].strip():
            return tail[0].strip()
    lowered = text.lower()
    at = lowered.rfind("answer is")
    if at >= 0:
        tail = text[at + len("answer is"):].strip().lstrip(":").strip()
        line = tail.splitlines()[0].strip() if tail else ""
        line = line.rstrip(".").strip()
        if line:
            return line
    numbers = _NUMBER.findall(text.replace(",", ""))
    return numbers[-1] if numbers else None


def parse_number(text: str) -> Fraction | None:
    """``text`` as an exact number when it is a plain one (see the module docstring), else None."""
    t = text.strip().strip("$").strip().rstrip(".").strip()
    t = re.sub(r"^\\boxed\{(.*)\}$", r"\1", t).replace("\\!", "").replace("\\$", "").replace(" ", "")
    t = re.sub(r"(\\%|%)$", "", t).replace("\\$", "").lstrip("$")
    m = _FRAC.match(t)
    if m:
        den = int(m.group(3))
        if den == 0:
            return None
        value = Fraction(int(m.group(2)), den)
        return -value if m.group(1) else value
    m = _PLAIN_NUMBER.match(t)
    if not m:
        return None
    value = Fraction(m.group(2).replace(",", "") + (m.group(3) or ""))
    if m.group(4) is not None:
        if int(m.group(4)) == 0:
            return None
        value /= int(m.group(4))
    return -value if m.group(1) else value


def _latex(text: str) -> str:
    """math-verify reads LaTeX inside ``$...$``; a bare expression gets the dollars."""
    return text if "$" in text or "\\boxed" in text else f"${text}$"


def _verify(gold: str, candidate: str, timeout: float | None) -> bool:
    from math_verify import parse, verify

    g = parse(_latex(gold), parsing_timeout=timeout)
    c = parse(_latex(candidate), parsing_timeout=timeout)
    if not g or not c:
        return False
    return bool(verify(g, c, timeout_seconds=timeout))


def _worker(conn) -> None:  # pragma: no cover - runs in the child process
    while True:
        try:
            gold, candidate = conn.recv()
        except EOFError:
            return
        try:
            conn.send(("ok", _verify(gold, candidate, None)))
        except Exception as error:  # noqa: BLE001 - a verdict of False, with the reason
            conn.send(("error", repr(error)))


class _Worker:
    """One child process running math-verify; killed and replaced when a call overruns."""

    def __init__(self):
        self._lock = threading.Lock()
        self._process = None
        self._conn = None

    def _start(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        parent, child = ctx.Pipe()
        self._process = ctx.Process(target=_worker, args=(child,), daemon=True, name="mta-answer-check")
        self._process.start()
        child.close()
        self._conn = parent

    def _kill(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.join()
        self._process = self._conn = None

    def check(self, gold: str, candidate: str, timeout: float) -> bool:
        with self._lock:
            if self._process is None or not self._process.is_alive():
                self._start()
            self._conn.send((gold, candidate))
            # The first call also waits for the child to import math-verify and sympy.
            if not self._conn.poll(timeout + (10.0 if not getattr(self, "_warm", False) else 0.0)):
                self._kill()
                raise AnswerCheckTimeout(f"math-verify took longer than {timeout:g} s")
            self._warm = True
            status, value = self._conn.recv()
            return status == "ok" and value


_WORKER = _Worker()


def answers_match(gold: str, candidate: str, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> bool:
    """Whether ``candidate`` states the same answer as ``gold``.

    Plain numbers compare exactly; anything else goes to math-verify, bounded by
    ``timeout_s`` seconds (raises :class:`AnswerCheckTimeout` past it).

    Examples
    --------
    >>> answers_match("18", "18.0"), answers_match("\\\\frac{1}{2}", "0.5"), answers_match("3", "4")
    (True, True, False)
    """
    for name, value in (("gold", gold), ("candidate", candidate)):
        if not isinstance(value, str):
            raise TypeError(f"{name} must be a str, got {type(value).__name__}")
    if not (timeout_s > 0):
        raise ValueError(f"timeout_s must be > 0, got {timeout_s!r}")
    a, b = parse_number(gold), parse_number(candidate)
    if a is not None and b is not None:
        return a == b
    if not gold.strip() or not candidate.strip():
        return False
    if threading.current_thread() is threading.main_thread():
        try:
            return _verify(gold, candidate, max(1, round(timeout_s)))
        except TimeoutError as error:
            raise AnswerCheckTimeout(f"math-verify took longer than {timeout_s:g} s") from error
    return _WORKER.check(gold, candidate, timeout_s)


def is_correct(completion: str, gold: str, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> bool:
    """Whether the answer :func:`extract_answer` finds in ``completion`` equals ``gold``."""
    answer = extract_answer(completion)
    return answer is not None and answers_match(gold, answer, timeout_s=timeout_s)
