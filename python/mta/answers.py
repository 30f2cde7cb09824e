"""Final answers: pull one out of a completion, and decide whether it equals the gold.

Shared by the rewards, the evaluation harness, the inference-time techniques and the SBT
answer judge, so that "correct" means the same everywhere:

* :func:`extract_answer` takes the last ``\\boxed{...}``, else the text after the last
  ``####`` (GSM8K style), else what follows the last "answer is", else the last number.
* :func:`answers_match` compares two answers: plain numbers (integers, decimals,
  ``1,234``, ``.5``, ``a/b``, ``\\frac{a}{b}``, with ``$`` / ``%`` / a trailing period
  stripped) exactly as fractions, everything else with math-verify in LaTeX mode (a bare
  ``2^{10}``, ``4!`` or ``2x+3`` is read as the expression, not as its first number).
* :func:`exact_value` is the rational value of an answer as math-verify reads it
  (``2^{10}`` -> 1024, ``4!`` -> 24), or None (``\\sqrt{2}``, ``2x+3``).

Every math-verify call is bounded in time (:data:`DEFAULT_TIMEOUT_S`): on the main thread by
an interval timer whose signal interrupts it, elsewhere by a worker process that is killed
when it overruns (sympy can run for ever on a power tower such as ``9^{9^{9^{9}}}``). An
overrun raises :class:`AnswerCheckTimeout` -- never a silent ``False`` -- so callers count
it (the SBT pipeline skips the record with reason "answer check timed out"), never hang on
it. math-verify's own alarm is not used: it turns a timeout into ``False``.
"""

from __future__ import annotations

import logging
import multiprocessing
import re
import signal
import threading
import time
from fractions import Fraction
from functools import lru_cache

__all__ = ["DEFAULT_TIMEOUT_S", "AnswerCheckTimeout", "answers_match", "exact_value", "extract_answer", "is_correct",
           "clear_caches", "latex_text", "parse_number"]

logging.getLogger("math_verify").setLevel(logging.ERROR)  # it warns once about disabled timeouts: ours bound it

DEFAULT_TIMEOUT_S = 5.0

_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
# ASCII digits only: "١٨" is no plain number (math-verify decides on it)
_PLAIN_NUMBER = re.compile(r"^([-+]?)(\d{1,3}(?:,\d{3})+|\d+|(?=\.\d))(\.\d+)?(?:/(\d+))?$", re.ASCII)
_FRAC = re.compile(r"^(-?)\\[dt]?frac\{(-?\d+)\}\{(\d+)\}$", re.ASCII)


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
    """``text`` as an exact number when it is a plain one (see the module docstring), else None.

    Examples
    --------
    >>> parse_number("$1,234.50"), parse_number(".5"), parse_number("\\\\frac{-3}{4}"), parse_number("2^{10}")
    (Fraction(2469, 2), Fraction(1, 2), Fraction(-3, 4), None)
    """
    if text.isascii() and text.isdigit():  # the common case, without the regexes
        return Fraction(int(text))
    return _parse_number(text) if len(text) <= 256 else _parse_number.__wrapped__(text)


@lru_cache(maxsize=65536)
def _parse_number(text: str) -> Fraction | None:
    t = text.strip().strip("$").strip().rstrip(".").strip()
    t = re.sub(r"^\\boxed\{(.*)\}$", r"\1", t).replace("\\!", "").replace("\\$", "").replace(" ", "")
    t = re.sub(r"(\\%|%)$", "", t).replace("\\$", "").lstrip("$").replace("\u2212", "-")  # U+2212 minus sign
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
    value = Fraction((m.group(2).replace(",", "") or "0") + (m.group(3) or ""))
    if m.group(4) is not None:
        if int(m.group(4)) == 0:
            return None
        value /= int(m.group(4))
    return -value if m.group(1) == "-" else value


_DELIMITED = re.compile(r"\\boxed|\\\(|\\\[|(?<!\\)\$.*(?<!\\)\$", re.DOTALL)


def latex_text(text: str) -> str:
    """``text`` as math-verify is given it: LaTeX mode, i.e. ``$…$`` around a bare expression
    (a lone currency ``$`` escaped first) unless it has math delimiters or a ``\\\\boxed``.

    Without the dollars math-verify reads ``2^{10}``, ``4!`` or ``2x+3`` as their first number.
    """
    if _DELIMITED.search(text):
        return text
    return "$" + re.sub(r"(?<!\\)\$", r"\\$", text) + "$"


# --- math-verify, bounded in time -------------------------------------------------------------

@lru_cache(maxsize=65536)
def _parse(text: str) -> tuple:
    """math-verify's parse of ``text`` (already in LaTeX mode), its own timeout off (ours bound it)."""
    from math_verify import parse

    return tuple(parse(text, parsing_timeout=None))


def _match_task(gold: str, candidate: str) -> bool:
    from math_verify import verify

    g, c = _parse(latex_text(gold)), _parse(latex_text(candidate))
    return bool(g) and bool(c) and bool(verify(list(g), list(c), timeout_seconds=None))


def _value_task(text: str) -> Fraction | None:
    from sympy import Basic

    for item in _parse(latex_text(text)):
        if isinstance(item, Basic):
            value = item.doit()  # math-verify keeps 2^{10} and 4! unevaluated
            return Fraction(int(value.p), int(value.q)) if getattr(value, "is_Rational", False) else None
    return None


_TASKS = {"match": _match_task, "value": _value_task}
_FAILED = {"match": False, "value": None}  # the verdict when math-verify raises


class _Alarm(BaseException):
    """The main-thread timer fired. A BaseException, so that math-verify's and sympy's
    ``except Exception`` cannot swallow it (math-verify's own TimeoutException is one too)."""


