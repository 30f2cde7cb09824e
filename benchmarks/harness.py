"""Shared timing and result plumbing for every benchmark family.

Timings are medians with 20% / 80% quantiles, in microseconds:

* GPU: ``triton.testing.do_bench`` (CUDA events, L2 flushed before every run, so each
  call reads its inputs from HBM as a decode step does).
* CPU: wall clock over repeated calls after a warm-up, stopped after a time budget so a
  slow baseline at a large shape does not stall the run.

The memory floor is measured in the same run: a large ``dst.copy_(src)`` timed the same
way gives the achievable bandwidth (read + write bytes per second), and reading the
logits once at that bandwidth is the floor no sampler can beat.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import platform
import re
import statistics
import subprocess
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Timing:
    """Median and 20% / 80% quantiles of one measurement, in microseconds."""

    median_us: float
    p20_us: float
    p80_us: float


def time_gpu(fn: Callable[[], object]) -> Timing:
    """Time ``fn`` on the current CUDA device with ``triton.testing.do_bench``."""
    from triton.testing import do_bench

    median_ms, p20_ms, p80_ms = do_bench(fn, quantiles=[0.5, 0.2, 0.8])
    return Timing(median_ms * 1e3, p20_ms * 1e3, p80_ms * 1e3)


def time_cpu(
    fn: Callable[[], object],
    *,
    budget_s: float = 1.0,
    min_runs: int = 5,
    max_runs: int = 200,
) -> Timing:
    """Time ``fn`` on the CPU: one warm-up call, then runs until the budget is spent.

    Parameters
    ----------
    fn
        Zero-argument callable; CPU ops are synchronous, so its return ends the run.
    budget_s
        Stop once this much time went into timed runs (after ``min_runs``).
    min_runs, max_runs
        Bounds on the number of timed runs.
    """
    fn()
    times: list[float] = []
    spent = 0.0
    while len(times) < max_runs and (len(times) < min_runs or spent < budget_s):
        start = time.perf_counter()
        fn()
        elapsed = time.perf_counter() - start
        times.append(elapsed * 1e6)
        spent += elapsed
    p20, _, _, p80 = statistics.quantiles(times, n=5, method="inclusive")
    return Timing(statistics.median(times), p20, p80)


def time_interleaved(
    fns: dict[str, Callable[[], object]], *, calls: int = 200, repeats: int = 41
) -> dict[str, Timing]:
    """µs per call of each function, timed in ``repeats`` loops of ``calls`` calls with the
    functions taking turns, so that load from other processes falls on all of them alike
    (for differences of a few µs, where a drifting machine would swamp sequential runs)."""
    per_call: dict[str, list[float]] = {name: [] for name in fns}
    for fn in fns.values():
        fn()
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            for _ in range(calls):
                fn()
            per_call[name].append((time.perf_counter() - start) / calls * 1e6)
    out = {}
    for name, xs in per_call.items():
        p20, _, _, p80 = statistics.quantiles(xs, n=5, method="inclusive")
        out[name] = Timing(statistics.median(xs), p20, p80)
    return out


def time_fn(fn: Callable[[], object], device: torch.device) -> Timing:
    """Time ``fn`` with the timer that fits ``device``."""
    return time_gpu(fn) if device.type == "cuda" else time_cpu(fn)


def copy_bandwidth(device: torch.device, nbytes: int = 256 * 2**20) -> float:
    """Achievable memory bandwidth on ``device`` in bytes/s, from a timed ``dst.copy_(src)``.

    A copy reads and writes ``nbytes`` each, so the bandwidth is ``2 * nbytes / time``.
    ``nbytes`` is far above the H100's 50 MB L2 and most CPUs' last-level cache.
    """
    src = torch.empty(nbytes, dtype=torch.uint8, device=device).random_()
    dst = torch.empty_like(src)
    timing = time_fn(lambda: dst.copy_(src), device)
    return 2 * nbytes / (timing.median_us * 1e-6)


def floor_us(nbytes: int, bandwidth: float) -> float:
    """Time in µs to read ``nbytes`` once at ``bandwidth`` bytes/s: the memory floor."""
    return nbytes / bandwidth * 1e6


@contextlib.contextmanager
def forced_backend(name: str) -> Iterator[None]:
    """Force ``MTA_BACKEND=name`` inside the block; restore the previous value after.

    ``mta_kernels`` reads the variable at call time, so the timed calls must run inside
    the block.
    """
    previous = os.environ.get("MTA_BACKEND")
    os.environ["MTA_BACKEND"] = name
    try:
        yield
    finally:
        if previous is None:
            del os.environ["MTA_BACKEND"]
        else:
            os.environ["MTA_BACKEND"] = previous


def device_name(device: torch.device) -> str:
    """GPU name, or the CPU model with the number of cores this process may use."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{model} ({cores} cores)"


