"""Python overhead per decode-step call: the one-shot ops against the objects a decode loop builds once.

At B = 64 and a small vocabulary, with parameters that make the kernel itself cheap, each
row times one call of:

* ``sample`` (greedy, V = 128: the kernel is one max pass): ``mk.sample(logits, 0.0,
  generator=g)`` — checks, parameter tensors and backend choice on every call — against
  ``mk.Sampler(B, device, 0.0)(logits, generator=g)``, built once;
* ``braking_step`` (V = 256, thinking rows that never trigger, no margin: the kernel reads
  no logits row): ``mk.braking_step(logits, last, state, tables, cfg)`` against
  ``mk.BrakingController(...).step(logits, last)``;
* for each op, the bare kernel on prepared arguments (the uniform draw included for
  ``sample``): ``overhead_us`` is a row's time minus it.

The implementations take turns (:func:`harness.time_interleaved`), so load from other
processes falls on all alike. Objects a checkout lacks (an older one) are skipped, so the
same file measures a "before" tree. CPU timings run on one intra-op thread: waking a second
one on a shared machine adds more noise than the microseconds measured. On a GPU the same
calls time the launch path.
"""

from __future__ import annotations

from pathlib import Path

import torch

import mta_kernels as mk
from benchmarks import harness

B = 64


def _sampling(device: torch.device) -> tuple[int, dict]:
    V = 128
    g = torch.Generator(device=device).manual_seed(0)
    logits = torch.randn(B, V, generator=g, device=device)
    zeros, no_k = torch.zeros(B, device=device), torch.zeros(B, dtype=torch.int64, device=device)
    ones = torch.ones(B, device=device)
    op = torch.ops.mta.sample.default
    fns = {
        "bare kernel": lambda: op(logits, zeros, no_k, ones, zeros, torch.rand(B, generator=g, device=device)),
        "mk.sample (one-shot)": lambda: mk.sample(logits, 0.0, generator=g),
    }
    if hasattr(mk, "Sampler"):
        sampler = mk.Sampler(B, device, 0.0)
        fns["mk.Sampler (built once)"] = lambda: sampler(logits, generator=g)
    return V, fns


def _braking(device: torch.device) -> tuple[int, dict]:
    from mta_kernels.braking import BrakingConfig, BrakingState, MarkerTables

    V = 256
    tables = MarkerTables.from_token_ids([[5, 6], [7]], [8], V - 1, [9, 10, V - 1], vocab_size=V).to(device)
    cfg = BrakingConfig(max_thinking_tokens=10**9, marker_ratio=2.0, max_steps=10**9)
    logits = torch.zeros(B, V, device=device)
    last = torch.randint(0, V - 1, (B,), generator=torch.Generator().manual_seed(0)).to(device)
    state = BrakingState.new(B, device)
    fns = {"mk.braking_step (one-shot)": lambda: mk.braking_step(logits, last, state, tables, cfg)}
    if hasattr(mk, "BrakingController"):
        from mta_kernels.braking.ops import BRAKING_STEP

        kernel, config = BRAKING_STEP.kernel(device), cfg.normalised(B, device)
        fns = {
            "bare kernel": lambda: kernel(logits, last, state.counters, state.flags, tables.packed, tables.layout,
                                          config),
            **fns,
        }
        controller = mk.BrakingController(tables, cfg, B, device)
        fns["mk.BrakingController (built once)"] = lambda: controller.step(logits, last)
    return V, fns


def run(device: torch.device, mode: str, bandwidth: float) -> list[dict]:
    """One row per (op, implementation) at B = 64."""
    if not mk.extension_loaded():
        raise RuntimeError(f"the overhead benchmark times the C++ ops: {mk.extension_error()}")
    repeats = 41 if mode == "full" else 15
    threads = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(1)
    try:
        rows = []
        for op, make in (("sample", _sampling), ("braking_step", _braking)):
            V, fns = make(device)
            timings = harness.time_interleaved(fns, calls=200, repeats=repeats)
            bare = timings.get("bare kernel")
            for impl, t in timings.items():
                rows.append({
                    "family": "overhead", "op": op, "B": B, "V": V, "impl": impl,
                    "median_us": t.median_us, "p20_us": t.p20_us, "p80_us": t.p80_us,
                    "overhead_us": None if bare is None else t.median_us - bare.median_us,
                })
        return rows
    finally:
        torch.set_num_threads(threads)


def markdown(rows: list[dict]) -> str:
    return harness.markdown_table(rows, [
        ("op", lambda r: r["op"]),
        ("B", lambda r: str(r["B"])),
        ("V", lambda r: str(r["V"])),
        ("implementation", lambda r: r["impl"]),
        *harness.timing_columns("µs"),
        ("Python overhead µs", lambda r: "–" if r["overhead_us"] is None else f"{r['overhead_us']:.1f}"),
    ])


def plot(rows: list[dict], path: Path, title: str) -> None:
    """Median time per call, one bar per implementation, one panel per op."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ops = list(dict.fromkeys(r["op"] for r in rows))
    fig, axes = plt.subplots(1, len(ops), figsize=(6 * len(ops), 3.2), squeeze=False)
    for ax, op in zip(axes.flat, ops):
        mine = [r for r in rows if r["op"] == op]
        ax.barh([r["impl"] for r in mine], [r["median_us"] for r in mine],
                xerr=[[r["median_us"] - r["p20_us"] for r in mine], [r["p80_us"] - r["median_us"] for r in mine]])
        ax.set_xlabel("µs per call (median, 20–80 %)")
        ax.set_title(f"{op}, B={B}, V={mine[0]['V']}", fontsize=9)
        ax.invert_yaxis()
    fig.suptitle(title, fontsize=8, wrap=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
