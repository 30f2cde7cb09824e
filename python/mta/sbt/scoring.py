"""Overthinking scores of long chain-of-thought traces (SBT, arXiv 2505.14604).

``score = β·κ + (1−β)·(1−η)`` with κ = marker tokens / thinking tokens and
η = (1-based step of the first correct answer) / (thinking steps), β = 0.1.

Fast path (same results as :func:`mta.sbt.reference.score_trace_reference`, the rule
computed the obvious way): the thinking is tokenised once and marker tokens are counted by
bisection over the offsets (:mod:`mta.sbt.tokens`), markers are found in one scan
(:mod:`mta.sbt.markers`), and one scan of the whole thinking picks the steps that can
reach the gold before their conclusions are read (:mod:`mta.sbt.answers`).
:func:`score_traces` tokenises a batch in one call and can spread the text work over
processes. The tokenizer dominates the cost; pass ``offsets`` (e.g. from the generator) to
skip it. Which steps reach the answer is the judge's call (:mod:`mta.sbt.judge`; the
rule-based one by default).

Steps and ``<think>`` parsing: :mod:`mta.sbt.traces`.
"""

from __future__ import annotations

from bisect import bisect_left
from concurrent.futures import Executor
from dataclasses import asdict, dataclass

from mta.sbt.judge import judge_steps
from mta.sbt.markers import SBT_MARKERS, marker_spans
from mta.sbt.tokens import batch_token_offsets, count_covered_tokens, covered_token_starts, token_offsets
from mta.sbt.traces import Trace, TraceError, split_trace, thinking_and_answer

__all__ = [
    "BETA", "TAU1", "TAU2", "TraceScore", "TraceAnalysis", "score_trace", "score_traces",
    "analyse_trace", "prefix_scores",
]

BETA = 0.1
TAU1 = 0.2
TAU2 = TAU1 + 0.05


@dataclass
class TraceScore:
    """κ, η and the score of one trace, with the counts they come from."""

    thinking_tokens: int
    marker_tokens: int
    kappa: float
    steps: int
    first_correct_step: int | None   # 1-based; None when no step holds the gold answer
    eta: float | None
    score: float | None              # None when never correct

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class TraceAnalysis:
    """What SBT data building needs of a trace: its steps, token offsets, the start offsets
    of its marker tokens and the steps holding the answer."""

    trace: Trace
    offsets: list
    marked_starts: list[int]
    correct_steps: list[int]  # 0-based indices of steps holding the answer (up to what was asked)


def _prepare(trace: str, gold, tokenizer, offsets, anchor, markers, problem, judge, want_correct):
    """(split trace, correct steps, token offsets of the thinking, marker spans)."""
    t = split_trace(trace)
    correct = judge_steps(judge, t.thinking, t.steps, gold, problem, want_correct)
    if offsets is None:
        if tokenizer is None:
            raise ValueError("tokenizer: pass a tokenizer (or offsets) to count thinking tokens")
        offsets = token_offsets(tokenizer, t.thinking)
    return t, correct, offsets, marker_spans(t.thinking, anchor=anchor, markers=markers)


def analyse_trace(trace: str, gold, tokenizer=None, *, offsets=None, anchor="anywhere",
                  markers=SBT_MARKERS, want_correct: int | None = 1, problem: str | None = None,
                  judge=None) -> TraceAnalysis:
    """Split, tokenise and judge one trace, keeping the per-token detail that
    :func:`prefix_scores` needs.

    Parameters
    ----------
    trace, gold, tokenizer, offsets, anchor, markers, problem, judge
        As in :func:`score_trace`.
    want_correct : int or None
        How many steps reaching the answer to find (None: all the judge gives).

    Returns
    -------
    TraceAnalysis

    Raises
    ------
    TraceError
        As :func:`score_trace`.
    """
    t, correct, offsets, spans = _prepare(trace, gold, tokenizer, offsets, anchor, markers, problem, judge,
                                          want_correct)
    marked = covered_token_starts(offsets, spans)
    return TraceAnalysis(t, offsets, marked, correct)


def _combine(kappa: float, eta: float | None, beta: float) -> float | None:
    return None if eta is None else beta * kappa + (1.0 - beta) * (1.0 - eta)


