"""Token log-prob benchmark: forward + backward time and peak memory of

* the naive form users run today: ``hidden @ W.T (+ b)`` -> ``log_softmax`` -> ``gather``
  (verl ``logprobs_from_logits``; ``linear_token_logprobs_reference``),
* ``token_logprobs`` on the materialised logits (``hidden @ W.T`` then the fused op),
* ``linear_token_logprobs`` (chunked, the [N, V] logits never exist).

Every implementation computes logp of every token and backpropagates a per-token upstream
gradient (random, as advantages are) into hidden and weight. Peak memory is what the step
adds on top of its inputs: ``torch.cuda.max_memory_allocated`` on GPU; on CPU the growth of
the resident set's high-water mark (``ru_maxrss``), measured in a fresh subprocess per
implementation so that one run's peak does not hide another's. Run it through the runner::

    python benchmarks/run.py --family logprobs [--quick | --full]
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as a script (the CPU memory subprocess)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from benchmarks import harness

NAIVE = "naive (matmul → log_softmax → gather)"
FUSED = "token_logprobs (logits materialised)"
LINEAR = "linear_token_logprobs (chunked)"
IMPLS = (NAIVE, FUSED, LINEAR)
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


@dataclass(frozen=True)
class Case:
    N: int
    H: int
    V: int
    dtype: str


def cases(device: torch.device, mode: str) -> list[Case]:
    """GPU: N=16384, H=896, V=151936 (Qwen2.5-0.5B head) in bf16 and fp32; CPU: N=4096, H=576,
    V=49152 (SmolLM-135M head) fp32; ``quick``: one small shape."""
    if mode == "quick":
        return [Case(1024, 256, 8192, "fp32")]
    if device.type == "cuda":
        return [Case(16384, 896, 151936, "bf16"), Case(16384, 896, 151936, "fp32")]
    return [Case(4096, 576, 49152, "fp32")]


def make_step(case: Case, impl: str, device: torch.device) -> tuple[Callable[[], None], list[torch.Tensor]]:
    """A zero-argument forward + backward step of ``impl`` and the tensors it keeps alive."""
    import mta_kernels.logprobs as lp

    g = torch.Generator(device=device).manual_seed(0)
    dtype = DTYPES[case.dtype]
    hidden = torch.randn(case.N, case.H, generator=g, device=device).to(dtype).requires_grad_(True)
    weight = (torch.randn(case.V, case.H, generator=g, device=device) / case.H**0.5).to(dtype).requires_grad_(True)
    targets = torch.randint(0, case.V, (case.N,), generator=g, device=device)
    g_logp = torch.randn(case.N, generator=g, device=device)

    def forward():
        if impl == NAIVE:
            return lp.linear_token_logprobs_reference(hidden, weight, targets)
        if impl == FUSED:
            return lp.token_logprobs(hidden @ weight.t(), targets)
        return lp.linear_token_logprobs(hidden, weight, targets)

    def step():
        hidden.grad = weight.grad = None
        forward().backward(g_logp)

    return step, [hidden, weight, targets, g_logp]


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def _measure_cpu(case: Case, impl: str, min_runs: int) -> dict:
    """In this (fresh) process: peak RSS growth of the first step, then its timing.

    Linux resets the peak-RSS mark (VmHWM) on ``echo 5 > /proc/self/clear_refs``, so the
    peak of importing torch and building the inputs does not hide a small step's peak;
    elsewhere the ``ru_maxrss`` high-water mark is the fallback.
    """
    step, _ = make_step(case, impl, torch.device("cpu"))
    try:
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")
        before = _status_kib("VmRSS")
        step()
        peak_bytes = (_status_kib("VmHWM") - before) * 1024
    except OSError:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
        step()
        peak_bytes = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024
    t = harness.time_cpu(step, budget_s=1.0, min_runs=min_runs)
    return {"peak_bytes": peak_bytes, "median_us": t.median_us, "p20_us": t.p20_us, "p80_us": t.p80_us}


def _measure_gpu(case: Case, impl: str, device: torch.device) -> dict:
    step, keep = make_step(case, impl, device)
    step()  # Triton compilation and cuBLAS heuristics out of the measurement
    torch.cuda.synchronize(device)
    for tensor in keep:
        tensor.grad = None
    base = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    step()
    torch.cuda.synchronize(device)
    peak_bytes = torch.cuda.max_memory_allocated(device) - base
    t = harness.time_gpu(step)
    return {"peak_bytes": peak_bytes, "median_us": t.median_us, "p20_us": t.p20_us, "p80_us": t.p80_us}


def run(device: torch.device, mode: str, bandwidth: float) -> list[dict]:
    """Time and measure every implementation on every case; one row per (case, impl).

    ``bandwidth`` is unused: the step is matmul-bound, so no memory floor is reported.
    Rows carry ``median_us``/``p20_us``/``p80_us``, ``peak_MB`` (memory the step adds
    beyond its inputs) and ``time_vs_naive`` / ``mem_vs_naive`` (this / naive).
    """
    del bandwidth
    rows = []
    for case in cases(device, mode):
        results = {}
        for impl in IMPLS:
            if device.type == "cuda":
                results[impl] = _measure_gpu(case, impl, device)
            else:
                min_runs = 3 if mode == "quick" else 2
                proc = subprocess.run(
                    [sys.executable, __file__, json.dumps(case.__dict__), impl, str(min_runs)],
                    capture_output=True, text=True, check=True, cwd=harness.REPO_ROOT,
                )
                results[impl] = json.loads(proc.stdout.strip().splitlines()[-1])
        naive = results[NAIVE]
        for impl, r in results.items():
            rows.append({
                "family": "logprobs", "op": "fwd+bwd", **case.__dict__, "impl": impl,
                "median_us": r["median_us"], "p20_us": r["p20_us"], "p80_us": r["p80_us"],
                "peak_MB": r["peak_bytes"] / 2**20,
                "time_vs_naive": r["median_us"] / naive["median_us"],
                "mem_vs_naive": r["peak_bytes"] / max(naive["peak_bytes"], 1),
            })
    return rows


def markdown(rows: list[dict]) -> str:
    """The rows as a markdown table, one line per (shape, implementation)."""
    return harness.markdown_table(rows, [
        ("N×H×V", lambda r: f"{r['N']}×{r['H']}×{r['V']}"),
        ("dtype", lambda r: r["dtype"]),
        ("implementation", lambda r: r["impl"]),
        *harness.timing_columns("ms"),
        ("peak MB", lambda r: f"{r['peak_MB']:.0f}"),
        ("time / naive", lambda r: f"{r['time_vs_naive']:.2f}×"),
        ("memory / naive", lambda r: f"{r['mem_vs_naive']:.2f}×"),
    ])


def plot(rows: list[dict], path: Path, title: str) -> None:
    """Time and peak memory per implementation, one bar group per shape."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shapes = list(dict.fromkeys(f"{r['N']}×{r['H']}×{r['V']} {r['dtype']}" for r in rows))
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    width = 0.8 / len(IMPLS)
    for k, impl in enumerate(IMPLS):
        sel = [r for r in rows if r["impl"] == impl]
        xs = [shapes.index(f"{r['N']}×{r['H']}×{r['V']} {r['dtype']}") + k * width for r in sel]
        axes[0].bar(xs, [r["median_us"] / 1e3 for r in sel], width, label=impl)
        axes[1].bar(xs, [r["peak_MB"] for r in sel], width, label=impl)
    for ax, label in zip(axes, ("fwd+bwd time (ms)", "peak memory added (MB)")):
        ax.set_xticks([i + 0.4 - width / 2 for i in range(len(shapes))], shapes, fontsize=8)
        ax.set_ylabel(label)
        ax.grid(True, axis="y", alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":  # CPU memory subprocess: case JSON, impl, min_runs
    print(json.dumps(_measure_cpu(Case(**json.loads(sys.argv[1])), sys.argv[2], int(sys.argv[3]))))
