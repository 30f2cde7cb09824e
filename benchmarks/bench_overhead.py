"""Python overhead per decode-step call: the one-shot ops against the objects a decode loop builds once.

At B = 64 with a small vocabulary and no top-k / top-p cut (V = 128, temperature 0.7: the
kernel itself costs little, so the wrapper's share shows), each row times one call of:

* ``sample``: ``mk.sample(logits, T, k, p, min_p, generator=g)`` (checks, parameter
  tensors and backend choice on every call) and ``mk.Sampler(...)(logits, generator=g)``
  (built once: per call only the draw and the kernel);
* ``braking_step``: ``mk.braking_step(logits, last, state, tables, cfg)`` and
  ``mk.BrakingController(...).step(logits, last)``;
* for each op, the bare kernel on prepared tensors (``torch.ops.mta...``), the floor any
  Python wrapper sits on: ``overhead_us`` is a row's time minus it.

Objects the installed version lacks (an older checkout) are skipped, so the same script
measures a "before" tree too. CPU timings (the C++ ops) run on one intra-op thread: with
two, the thread pool's wake-up (milliseconds on a loaded machine) swamps the microseconds
measured here. On a GPU the same calls time the launch path.
"""

from __future__ import annotations

from pathlib import Path

import torch

import mta_kernels as mk
from benchmarks import harness

B, V = 64, 128
SAMPLING = {"temperature": 0.7, "top_k": 0, "top_p": 1.0, "min_p": 0.0}


def _sampling_impls(device: torch.device):
    g = torch.Generator(device=device).manual_seed(0)
    logits = torch.randn(B, V, generator=g, device=device)
    impls = [("mk.sample (one-shot)", lambda: mk.sample(logits, **SAMPLING, generator=g))]
    if hasattr(mk, "Sampler"):
        sampler = mk.Sampler(B, device, **SAMPLING)
        impls.append(("mk.Sampler (built once)", lambda: sampler(logits, generator=g)))
    params = (
        torch.full((B,), SAMPLING["temperature"], device=device),
        torch.full((B,), SAMPLING["top_k"], dtype=torch.int64, device=device),
        torch.full((B,), SAMPLING["top_p"], device=device),
        torch.full((B,), SAMPLING["min_p"], device=device),
    )
    op = torch.ops.mta.sample.default
    bare = ("bare kernel (torch.rand + op)",
            lambda: op(logits, *params, torch.rand(B, generator=g, device=device)))
    return impls, bare


def _braking_impls(device: torch.device):
    from mta_kernels.braking import BrakingConfig, BrakingState, MarkerTables

    tables = MarkerTables.from_token_ids([[5, 6], [7]], [9], 2, [3, 2], vocab_size=V).to(device)
    # Triggers that never fire: the steady-state cost of a thinking row.
    cfg = BrakingConfig(max_thinking_tokens=10**9, marker_ratio=2.0, max_steps=10**9)
    g = torch.Generator(device=device).manual_seed(0)
    logits = torch.randn(B, V, generator=g, device=device)
    last = torch.randint(10, V, (B,), generator=g, device=device)
    state = BrakingState.new(B, device)
    impls = [("mk.braking_step (one-shot)", lambda: mk.braking_step(logits, last, state, tables, cfg))]
    controller_cls = getattr(mk, "BrakingController", None)
    if controller_cls is not None:
        controller = controller_cls(tables, cfg, B, device)
        impls.append(("mk.BrakingController (built once)", lambda: controller.step(logits, last)))
    return impls, None


def run(device: torch.device, mode: str, bandwidth: float) -> list[dict]:
    """One row per (op, implementation) at B = 64, V = 128."""
    if not mk.extension_loaded():
        raise RuntimeError(f"the overhead benchmark times the C++ ops: {mk.extension_error()}")
    budget = 2.0 if mode == "full" else 0.5
    threads = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(1)
    try:
        return _run(device, budget)
    finally:
        torch.set_num_threads(threads)


def _run(device: torch.device, budget: float) -> list[dict]:

    def timed(fn) -> harness.Timing:
        if device.type == "cpu":  # many short calls: a larger run cap than the default
            return harness.time_cpu(fn, budget_s=budget, max_runs=20000)
        return harness.time_fn(fn, device)

    rows = []
    for op, make in (("sample", _sampling_impls), ("braking_step", _braking_impls)):
        impls, bare = make(device)
        bare_t = timed(bare[1]) if bare is not None else None
        rows += [_row(op, name, timed(fn), bare_t) for name, fn in impls]
        if bare is not None:
            rows.append(_row(op, bare[0], bare_t, bare_t))
    return rows


def _row(op: str, impl: str, t: harness.Timing, bare: harness.Timing | None) -> dict:
    return {
        "family": "overhead", "op": op, "B": B, "V": V, "impl": impl,
        "median_us": t.median_us, "p20_us": t.p20_us, "p80_us": t.p80_us,
        "overhead_us": None if bare is None else t.median_us - bare.median_us,
    }


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
    fig, axes = plt.subplots(1, len(ops), figsize=(6 * len(ops), 3.5), squeeze=False)
    for ax, op in zip(axes.flat, ops):
        mine = [r for r in rows if r["op"] == op]
        ax.barh([r["impl"] for r in mine], [r["median_us"] for r in mine],
                xerr=[[r["median_us"] - r["p20_us"] for r in mine], [r["p80_us"] - r["median_us"] for r in mine]])
        ax.set_xlabel("µs per call (median, 20–80 %)")
        ax.set_title(f"{op}, B={B}, V={V}", fontsize=9)
        ax.invert_yaxis()
    fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