def score_from_counts(n_tok: int, n_marked: int, n_steps: int, correct: list[int], beta: float) -> TraceScore:
    """The :class:`TraceScore` of a trace with ``n_tok`` thinking tokens, ``n_marked`` of them
    marker tokens, ``n_steps`` steps and ``correct`` (0-based) steps holding the answer."""
    kappa = n_marked / n_tok if n_tok else 0.0
    first = correct[0] + 1 if correct else None
    eta = first / n_steps if first is not None else None
    return TraceScore(n_tok, n_marked, kappa, n_steps, first, eta, _combine(kappa, eta, beta))


def check_beta(beta: float) -> None:
    """ValueError unless ``0 <= beta <= 1``."""
    if not 0.0 <= beta <= 1.0:
        raise ValueError(f"beta must be in [0, 1], got {beta}")


def score_trace(trace: str, gold, tokenizer=None, *, offsets=None, beta: float = BETA,
                anchor: str = "anywhere", markers=SBT_MARKERS, problem: str | None = None,
                judge=None) -> TraceScore:
    """Overthink score of one trace.

    Parameters
    ----------
    trace : str
        ``<think>…</think>answer`` (the opening tag is optional).
    gold : str or number
        The gold final answer (read in LaTeX mode; equality decided by math-verify).
    tokenizer : transformers fast tokenizer or tokenizers.Tokenizer
        Counts thinking and marker tokens. Not needed when ``offsets`` is given.
    offsets : sequence of (start, end) or array of shape (tokens, 2), optional
        Token offsets of the *thinking text* (``split_trace(trace).thinking``), precomputed;
        an integer NumPy array is counted fastest.
    beta : float
        Weight of κ (0.1 in the paper).
    anchor : {"anywhere", "sentence"}
        Marker rule, see :mod:`mta.sbt.markers` (every occurrence by default, as Eq. 2).
    problem : str, optional
        The question; the rule-based judge does not take a restated quantity of it for the
        answer.
    judge : callable, optional
        Which steps reach the answer (:mod:`mta.sbt.judge`); the rule-based judge by default.

    Returns
    -------
    TraceScore
        ``score`` and ``eta`` are None when no step reaches the gold answer.

    Raises
    ------
    TraceError
        The trace has no ``</think>``, empty thinking, no answer, the gold is unusable, or an
        answer check timed out.

    See Also
    --------
    score_traces : many traces, one tokenizer call, optional worker processes.
    """
    check_beta(beta)
    t, correct, offsets, spans = _prepare(trace, gold, tokenizer, offsets, anchor, markers, problem, judge, 1)
    return score_from_counts(len(offsets), count_covered_tokens(offsets, spans), len(t.steps), correct, beta)


def _text_chunk(items, anchor, markers, keep_text: bool, judge=None):
    """The tokenizer-free part of :func:`score_traces` for ``(trace, gold, problem)`` triples
    (in a worker process or not): ``(thinking or None, steps, marker spans, correct steps)``
    or the TraceError, in the order :func:`score_trace` checks things."""
    out = []
    for trace, gold, problem in items:
        try:
            t = split_trace(trace)
            correct = judge_steps(judge, t.thinking, t.steps, gold, problem, 1)
            spans = marker_spans(t.thinking, anchor=anchor, markers=markers)
            out.append((t.thinking if keep_text else None, len(t.steps), spans, correct))
        except TraceError as exc:
            out.append(exc)
    return out


