"""RL benchmark: ``policy_loss`` forward + backward, fused kernel vs eager torch reference.

One timed call = the loss, its stats and ``loss.backward()`` into ``logprobs.grad``: what a
trainer step pays for the policy-gradient term. Rows, per shape:

* ``mta_kernels (triton)``: the fused kernel (one pass writes loss, stats and the gradient;
  backward multiplies by ``grad_output``) — on CUDA only;
* ``torch reference``: eager autograd through ``policy_loss_reference`` (the formula of
  verl's ``compute_policy_loss_vanilla`` + ``agg_loss``);
* ``memory floor``: the bytes a fused implementation must move (read logprobs, old
  logprobs, advantages and the bool mask; write the gradient) at the measured copy
  bandwidth.

DAPO settings: clip 0.2 / 0.28, token-mean, [B] advantages, fp32 log-probs, a ragged mask.
Run it through the runner (once ``rl`` is registered in ``benchmarks/run.py``)::

    python benchmarks/run.py --family rl [--quick | --full]
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from benchmarks import harness
from mta.progress import progress_bar
from mta_kernels import rl

SHAPES = ((8, 4096), (64, 4096), (256, 4096))  # (B, T)
QUICK_SHAPES = ((8, 1024), (64, 1024))
DUAL = (None, 3.0)

FUSED = "mta_kernels (triton)"
REFERENCE = "torch reference"
FLOOR = "memory floor"


@dataclass(frozen=True)
class Case:
    """One benchmarked shape and option set."""

    B: int
    T: int
    dual_clip: float | None

    @property
    def label(self) -> str:
        return "token-mean" + (f", dual clip {self.dual_clip}" if self.dual_clip else "")


def cases(mode: str) -> list[Case]:
    """``quick``: B·T in {8·1024, 64·1024}, no dual clip; ``full``: B·T in {8, 64, 256}·4096,
    with and without dual clip."""
    if mode == "quick":
        return [Case(B, T, None) for B, T in QUICK_SHAPES]
    return [Case(B, T, dual) for dual, (B, T) in itertools.product(DUAL, SHAPES)]


def make_inputs(case: Case, device: torch.device) -> tuple[torch.Tensor, ...]:
    """Seeded inputs: log-ratios N(0, 0.3), ragged lengths (at least T/4 tokens a row)."""
    g = torch.Generator().manual_seed(0)
    old = -3 * torch.rand(case.B, case.T, generator=g)
    lp = old + 0.3 * torch.randn(case.B, case.T, generator=g)
    adv = torch.randn(case.B, generator=g)
    lengths = torch.randint(case.T // 4, case.T + 1, (case.B,), generator=g)
    mask = torch.arange(case.T)[None, :] < lengths[:, None]
    return lp.to(device).requires_grad_(), old.to(device), adv.to(device), mask.to(device)


def step(fn: Callable, lp: torch.Tensor, *args) -> Callable[[], object]:
    """One forward + backward; the gradient buffer is reset so it is written, not accumulated."""

    def run() -> None:
        lp.grad = None
        loss, _ = fn(lp, *args)
        loss.backward()

    return run


def run(device: torch.device, mode: str, bandwidth: float) -> list[dict]:
    """Time every implementation on every case; one row per (case, implementation).

    Parameters
    ----------
    device : torch.device
        Where the tensors live; the fused kernel is timed on CUDA only.
    mode : {"quick", "full"}
        Which shapes (see :func:`cases`).
    bandwidth : float
        Copy bandwidth in bytes/s measured in this run (``harness.copy_bandwidth``).

    Returns
    -------
    list of dict
        Rows with ``B``, ``T``, ``tokens``, ``impl``, ``median_us``/``p20_us``/``p80_us``,
        ``GBps`` (floor bytes / median time), ``vs_reference`` (reference time / this
        time) and ``x_floor`` (this time / floor).
    """
    rows = []
    for case in progress_bar(cases(mode), desc="rl", unit="shape"):
        lp, old, adv, mask = make_inputs(case, device)
        opts = (0.2, 0.28, case.dual_clip, "token-mean", 20.0)
        impls = {REFERENCE: step(rl.policy_loss_reference, lp, old, adv, mask, *opts)}
        if device.type == "cuda":
            from mta_kernels.rl.triton_kernels import policy_loss_triton

            impls[FUSED] = step(policy_loss_triton, lp, old, adv, mask, *opts)
        timings: dict[str, harness.Timing] = {}
        for name, fn in impls.items():
            fn()  # first call: Triton compilation stays out of the timing
            timings[name] = harness.time_fn(fn, device)
        n = case.B * case.T
        nbytes = n * (4 + 4 + 1 + 4) + case.B * 4  # lp, old, mask, grad; advantages
        floor = harness.floor_us(nbytes, bandwidth)
        timings[FLOOR] = harness.Timing(floor, floor, floor)
        for name, t in timings.items():
            rows.append({
                "family": "rl", "op": "policy_loss fwd+bwd", "B": case.B, "T": case.T, "tokens": n,
                "dtype": "fp32", "params": case.label, "impl": name,
                "median_us": t.median_us, "p20_us": t.p20_us, "p80_us": t.p80_us,
                "GBps": nbytes / (t.median_us * 1e-6) / 1e9,
                "vs_reference": timings[REFERENCE].median_us / t.median_us,
                "x_floor": t.median_us / floor,
            })
    return rows


def markdown(rows: list[dict]) -> str:
    """The rows as a markdown table, one line per (shape, implementation)."""
    return harness.markdown_table(rows, [
        ("B", lambda r: str(r["B"])),
        ("T", lambda r: str(r["T"])),
        ("params", lambda r: r["params"]),
        ("implementation", lambda r: r["impl"]),
        *harness.timing_columns("µs"),
        ("GB/s", lambda r: f"{r['GBps']:.3g}"),
        ("vs reference", lambda r: f"{r['vs_reference']:.2f}×"),
        ("× floor", lambda r: f"{r['x_floor']:.1f}"),
    ])


def plot(rows: list[dict], path: Path, title: str) -> None:
    """Median time vs B per implementation, log-log, one panel per (T, params)."""
    harness.plot_vs_batch(rows, path, title, panel_keys=("T", "params"), floor_impl=FLOOR)
