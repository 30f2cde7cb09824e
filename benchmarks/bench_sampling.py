"""Sampling benchmark: ``mk.sample`` on every backend against the samplers users run today.

For each shape, in the same run: every backend ``mk.available_backends`` lists (its
``reference`` is the torch reference row), vLLM's sort-based sampler, transformers' warper
chain + ``torch.multinomial``, and the one-read memory floor. Run it through the runner::

    python benchmarks/run.py --family sampling [--quick | --full]

Logits are standard normal (seeded). The sort-based baselines cost the same whatever the
values; a fused kernel's cost may depend on how peaked the distribution is.

Where ``mk.sample`` takes the split-row Triton path (small B, see
``mta_kernels.sampling.triton_kernels.prefers_split_row``), one more row times the
one-program-per-row kernel on the same shape, so the table shows what the split buys.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

import mta_kernels as mk
from benchmarks import baselines, harness
from mta.progress import progress_bar

VOCABS = (151936, 128256)  # Qwen, Llama-3
BATCHES = (1, 8, 64, 256)
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
PARAMS = (
    {"temperature": 0.7, "top_k": 50, "top_p": 0.9, "min_p": 0.0},
    {"temperature": 0.7, "top_k": 50, "top_p": 0.9, "min_p": 0.05},
)

ONE_PROGRAM = "mta_kernels (triton, one program per row)"
SORT = "sort-based (vLLM native)"
TRANSFORMERS = "transformers chain + multinomial"
FLOOR = "memory floor"


@dataclass(frozen=True)
class Case:
    """One benchmarked shape and parameter set."""

    V: int
    B: int
    dtype: str
    params: dict

    @property
    def label(self) -> str:
        p = self.params
        text = f"T={p['temperature']} k={p['top_k']} p={p['top_p']}"
        return text + (f" min_p={p['min_p']}" if p["min_p"] else "")


def cases(mode: str) -> list[Case]:
    """``quick``: V=151936, B in {1, 8}, fp32; ``full``: every vocab, batch and dtype."""
    if mode == "quick":
        vocabs, batches, dtypes = VOCABS[:1], BATCHES[:2], ("fp32",)
    else:
        vocabs, batches, dtypes = VOCABS, BATCHES, tuple(DTYPES)
    return [
        Case(V, B, dtype, params)
        for V, dtype, params, B in itertools.product(vocabs, dtypes, PARAMS, batches)
    ]


def implementations(
    case: Case, logits: torch.Tensor, generator: torch.Generator
) -> list[tuple[str, str | None, Callable[[], object]]]:
    """``(name, forced MTA_BACKEND or None, fn)`` for every implementation timed on ``logits``."""
    p = case.params
    impls: list[tuple[str, str | None, Callable[[], object]]] = [
        (
            "torch reference" if backend == "reference" else f"mta_kernels ({backend})",
            backend,
            lambda: mk.sample(logits, **p, generator=generator),
        )
        for backend in mk.available_backends(logits.device)
    ]
    if "triton" in mk.available_backends(logits.device):
        from mta_kernels.sampling.triton_kernels import prefers_split_row, sample_triton

        if prefers_split_row(case.B, case.V, logits.device):

            def one_program() -> object:
                # mk.sample's per-call work (checked rows, one uniform per row), then the
                # Triton sampler told not to split.
                sampler = mk.Sampler(case.B, logits.device, **p)
                uniform = torch.rand(case.B, generator=generator, device=logits.device)
                return sample_triton(logits, *sampler.params, uniform, split=False)

            impls.append((ONE_PROGRAM, "triton", one_program))

    # vLLM keeps per-request parameters as [B] device tensors, built outside the step.
    def row(value: float, dtype: torch.dtype) -> torch.Tensor:
        return torch.full((case.B,), value, dtype=dtype, device=logits.device)

    temperature, top_k, top_p = (
        row(p["temperature"], torch.float32), row(p["top_k"], torch.int32), row(p["top_p"], torch.float32)
    )
    min_p = row(p["min_p"], torch.float32) if p["min_p"] > 0 else None
    impls.append((
        SORT, None,
        lambda: baselines.sort_sample(logits, temperature, top_k, top_p, min_p, generator=generator),
    ))
    processors = baselines.transformers_processors(**p)
    impls.append((
        TRANSFORMERS, None,
        lambda: baselines.transformers_sample(logits, processors, generator=generator),
    ))
    return impls


def run(device: torch.device, mode: str, bandwidth: float) -> list[dict]:
    """Time every implementation on every case; one row per (case, implementation).

    Parameters
    ----------
    device : torch.device
        Where the logits live.
    mode : {"quick", "full"}
        Which shapes (see :func:`cases`).
    bandwidth : float
        Copy bandwidth in bytes/s measured in this run (``harness.copy_bandwidth``).

    Returns
    -------
    list of dict
        Rows with the shape, ``impl``, ``median_us``/``p20_us``/``p80_us``, ``GBps``
        (logits bytes / median time) and the speedups ``vs_sort``, ``vs_transformers``
        (their time / this time) and ``x_floor`` (this time / floor).
    """
    rows = []
    generator = torch.Generator(device=device)
    progress = progress_bar(cases(mode), desc="sampling", unit="shape")
    for case in progress:
        generator.manual_seed(0)
        logits = torch.randn(case.B, case.V, generator=generator, device=device).to(DTYPES[case.dtype])
        nbytes = logits.numel() * logits.element_size()
        timings: dict[str, harness.Timing] = {}
        for name, backend, fn in implementations(case, logits, generator):
            progress.set_postfix_str(f"V={case.V} B={case.B} {case.dtype}: {name}")
            with harness.forced_backend(backend) if backend else contextlib.nullcontext():
                try:
                    fn()  # first call: Triton compilation stays out of the timing
                except RuntimeError as error:
                    # available_backends lists what runs on the device; this op may lack a
                    # kernel for one of them, and then the forced dispatch refuses.
                    if not str(error).startswith("MTA_BACKEND="):
                        raise
                    progress.write(f"skipping {name}: {error}")
                    continue
                timings[name] = harness.time_fn(fn, device)
        floor = harness.floor_us(nbytes, bandwidth)
        timings[FLOOR] = harness.Timing(floor, floor, floor)
        for name, t in timings.items():
            rows.append({
                "family": "sampling", "op": "sample", "V": case.V, "B": case.B,
                "dtype": case.dtype, "logits": "N(0, 1)", "params": case.label, **case.params, "impl": name,
                "median_us": t.median_us, "p20_us": t.p20_us, "p80_us": t.p80_us,
                "GBps": nbytes / (t.median_us * 1e-6) / 1e9,
                "vs_sort": timings[SORT].median_us / t.median_us,
                "vs_transformers": timings[TRANSFORMERS].median_us / t.median_us,
                "x_floor": t.median_us / floor,
            })
    return rows


def markdown(rows: list[dict]) -> str:
    """The rows as a markdown table, one line per (shape, implementation)."""
    return harness.markdown_table(rows, [
        ("V", lambda r: str(r["V"])),
        ("B", lambda r: str(r["B"])),
        ("dtype", lambda r: r["dtype"]),
        ("params", lambda r: r["params"]),
        ("implementation", lambda r: r["impl"]),
        *harness.timing_columns("µs"),
        ("GB/s", lambda r: f"{r['GBps']:.3g}"),
        ("vs sort", lambda r: f"{r['vs_sort']:.2f}×"),
        ("vs transformers", lambda r: f"{r['vs_transformers']:.2f}×"),
        ("× floor", lambda r: f"{r['x_floor']:.1f}"),
    ])


def plot(rows: list[dict], path: Path, title: str) -> None:
    """Median time vs B per implementation, log-log, one panel per (V, dtype, params)."""
    harness.plot_vs_batch(rows, path, title, panel_keys=("V", "dtype", "params"), floor_impl=FLOOR)
