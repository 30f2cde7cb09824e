"""Braking benchmark: the fused ``braking_step`` against a per-row Python LogitsProcessor.

One decode step of SBT's braking controller on a batch that is thinking (the common case:
counters advance, no trigger fires), at V = 151936 (Qwen), B in {64, 256}, fp32, with and
without the margin trigger (the only one that reads the logits rows). Two baselines, both
transformers-style LogitsProcessors looping over rows in Python with per-row counters and a
per-row ``max`` / ``item`` for the margin: the lean one walks the same marker automaton (as
Python lists); the usual one compares the tail of each row's tokens with every marker
tokenisation. Run it through the runner::

    python benchmarks/run.py --family braking [--quick | --full]

The Python overhead per decode step (functional ``braking_step`` against
``BrakingController.step`` and the bare kernel) is the ``overhead`` family
(``bench_overhead.py``).
"""

from __future__ import annotations

import contextlib
import itertools
import math
import random
from dataclasses import dataclass
from pathlib import Path

import torch

import mta_kernels as mk
from benchmarks import harness
from mta.progress import progress_bar
from mta_kernels.braking import BrakingConfig, BrakingState, MarkerTables, braking_step

V = 151936
BATCHES = (64, 256)
PYTHON = "per-row Python processor"
TAIL = "per-row Python processor (tail matching)"
FLOOR = "memory floor"


@dataclass(frozen=True)
class Case:
    """One benchmarked shape: batch size and whether the margin trigger is on."""

    B: int
    margin: bool

    @property
    def label(self) -> str:
        return "budget+ratio+steps+margin" if self.margin else "budget+ratio+steps"


def cases(mode: str) -> list[Case]:
    """``quick``: B=64 only; ``full``: B in {64, 256}; each with and without the margin."""
    batches = BATCHES[:1] if mode == "quick" else BATCHES
    return [Case(B, m) for B, m in itertools.product(batches, (False, True))]


def synthetic_markers(seed: int = 0) -> tuple[list[list[int]], list[int], int, list[int]]:
    """(markers, step tokens, end-of-thinking id, brake ids): ~150 marker tokenisations of
    1-5 tokens and 300 step tokens in a Qwen-sized vocabulary."""
    rng = random.Random(seed)
    markers = [[rng.randrange(V) for _ in range(rng.randint(1, 5))] for _ in range(150)]
    steps = rng.sample(range(V), 300)
    end = V - 268  # 151668 at V = 151936: where Qwen3 keeps </think>
    return markers, steps, end, [rng.randrange(V) for _ in range(16)] + [end]


def synthetic_tables(seed: int = 0) -> MarkerTables:
    markers, steps, end, brake = synthetic_markers(seed)
    return MarkerTables.from_token_ids(markers, steps, end, brake, V)


class PerRowPythonProcessor:
    """The lean baseline: same rules as ``braking_step``, one Python iteration per row, with
    the same marker automaton (as Python lists)."""

    def __init__(self, tables: MarkerTables, cfg: BrakingConfig, B: int):
        self.cls = tables.token_class.tolist()
        self.trans = tables.transitions.tolist()
        self.mlen = tables.match_len.tolist()
        self.step_cls = tables.step_class.tolist()
        self.step_tab = tables.step_table.tolist()
        self.brake = tables.brake_ids.tolist()
        self.end = tables.end_think_id
        self.cfg = cfg
        self.rows = [dict(t=0, m=0, s=0, think=True, brk=False, ac=0, cu=0, pos=0, reason=0, ds=2) for _ in range(B)]

    def _longest_marker_ending(self, r: dict, tok: int) -> int:
        r["ac"] = self.trans[r["ac"]][self.cls[tok] if tok < len(self.cls) else 0]
        return self.mlen[r["ac"]]

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        cfg, last = self.cfg, input_ids[:, -1].tolist()
        for b, r in enumerate(self.rows):
            tok = last[b]
            if tok >= 0 and r["think"]:
                if not r["brk"]:
                    if tok == self.end:
                        r["think"] = False
                    else:
                        r["t"] += 1
                        L = self._longest_marker_ending(r, tok)
                        if L:
                            r["m"] += r["t"] - max(r["cu"], r["t"] - L)
                            r["cu"] = r["t"]
                        code = self.step_tab[self.step_cls[tok] if tok < len(self.step_cls) else 0][r["ds"]]
                        r["ds"] = code & 3
                        r["s"] += code >> 2
                else:
                    r["pos"] += 1
                    if tok == self.end or r["pos"] >= len(self.brake):
                        r["think"] = r["brk"] = False
            if r["think"] and not r["brk"]:
                t = r["t"]
                reason = 0
                if cfg.max_thinking_tokens is not None and t >= cfg.max_thinking_tokens:
                    reason = 1
                elif cfg.marker_ratio is not None and t >= cfg.min_thinking_tokens and t and r["m"] / t >= cfg.marker_ratio:
                    reason = 2
                elif cfg.max_steps is not None and r["s"] >= cfg.max_steps:
                    reason = 3
                elif cfg.end_think_margin is not None:
                    row = scores[b]
                    if (row.max() - row[self.end]).item() <= cfg.end_think_margin:
                        reason = 4
                if reason:
                    r.update(brk=True, reason=reason, pos=0)
            if r["brk"]:
                scores[b].fill_(-math.inf)
                scores[b, self.brake[min(r["pos"], len(self.brake) - 1)]] = 0.0
        return scores


