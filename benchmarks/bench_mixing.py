"""Mixing benchmark: ``mk.mix_and_sample`` on every backend against the torch path users write.

One decode step of guided decoding: K models' next-token logits mixed, filtered and
sampled. For each shape, in the same run: every backend of ``mk.available_backends`` that
the mixing op implements (its ``reference`` is the ``torch reference`` row), the plain torch
path (:func:`torch_mix_sort_sample`: log-softmax per model or raw logits, weighted sum,
plausibility mask, then vLLM's sort-based sampler), and the memory floor: the K logit
tensors read once at the copy bandwidth measured in this run. Run it through the runner::

    python benchmarks/run.py --family mixing [--quick | --full]

Recipes (temperature 1, min-p off; each model's logits standard normal, seeded):

* ``proxy-tuning``: raw logits (``normalize=False``), ``top_k=50, top_p=0.9``.
  K=3 weights ``[1, 0.5, -0.5]``: base + α·(expert − anti-expert) with α = 0.5
  (Liu et al. 2024 use α = 1; 0.5 keeps the weights of both recipes at the same scale).
  K=2 has no anti-expert: weights ``[1.5, -0.5]``, classifier-free guidance on raw
  logits (uncond + γ·(cond − uncond) with γ = 1.5).
* ``contrastive``: log-probabilities (``normalize=True``), adaptive plausibility
  ``α = 0.1`` on model 0 (Li et al. 2023), ``top_p=0.9``. K=2 weights ``[1, -0.5]``:
  expert − β·amateur with β = 0.5 (O'Brien & Lewis 2023 weigh the expert 1 + β; the cost is
  the same). K=3 weights ``[1, -0.5, 0]``: a third model whose weight is 0 (a guide switched
  off); every implementation still reads its logits (the fused op reads every model it is
  given, the torch path computes ``0 · log_softmax``), and the floor counts it.

On N(0, 1) logits the plausibility mask keeps model 0's tokens above ``max − log 10``: a few
thousand of 151 936. Costs depend on that: the torch path's full-vocabulary sort runs about
5x faster on rows that are mostly ``-inf`` (measured on the CPU), and the fused op's sampler
may depend on how many tokens survive the cuts, so compare implementations within a recipe.
"""

from __future__ import annotations

import contextlib
import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

import mta_kernels as mk
from benchmarks import baselines, harness
from mta.progress import progress_bar

VOCABS = (151936, 128256)  # Qwen, Llama-3
BATCHES = (1, 8, 64, 256)
MODELS = (3, 2)  # K; quick mode runs K = 3 only
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
# The backends the mixing op has kernels for (``mta_kernels.mixing._IMPLEMENTED`` + the
# reference); ``available_backends`` may list others (``cuda``) that it would refuse.
MIXING_BACKENDS = ("triton", "cpp", "reference")

TORCH_PATH = "torch path (log_softmax + sum + sort-based)"
FLOOR = "memory floor"


@dataclass(frozen=True)
class Recipe:
    """A guided-decoding recipe: weights per K and the ``mix_and_sample`` keywords."""

    name: str
    weights: dict[int, tuple[float, ...]]
    normalize: bool
    plausibility: float = 0.0
    top_k: int = 0
    top_p: float = 1.0
    min_p: float = 0.0

    @property
    def kwargs(self) -> dict:
        """Keywords of ``mk.mix_and_sample`` besides the logits, weights and generator."""
        return {
            "normalize": self.normalize, "plausibility": self.plausibility,
            "top_k": self.top_k, "top_p": self.top_p, "min_p": self.min_p,
        }


RECIPES = (
    Recipe("proxy-tuning", {3: (1.0, 0.5, -0.5), 2: (1.5, -0.5)}, normalize=False, top_k=50, top_p=0.9),
    Recipe("contrastive", {3: (1.0, -0.5, 0.0), 2: (1.0, -0.5)}, normalize=True, plausibility=0.1, top_p=0.9),
)


@dataclass(frozen=True)
class Case:
    """One benchmarked shape and recipe."""

    K: int
    V: int
    B: int
    dtype: str
    recipe: Recipe

    @property
    def weights(self) -> tuple[float, ...]:
        return self.recipe.weights[self.K]

    @property
    def label(self) -> str:
        r = self.recipe
        text = f"{r.name} w={list(self.weights)}" + (" log_softmax" if r.normalize else " raw")
        if r.plausibility:
            text += f" α={r.plausibility}"
        if r.top_k:
            text += f" k={r.top_k}"
        if r.top_p < 1:
            text += f" p={r.top_p}"
        return text + (f" min_p={r.min_p}" if r.min_p else "")


def cases(mode: str) -> list[Case]:
    """``quick``: K=3, V=151936, B in {1, 8}, fp32; ``full``: K in {3, 2}, every vocab, batch
    and dtype; both recipes in each mode."""
    if mode == "quick":
        models, vocabs, batches, dtypes = MODELS[:1], VOCABS[:1], BATCHES[:2], ("fp32",)
    else:
        models, vocabs, batches, dtypes = MODELS, VOCABS, BATCHES, tuple(DTYPES)
    return [
        Case(K, V, B, dtype, recipe)
        for K, V, dtype, recipe, B in itertools.product(models, vocabs, dtypes, RECIPES, batches)
    ]


