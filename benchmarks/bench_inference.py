"""Inference-time techniques: what batching and per-step schedules cost.

Two measurements, each side by side in one run:

* ``self-consistency``: N = 16 samples of one prompt as one batched generation
  (``mta.generate(prompt, n=16)``: one prefill, one decode loop over 16 rows) against 16
  separate ``mta.generate(prompt)`` calls; EOS off, so both produce 16 × ``new tokens``
  tokens. Reported: time per sample and the speed-up of the batched call.
* ``schedule``: a decode step of ``mta.generate`` at batch B with fixed parameters against
  the same step with a per-step schedule in the fused path (entropy-adaptive temperature,
  which reads this step's logits; linear temperature annealing, which does not); per step
  = the loop's ``decode_s / steps`` (prefill excluded), the variants taking turns. Plus the
  sampler call alone (``PlainSampler.sample`` vs ``ScheduledSampler.sample`` on random
  logits), to show the schedule's own cost.

* quick (CPU default): a tiny random Llama (vocab 49152), B = 16, 16 new tokens.
* full (GPU default): SmolLM2-135M-Instruct (``load_smollm2``; bf16 on GPU), B = 64 for the
  schedule (the target: < 10 % over fixed parameters), 64 new tokens and 7 timed rounds
  (16 and 3 on the CPU).

``python benchmarks/run.py --family inference [--quick|--full]`` runs it alone.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from benchmarks import harness

N_SAMPLES = 16
PARAMS = {"temperature": 0.7, "top_p": 0.95}
PROMPT_TOKENS = 24
BATCHED = "generate(n=N)"
SEPARATE = "N × generate(n=1)"
FIXED = "fixed parameters"
EDT = "schedule: entropy-adaptive T"
ANNEAL = "schedule: annealed T"
SAMPLER_CALLS, SAMPLER_REPEATS = 5, 9  # the sampler-call timing: calls per turn, turns


@dataclass(frozen=True)
class Setup:
    model: str  # "tiny-llama" | "smollm2" | "smollm2-shape" (bench_generate's loaders)
    new_tokens: int
    batch: int  # rows of the schedule measurement
    repeats: int


def setups(mode: str, device: torch.device) -> list[Setup]:
    from benchmarks.bench_generate import _smollm2_installed

    if mode == "quick":
        return [Setup("tiny-llama", 16, 16, 5)]
    model = "smollm2" if _smollm2_installed() else "smollm2-shape"
    return [Setup(model, 64, 64, 7) if device.type == "cuda" else Setup(model, 16, 64, 3)]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _prompts(count: int, vocab: int, seed: int) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    return [row.tolist() for row in torch.randint(2, vocab, (count, PROMPT_TOKENS), generator=g)]


def _self_consistency(model, setup: Setup, device: torch.device) -> list[dict]:
    import mta

    prompt = _prompts(1, model.config.vocab_size, 0)
    common = dict(max_new_tokens=setup.new_tokens, eos_token_id=[], progress=False, **PARAMS)

    def batched():
        mta.generate(model, None, prompt, n=N_SAMPLES, seed=0, **common)
        _sync(device)

    def separate():
        for i in range(N_SAMPLES):
            mta.generate(model, None, prompt, seed=i, **common)
        _sync(device)

    timings = harness.time_interleaved({BATCHED: batched, SEPARATE: separate}, calls=1, repeats=setup.repeats)
    rows = []
    for impl, t in timings.items():
        rows.append({"case": "self-consistency", "B": N_SAMPLES, "impl": impl, "median_us": t.median_us,
                     "p20_us": t.p20_us, "p80_us": t.p80_us, "per": "sample", "per_us": t.median_us / N_SAMPLES,
                     "vs_baseline": timings[SEPARATE].median_us / t.median_us})
    return rows


def _schedules():
    from mta.inference.schedules import Annealing, EntropyAdaptiveTemperature

    return {FIXED: None, EDT: EntropyAdaptiveTemperature(0.5, 0.8), ANNEAL: Annealing(1.0, 0.3, 16)}


def _schedule_steps(model, setup: Setup, device: torch.device) -> list[dict]:
    """Per decode step of ``mta.generate`` at B rows, variants interleaved."""
    import mta

    prompts = _prompts(setup.batch, model.config.vocab_size, 1)
    per_step: dict[str, list[float]] = {name: [] for name in _schedules()}
    for repeat in range(setup.repeats + 1):  # the first round warms up
        for name, schedule in _schedules().items():
            out = mta.generate(model, None, prompts, max_new_tokens=setup.new_tokens, eos_token_id=[], seed=repeat,
                               progress=False, schedule=schedule, **PARAMS)
            if repeat:
                per_step[name].append(out.decode_s / out.steps * 1e6)
    rows = []
    base = statistics.median(per_step[FIXED])
    for name, xs in per_step.items():
        p20, _, _, p80 = statistics.quantiles(xs, n=5, method="inclusive")
        med = statistics.median(xs)
        rows.append({"case": "schedule (decode step)", "B": setup.batch, "impl": name, "median_us": med,
                     "p20_us": p20, "p80_us": p80, "per": "step", "per_us": med, "vs_baseline": base / med,
                     "overhead_pct": 100 * (med / base - 1)})
    return rows


def _schedule_sampler(setup: Setup, vocab: int, device: torch.device) -> list[dict]:
    """The sampler call alone at B rows: fixed parameters vs a schedule (µs per call)."""
    from mta.generation.params import sampling_params
    from mta.generation.sampler import PlainSampler, ScheduledSampler

    B = setup.batch
    params = sampling_params(B, 1, device, temperature=PARAMS["temperature"], top_k=0, top_p=PARAMS["top_p"],
                             min_p=0.0)
    logits = torch.randn(B, vocab, generator=torch.Generator().manual_seed(0)).to(device) * 3
    g = torch.Generator(device).manual_seed(0)
    samplers = {}
    for name, schedule in _schedules().items():
        if schedule is None:
            samplers[name] = PlainSampler(params, B, device)
        else:
            samplers[name] = ScheduledSampler(params, B, device, schedule, max_new_tokens=10**6)

    def call(s):
        def fn():
            s.sample(logits, g)
            _sync(device)
        return fn

    timings = harness.time_interleaved({n: call(s) for n, s in samplers.items()}, calls=SAMPLER_CALLS,
                                       repeats=SAMPLER_REPEATS)
    base = timings[FIXED].median_us
    return [{"case": "schedule (sampler call)", "B": B, "impl": name, "median_us": t.median_us, "p20_us": t.p20_us,
             "p80_us": t.p80_us, "per": "call", "per_us": t.median_us, "vs_baseline": base / t.median_us,
             "overhead_pct": 100 * (t.median_us / base - 1)} for name, t in timings.items()]


def run(device: torch.device, mode: str, bandwidth: float) -> list[dict]:
    """Rows per (setup, case, implementation); ``per_us`` is per sample / step / call."""
    from benchmarks.bench_generate import load

    rows = []
    for setup in setups(mode, device):
        model = load(setup.model, device)
        dtype = str(next(model.parameters()).dtype).replace("torch.", "")
        steps = tqdm([_self_consistency, _schedule_steps], desc=f"inference {setup.model}", unit="case")
        for fn in steps:
            steps.set_postfix_str(fn.__name__.strip("_"))
            rows += [dict(r, model=setup.model, dtype=dtype, new_tokens=setup.new_tokens, family="inference")
                     for r in fn(model, setup, device)]
        rows += [dict(r, model=setup.model, dtype=dtype, new_tokens=0, family="inference")
                 for r in _schedule_sampler(setup, model.config.vocab_size, device)]
        del model
    return rows


def markdown(rows: list[dict]) -> str:
    """One line per (model, case, implementation)."""
    return harness.markdown_table(rows, [
        ("model", lambda r: r["model"]),
        ("case", lambda r: r["case"]),
        ("B", lambda r: str(r["B"])),
        ("new tokens", lambda r: str(r["new_tokens"]) if r["new_tokens"] else "–"),
        ("implementation", lambda r: r["impl"]),
        *harness.timing_columns("ms"),
        ("per", lambda r: f"{r['per_us'] / 1e3:.2f} ms / {r['per']}"),
        ("vs baseline", lambda r: f"{r['vs_baseline']:.2f}×"),
        ("overhead", lambda r: f"{r['overhead_pct']:+.1f} %" if "overhead_pct" in r else "–"),
    ])


def plot(rows: list[dict], path: Path, title: str) -> None:
    """One bar panel per (model, case): time per sample / step / call of each implementation."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels: dict[tuple, list[dict]] = {}
    for r in rows:
        panels.setdefault((r["model"], r["case"]), []).append(r)
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.8), squeeze=False)
    for ax, ((model, case), panel) in zip(axes.flat, panels.items()):
        per = panel[0]["per"]
        unit, scale = ("µs", 1.0) if per == "call" else ("ms", 1e3)
        ax.barh(range(len(panel)), [r["per_us"] / scale for r in panel])
        ax.set_yticks(range(len(panel)), [r["impl"] for r in panel], fontsize=7)
        ax.invert_yaxis()
        ax.set_xlabel(f"{unit} per {per}")
        ax.set_title(f"{model}: {case}, B={panel[0]['B']}", fontsize=8)
        ax.grid(True, axis="x", alpha=0.3)
    fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)