class TailMatchingProcessor(PerRowPythonProcessor):
    """The processor most users write: the same rules, but markers found by comparing the
    tail of each row's thinking tokens with every marker tokenisation (no automaton)."""

    def __init__(self, tables: MarkerTables, cfg: BrakingConfig, B: int, markers: list[list[int]]):
        super().__init__(tables, cfg, B)
        self.markers = [list(m) for m in markers]
        for r in self.rows:
            r["hist"] = []

    def _longest_marker_ending(self, r: dict, tok: int) -> int:
        hist = r["hist"]
        hist.append(tok)
        return max((len(m) for m in self.markers if hist[-len(m):] == m), default=0)


def run(device: torch.device, mode: str, bandwidth: float) -> list[dict]:
    """Time every implementation on every case; one row per (case, implementation).

    Returns rows with ``median_us``/``p20_us``/``p80_us``, ``vs_python`` (the per-row
    Python processor's time / this time) and ``x_floor`` (this time / one read of the logits).
    """
    rows = []
    tables = synthetic_tables().to(device)
    progress = progress_bar(cases(mode), desc="braking", unit="shape")
    for case in progress:
        g = torch.Generator(device=device).manual_seed(0)
        logits = torch.randn(case.B, V, generator=g, device=device)
        # Thinking rows that never trigger: the step's steady-state cost.
        cfg = BrakingConfig(max_thinking_tokens=10**9, marker_ratio=2.0, max_steps=10**9,
                            end_think_margin=-1.0 if case.margin else None)
        last = torch.randint(0, V, (case.B,), generator=g, device=device)
        input_ids = last[:, None]
        nbytes = logits.numel() * logits.element_size()
        timings: dict[str, harness.Timing] = {}
        impls = []
        for backend in mk.available_backends(device):
            if backend == "triton":
                continue  # no Triton kernel for this op
            state = BrakingState.new(case.B, device)
            name = "torch reference" if backend == "reference" else f"mta_kernels ({backend})"
            impls.append((name, backend, lambda s=state: braking_step(logits, last, s, tables, cfg)))
        proc = PerRowPythonProcessor(tables, cfg, case.B)
        impls.append((PYTHON, None, lambda: proc(input_ids, logits)))
        tail = TailMatchingProcessor(tables, cfg, case.B, synthetic_markers()[0])
        impls.append((TAIL, None, lambda: tail(input_ids, logits)))
        for name, backend, fn in impls:
            progress.set_postfix_str(f"B={case.B} {case.label}: {name}")
            with harness.forced_backend(backend) if backend else contextlib.nullcontext():
                fn()
                timings[name] = harness.time_fn(fn, device)
        floor = harness.floor_us(nbytes, bandwidth)
        timings[FLOOR] = harness.Timing(floor, floor, floor)
        for name, t in timings.items():
            rows.append({
                "family": "braking", "op": "braking_step", "V": V, "B": case.B, "dtype": "fp32",
                "params": case.label, "impl": name,
                "median_us": t.median_us, "p20_us": t.p20_us, "p80_us": t.p80_us,
                "vs_python": timings[PYTHON].median_us / t.median_us,
                "vs_tail": timings[TAIL].median_us / t.median_us,
                "x_floor": t.median_us / floor,
            })
    return rows


def markdown(rows: list[dict]) -> str:
    """The rows as a markdown table, one line per (shape, implementation)."""
    return harness.markdown_table(rows, [
        ("V", lambda r: str(r["V"])),
        ("B", lambda r: str(r["B"])),
        ("triggers", lambda r: r["params"]),
        ("implementation", lambda r: r["impl"]),
        *harness.timing_columns("µs"),
        ("vs per-row Python", lambda r: f"{r['vs_python']:.1f}×"),
        ("vs tail matching", lambda r: f"{r['vs_tail']:.1f}×"),
        ("× floor", lambda r: f"{r['x_floor']:.2f}"),
    ])


def plot(rows: list[dict], path: Path, title: str) -> None:
    """Median time vs B per implementation, log-log, one panel per trigger set."""
    harness.plot_vs_batch(rows, path, title, panel_keys=("params",), floor_impl=FLOOR)