def git_commit() -> str:
    """Short commit of the repository, ``+dirty`` when tracked files changed; else ``unknown``."""
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()

    try:
        commit = git("rev-parse", "--short", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("+dirty" if dirty else "")


def environment(device: torch.device) -> dict[str, str | None]:
    """The keys every result row carries: device, commit, versions and date."""
    try:
        import triton

        triton_version = triton.__version__
    except ImportError:
        triton_version = None
    return {
        "device": device_name(device),
        "commit": git_commit(),
        "torch": torch.__version__,
        "triton": triton_version,
        "python": platform.python_version(),
        "date": datetime.date.today().isoformat(),
    }


def slug(text: str) -> str:
    """Lower-case ``text`` with every run of other characters turned into one ``-``."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def timing_columns(unit: str = "µs") -> list[tuple[str, Callable[[dict], str]]]:
    """The median and 20-80 % quantile columns every family's table shows, in µs or ms."""
    scale = 1e3 if unit == "ms" else 1.0
    return [
        (f"median {unit}", lambda r: f"{r['median_us'] / scale:.1f}"),
        (f"p20–p80 {unit}", lambda r: f"{r['p20_us'] / scale:.1f}–{r['p80_us'] / scale:.1f}"),
    ]


def markdown_table(rows: list[dict], columns: list[tuple[str, Callable[[dict], str]]]) -> str:
    """Render ``rows`` as a markdown table; ``columns`` pairs a header with a cell formatter."""
    lines = [
        "| " + " | ".join(header for header, _ in columns) + " |",
        "|" + "|".join("---" for _ in columns) + "|",
    ]
    lines += ["| " + " | ".join(cell(row) for _, cell in columns) + " |" for row in rows]
    return "\n".join(lines)


def plot_vs_batch(
    rows: list[dict], path: Path, title: str, *, panel_keys: tuple[str, ...], floor_impl: str
) -> None:
    """Plot median time vs ``B`` per implementation (log-log, 20–80% band), one panel per
    distinct value of ``panel_keys``; the ``floor_impl`` rows are drawn as a dashed line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels: dict[tuple, list[dict]] = {}
    for row in rows:
        panels.setdefault(tuple(row[k] for k in panel_keys), []).append(row)
    ncols = min(len(panels), 4)
    nrows = -(-len(panels) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.5 * ncols, 3.8 * nrows), squeeze=False)
    for ax, (key, panel_rows) in zip(axes.flat, panels.items()):
        impls = dict.fromkeys(r["impl"] for r in panel_rows)
        for impl in impls:
            line = sorted((r for r in panel_rows if r["impl"] == impl), key=lambda r: r["B"])
            batch = [r["B"] for r in line]
            if impl == floor_impl:
                ax.plot(batch, [r["median_us"] for r in line], "k--", label=impl)
                continue
            ax.plot(batch, [r["median_us"] for r in line], "o-", label=impl)
            ax.fill_between(batch, [r["p20_us"] for r in line], [r["p80_us"] for r in line], alpha=0.2)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        batches = sorted({r["B"] for r in panel_rows})
        ax.set_xticks(batches, [str(b) for b in batches])
        ax.set_xlabel("batch B")
        ax.set_ylabel("time (µs)")
        ax.set_title(textwrap.fill(", ".join(f"{k}={v}" for k, v in zip(panel_keys, key)), 40), fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    axes.flat[0].legend(fontsize=7)
    fig.suptitle(textwrap.fill(title, 40 * ncols), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