def torch_mix_sort_sample(
    logits: list[torch.Tensor],
    weights: tuple[float, ...],
    recipe: Recipe,
    sampling: tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None, torch.Tensor | None],
    *,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The mixture step as plain torch code writes it, then vLLM's sort-based sampler.

    fp32 copy of each model's logits, ``log_softmax`` when the recipe normalises, the
    weighted sum (every model, weight 0 included), the plausibility mask from model 0's
    log-probabilities (``log p_0 < max log p_0 + log α``), then
    :func:`benchmarks.baselines.sort_sample` at temperature 1 with the recipe's cuts.
    ``sampling`` is ``(temperature, top_k, top_p, min_p)`` as ``[B]`` tensors built outside
    the step (None = cut off), as vLLM keeps them.
    """
    scores = [x.float() for x in logits]
    if recipe.normalize:
        scores = [s.log_softmax(dim=-1) for s in scores]
    mixed = weights[0] * scores[0]
    for w, s in zip(weights[1:], scores[1:]):
        mixed.add_(s, alpha=w)
    if recipe.plausibility > 0:
        logp0 = scores[0] if recipe.normalize else scores[0].log_softmax(dim=-1)
        threshold = logp0.amax(dim=-1, keepdim=True) + math.log(recipe.plausibility)
        mixed.masked_fill_(logp0 < threshold, -math.inf)
    return baselines.sort_sample(mixed, *sampling, generator=generator)


def implementations(
    case: Case, logits: list[torch.Tensor], generator: torch.Generator
) -> list[tuple[str, str | None, Callable[[], object]]]:
    """``(name, forced MTA_BACKEND or None, fn)`` for every implementation timed on ``logits``."""
    device = logits[0].device
    weights, kwargs = list(case.weights), case.recipe.kwargs
    impls: list[tuple[str, str | None, Callable[[], object]]] = [
        (
            "torch reference" if backend == "reference" else f"mta_kernels ({backend})",
            backend,
            lambda: mk.mix_and_sample(logits, weights, **kwargs, generator=generator),
        )
        for backend in mk.available_backends(device)
        if backend in MIXING_BACKENDS
    ]

    def row(value: float, dtype: torch.dtype) -> torch.Tensor:
        return torch.full((case.B,), value, dtype=dtype, device=device)

    r = case.recipe
    sampling = (
        row(1.0, torch.float32),
        row(r.top_k, torch.int32) if r.top_k else None,
        row(r.top_p, torch.float32) if r.top_p < 1 else None,
        row(r.min_p, torch.float32) if r.min_p > 0 else None,
    )
    impls.append((
        TORCH_PATH, None,
        lambda: torch_mix_sort_sample(logits, case.weights, r, sampling, generator=generator),
    ))
    return impls


def make_logits(case: Case, device: torch.device, generator: torch.Generator) -> list[torch.Tensor]:
    """K separate ``[B, V]`` N(0, 1) logit tensors (as K models return them), seeded."""
    return [
        torch.randn(case.B, case.V, generator=generator, device=device).to(DTYPES[case.dtype])
        for _ in range(case.K)
    ]


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
        Rows with the shape, ``recipe``, ``impl``, ``median_us``/``p20_us``/``p80_us``,
        ``GBps`` (bytes of the K logit tensors / median time), ``vs_torch`` (the torch
        path's time / this time) and ``x_floor`` (this time / floor).
    """
    rows = []
    generator = torch.Generator(device=device)
    progress = progress_bar(cases(mode), desc="mixing", unit="shape")
    for case in progress:
        generator.manual_seed(0)
        logits = make_logits(case, device, generator)
        nbytes = sum(x.numel() * x.element_size() for x in logits)
        timings: dict[str, harness.Timing] = {}
        for name, backend, fn in implementations(case, logits, generator):
            progress.set_postfix_str(f"K={case.K} V={case.V} B={case.B} {case.dtype} {case.recipe.name}: {name}")
            with harness.forced_backend(backend) if backend else contextlib.nullcontext():
                try:
                    fn()  # first call: Triton compilation stays out of the timing
                except RuntimeError as error:
                    # A backend listed as runnable that this op still refuses when forced.
                    if not str(error).startswith("MTA_BACKEND="):
                        raise
                    progress.write(f"skipping {name}: {error}")
                    continue
                timings[name] = harness.time_fn(fn, device)
        floor = harness.floor_us(nbytes, bandwidth)
        timings[FLOOR] = harness.Timing(floor, floor, floor)
        for name, t in timings.items():
            rows.append({
                "family": "mixing", "op": "mix_and_sample", "K": case.K, "V": case.V, "B": case.B,
                "dtype": case.dtype, "logits": "N(0, 1)", "recipe": case.recipe.name, "params": case.label,
                "weights": list(case.weights), **case.recipe.kwargs, "impl": name,
                "median_us": t.median_us, "p20_us": t.p20_us, "p80_us": t.p80_us,
                "GBps": nbytes / (t.median_us * 1e-6) / 1e9,
                "vs_torch": timings[TORCH_PATH].median_us / t.median_us,
                "x_floor": t.median_us / floor,
            })
    return rows


def markdown(rows: list[dict]) -> str:
    """The rows as a markdown table, one line per (shape, recipe, implementation)."""
    return harness.markdown_table(rows, [
        ("K", lambda r: str(r["K"])),
        ("V", lambda r: str(r["V"])),
        ("B", lambda r: str(r["B"])),
        ("dtype", lambda r: r["dtype"]),
        ("recipe", lambda r: r["params"]),
        ("implementation", lambda r: r["impl"]),
        *harness.timing_columns("µs"),
        ("GB/s", lambda r: f"{r['GBps']:.3g}"),
        ("vs torch path", lambda r: f"{r['vs_torch']:.2f}×"),
        ("× floor", lambda r: f"{r['x_floor']:.1f}"),
    ])


def plot(rows: list[dict], path: Path, title: str) -> None:
    """Median time vs B per implementation, log-log, one panel per (K, V, dtype, recipe)."""
    harness.plot_vs_batch(rows, path, title, panel_keys=("K", "V", "dtype", "recipe"), floor_impl=FLOOR)