def _on_alarm(signum, frame):
    raise _Alarm


def _run_task(kind: str, args: tuple):
    try:
        return _TASKS[kind](*args)
    except Exception:  # noqa: BLE001 - math-verify / sympy failing on odd input is a verdict of "no"
        return _FAILED[kind]


def _on_main_thread(kind: str, args: tuple, timeout_s: float):
    """Run a task on this (the main) thread, interrupted by an interval timer after ``timeout_s``."""
    old_handler = signal.signal(signal.SIGALRM, _on_alarm)
    old_delay, old_interval = signal.setitimer(signal.ITIMER_REAL, timeout_s)
    start = time.monotonic()
    try:
        try:
            return _run_task(kind, args)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
    except _Alarm:
        raise AnswerCheckTimeout(f"math-verify took longer than {timeout_s:g} s") from None
    finally:
        signal.signal(signal.SIGALRM, old_handler)
        if old_delay > 0:  # someone else's timer was running: give it back what is left of it
            signal.setitimer(signal.ITIMER_REAL, max(old_delay - (time.monotonic() - start), 1e-3), old_interval)


def _worker(conn) -> None:  # pragma: no cover - runs in the child process
    import math_verify  # noqa: F401 - imported before "ready", so a call's time bound covers only the call
    import sympy  # noqa: F401

    conn.send("ready")
    while True:
        try:
            kind, args = conn.recv()
        except EOFError:
            return
        conn.send(_run_task(kind, args))


_WORKER_START_S = 60.0  # a child's start: a spawned interpreter importing math-verify and sympy


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
        if not parent.poll(_WORKER_START_S) or parent.recv() != "ready":
            self._kill()
            raise AnswerCheckTimeout(f"the answer-check worker did not start within {_WORKER_START_S:g} s")

    def _kill(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.join()
        self._process = self._conn = None

    def call(self, kind: str, args: tuple, timeout_s: float):
        with self._lock:
            if self._process is None or not self._process.is_alive():
                self._start()
            self._conn.send((kind, args))
            if not self._conn.poll(timeout_s):
                self._kill()
                raise AnswerCheckTimeout(f"math-verify took longer than {timeout_s:g} s")
            return self._conn.recv()


_WORKER = _Worker()
_RESULTS: dict = {}   # (kind, args) -> verdict; timeouts are not kept
_RESULTS_MAX = 65536


def _bounded(kind: str, args: tuple, timeout_s: float):
    """A math-verify task's result, at most ``timeout_s`` seconds away (else AnswerCheckTimeout)."""
    key = (kind, args)
    try:
        return _RESULTS[key]
    except KeyError:
        pass
    result = None
    if threading.current_thread() is threading.main_thread():
        try:
            result = (_on_main_thread(kind, args, timeout_s),)
        except ValueError:  # no signals here (an embedded interpreter): the worker bounds it
            result = None
    if result is None:
        result = (_WORKER.call(kind, args, timeout_s),)
    if len(_RESULTS) >= _RESULTS_MAX:
        _RESULTS.clear()
    _RESULTS[key] = result[0]
    return result[0]


def clear_caches() -> None:
    """Forget cached parses and verdicts (benchmarks time cold checks with it)."""
    _RESULTS.clear()
    _parse.cache_clear()


def _check_timeout(timeout_s) -> None:
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float)) or not timeout_s > 0:
        raise ValueError(f"timeout_s must be a number > 0, got {timeout_s!r}")


def answers_match(gold: str, candidate: str, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> bool:
    """Whether ``candidate`` states the same answer as ``gold``.

    Plain numbers compare exactly; anything else goes to math-verify in LaTeX mode, bounded
    by ``timeout_s`` seconds. Verdicts are cached per pair of strings.

    Raises
    ------
    AnswerCheckTimeout
        math-verify did not decide within ``timeout_s`` (e.g. a power tower).

    Examples
    --------
    >>> answers_match("18", "18.0"), answers_match("\\\\frac{1}{2}", "0.5"), answers_match("3", "4")
    (True, True, False)
    >>> answers_match("2^{10}", "1024"), answers_match("2^{10}", "2")
    (True, False)
    """
    for name, value in (("gold", gold), ("candidate", candidate)):
        if not isinstance(value, str):
            raise TypeError(f"{name} must be a str, got {type(value).__name__}")
    _check_timeout(timeout_s)
    a, b = parse_number(gold), parse_number(candidate)
    if a is not None and b is not None:
        return a == b
    if not gold.strip() or not candidate.strip():
        return False
    return _bounded("match", (gold, candidate), float(timeout_s))


def exact_value(answer: str, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> Fraction | None:
    """The rational value of ``answer`` as math-verify reads it in LaTeX mode, or None.

    A plain number is read directly; anything else is parsed by math-verify and evaluated
    (bounded by ``timeout_s``; cached per string).

    Raises
    ------
    AnswerCheckTimeout
        Parsing or evaluating took longer than ``timeout_s``.

    Examples
    --------
    >>> exact_value("2^{10}"), exact_value("4!"), exact_value("-5"), exact_value("2x+3")
    (Fraction(1024, 1), Fraction(24, 1), Fraction(-5, 1), None)
    """
    if not isinstance(answer, str):
        raise TypeError(f"answer must be a str, got {type(answer).__name__}")
    _check_timeout(timeout_s)
    value = parse_number(answer)
    if value is not None or not answer.strip():
        return value
    return _bounded("value", (answer,), float(timeout_s))


def is_correct(completion: str, gold: str, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> bool:
    """Whether the answer :func:`extract_answer` finds in ``completion`` equals ``gold``."""
    answer = extract_answer(completion)
    return answer is not None and answers_match(gold, answer, timeout_s=timeout_s)