def score_traces(traces, golds, tokenizer=None, *, offsets=None, beta: float = BETA,
                 anchor: str = "anywhere", markers=SBT_MARKERS, problems=None, judge=None,
                 errors: str = "raise", workers: int | Executor | None = None, chunk_size: int = 64) -> list:
    """Overthink scores of many traces; the same results as :func:`score_trace` on each.

    The thinking texts are tokenised in one ``encode_batch`` call (parallel in the Rust
    tokenizer), each distinct gold is read once (the rule judge caches its checkers), and
    with ``workers`` the text work (markers, answer checks) runs in worker processes while
    this one tokenises.

    Parameters
    ----------
    traces : sequence of str
        ``<think>…</think>answer`` strings.
    golds : sequence of str or number
        One gold answer per trace.
    tokenizer : transformers fast tokenizer or tokenizers.Tokenizer
        Counts tokens. Not needed when ``offsets`` is given.
    offsets : sequence, optional
        Per trace, the token offsets of its thinking text, precomputed: a list of
        ``(start, end)`` or an integer array of shape (tokens, 2).
    beta, anchor, markers, judge
        As in :func:`score_trace` (a judge given with ``workers`` must pickle).
    problems : sequence of str or None, optional
        One question per trace (see :func:`score_trace`'s ``problem``).
    errors : {"raise", "return"}
        A trace that cannot be scored raises its TraceError (``"raise"``) or leaves the
        TraceError in its place in the result (``"return"``).
    workers : int or concurrent.futures.Executor, optional
        ``None`` / ``1``: this process only. An int > 1: a process pool of that size for this
        call, unless the batch fits in one chunk (spawned interpreters: starting them costs
        a second or more, so it pays from several thousand traces). An executor, e.g. a
        ``ProcessPoolExecutor`` kept across calls: used as is. Spawned workers import the
        caller's main module, which must guard its entry point (``if __name__ ==
        "__main__":``) as for any ``multiprocessing`` use.
    chunk_size : int
        Traces per task sent to a worker.

    Returns
    -------
    list of TraceScore (or TraceError with ``errors="return"``)

    Examples
    --------
    >>> scores = score_traces(traces, golds, tokenizer)                  # doctest: +SKIP
    >>> scores = score_traces(traces, golds, offsets=offs, workers=8)    # doctest: +SKIP
    """
    check_beta(beta)
    if errors not in ("raise", "return"):
        raise ValueError(f"errors must be 'raise' or 'return', got {errors!r}")
    traces, golds = list(traces), list(golds)
    if len(golds) != len(traces):
        raise ValueError(f"golds: {len(golds)} answers for {len(traces)} traces")
    problems = [None] * len(traces) if problems is None else list(problems)
    if len(problems) != len(traces):
        raise ValueError(f"problems: {len(problems)} problems for {len(traces)} traces")
    if offsets is not None:
        offsets = list(offsets)
        if len(offsets) != len(traces):
            raise ValueError(f"offsets: {len(offsets)} offset lists for {len(traces)} traces")
    elif tokenizer is None:
        raise ValueError("tokenizer: pass a tokenizer (or offsets) to count thinking tokens")
    if not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be an int >= 1, got {chunk_size!r}")
    markers = tuple(markers)
    marker_spans("", anchor=anchor, markers=markers)  # bad anchor / markers: ValueError now
    items = list(zip(traces, golds, problems))

    own_pool = None
    executor = workers if isinstance(workers, Executor) else None
    if executor is None and workers is not None:
        if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
            raise ValueError(f"workers must be an int >= 1 or an Executor, got {workers!r}")
        if workers > 1 and len(items) > chunk_size:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            # spawn: never fork a process that holds torch's and the tokenizer's threads
            own_pool = executor = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
    try:
        if executor is None:
            parts = _text_chunk(items, anchor, markers, offsets is None, judge)
            if offsets is None:
                texts = [p[0] for p in parts if not isinstance(p, TraceError)]
                it = iter(batch_token_offsets(tokenizer, texts))
                offsets = [None if isinstance(p, TraceError) else next(it) for p in parts]
        else:
            futures = [executor.submit(_text_chunk, items[i:i + chunk_size], anchor, markers, False, judge)
                       for i in range(0, len(items), chunk_size)]
            if offsets is None:  # tokenise here while the workers do the text work
                texts, where = [], []
                for i, (trace, _, _) in enumerate(items):
                    try:
                        texts.append(thinking_and_answer(trace)[0])
                        where.append(i)
                    except TraceError:
                        pass
                offsets = [None] * len(items)
                for i, offs in zip(where, batch_token_offsets(tokenizer, texts)):
                    offsets[i] = offs
            parts = [p for f in futures for p in f.result()]
    finally:
        if own_pool is not None:
            own_pool.shutdown()

    out = []
    for part, offs in zip(parts, offsets):
        if isinstance(part, TraceError):
            if errors == "raise":
                raise part
            out.append(part)
            continue
        _, n_steps, spans, correct = part
        out.append(score_from_counts(len(offs), count_covered_tokens(offs, spans), n_steps, correct, beta))
    return out


def prefix_scores(a: TraceAnalysis, beta: float = BETA) -> list[float]:
    """Score of every step prefix (k = 1..n): κ and η of the first k steps. Before the first
    correct step η counts as 1 (no redundant steps yet)."""
    starts = [s for s, _ in a.offsets]
    first = a.correct_steps[0] + 1 if a.correct_steps else None
    out = []
    for k, (_, end) in enumerate(a.trace.steps, start=1):
        n_tok = bisect_left(starts, end)
        n_mark = bisect_left(a.marked_starts, end)
        kappa = n_mark / n_tok if n_tok else 0.0
        eta = 1.0 if first is None or first > k else first / k
        out.append(beta * kappa + (1.0 - beta) * (1.0 - eta))
    return out
