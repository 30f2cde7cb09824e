"""Inference-time techniques: what batching and per-step schedules cost.

Two measurements, each side by side in one run:

* ``self-consistency``: N = 16 samples of one prompt as one batched generation
  (``mta.generate(prompt, n=16)``: one prefill, one decode loop over 16 rows) against 16
  separate ``mta.generate(prompt)`` calls; EOS off, so both produce 16 × ``new tokens``
  tokens. Reported: time per sample and the speed-up of the batched call.
* ``schedule``: a decode step of ``mta.generate`` at batch B with fixed parameters against
  the same step with a per-step schedule in the fused path: entropy-adaptive temperature
  (EDT, reads this step's logits) and a schedule that returns the call's own values every
  step (the machinery alone: same kernel work as fixed). Per step = the loop's ``decode_s /
  steps`` (prefill excluded), the variants taking turns. The same three as bare sampler
  calls on random logits, and EDT's computation alone (entropy + formula), many calls
  interleaved: on a loaded machine the decode-step rows are noisy at the percent level, so
  the ``estimate`` row adds the measured extra cost per call (machinery + EDT's computation)
  to the fixed decode step. EDT also changes the kernel's work (a colder distribution has a
  smaller nucleus), which the decode-step rows include and the estimate does not.

* quick (CPU default): a tiny random Llama (vocab 49152), B = 16, 16 new tokens.
* full (GPU default): SmolLM2-135M-Instruct (``load_smollm2``; bf16 on GPU), B = 64 for the
  schedule (the target: < 10 % over fixed parameters); 64 new tokens and 7 timed rounds on
  a GPU; on the CPU 16 new tokens and 3 rounds for self-consistency, 8 tokens and 6 rounds
  for the decode steps.

``python benchmarks/run.py --family inference [--quick|--full]`` runs it alone.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path

import torch
from mta.progress import progress_bar

from benchmarks import harness

N_SAMPLES = 16
PARAMS = {"temperature": 0.7, "top_p": 0.95}
PROMPT_TOKENS = 24
BATCHED = "generate(n=N)"
SEPARATE = "N × generate(n=1)"
FIXED = "fixed parameters"
EDT = "schedule: entropy-adaptive T"
SAME = "schedule: own values (machinery)"
EDT_ONLY = "EDT computation alone"
ESTIMATE = "estimate: fixed step + EDT extra per call"
SAMPLER_CALLS, SAMPLER_REPEATS = 5, 15  # the sampler-call timing: calls per turn, turns


@dataclass(frozen=True)
class Setup:
    model: str  # "tiny-llama" | "smollm2" | "smollm2-shape" (bench_generate's loaders)
    new_tokens: int  # self-consistency
    batch: int  # rows of the schedule measurement
    repeats: int  # self-consistency rounds
    step_tokens: int  # schedule: tokens per generate call
    step_rounds: int  # schedule: rounds (each runs every variant once)


def setups(mode: str, device: torch.device) -> list[Setup]:
    from benchmarks.bench_generate import _smollm2_installed

    if mode == "quick":
        return [Setup("tiny-llama", 16, 16, 5, 16, 5)]
    model = "smollm2" if _smollm2_installed() else "smollm2-shape"
    return [Setup(model, 64, 64, 7, 64, 7) if device.type == "cuda" else Setup(model, 16, 64, 3, 8, 6)]


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


def _own_values(ctx):
    """A schedule returning the call's own parameters: the scheduled path's cost alone."""
    return {"temperature": ctx.base.temperature, "top_p": ctx.base.top_p}


def _schedules():
    from mta.inference.schedules import EntropyAdaptiveTemperature

    return {FIXED: None, EDT: EntropyAdaptiveTemperature(0.5, 0.8), SAME: _own_values}


def _schedule_steps(model, setup: Setup, device: torch.device) -> list[dict]:
    """Per decode step of ``mta.generate`` at B rows, variants interleaved."""
    import mta

    prompts = _prompts(setup.batch, model.config.vocab_size, 1)
    per_step: dict[str, list[float]] = {name: [] for name in _schedules()}
    for repeat in range(setup.step_rounds + 1):  # the first round warms up
        for name, schedule in _schedules().items():
            out = mta.generate(model, None, prompts, max_new_tokens=setup.step_tokens, eos_token_id=[], seed=repeat,
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
                     "overhead_pct": 100 * (med / base - 1), "new_tokens": setup.step_tokens})
    return rows


def _schedule_sampler(setup: Setup, vocab: int, device: torch.device) -> list[dict]:
    """The sampler call alone at B rows: fixed parameters vs a schedule (µs per call)."""
    from mta.generation.params import sampling_params
    from mta.generation.sampler import PlainSampler, ScheduledSampler, StepContext

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
            # every call records its parameters, as in a decode loop
            samplers[name] = ScheduledSampler(params, B, device, schedule,
                                              max_new_tokens=SAMPLER_CALLS * (SAMPLER_REPEATS + 1))

    def call(s):
        def fn():
            s.sample(logits, g)
            _sync(device)
        return fn

    edt = samplers[EDT]
    ctx = StepContext(0, logits, edt.last_tokens, edt.base, edt.rows, {})
    fns = {name: call(s) for name, s in samplers.items()}
    fns[EDT_ONLY] = lambda: (edt.schedule(ctx), _sync(device))
    timings = harness.time_interleaved(fns, calls=SAMPLER_CALLS, repeats=SAMPLER_REPEATS)
    base = timings[FIXED].median_us
    return [{"case": "schedule (sampler call)", "B": B, "impl": name, "median_us": t.median_us, "p20_us": t.p20_us,
             "p80_us": t.p80_us, "per": "call", "per_us": t.median_us, "vs_baseline": base / t.median_us,
             "overhead_pct": 100 * (t.median_us / base - 1)} for name, t in timings.items()]


def _estimate(step_rows: list[dict], call_rows: list[dict]) -> dict:
    """Fixed decode step + (scheduled machinery - plain call) + EDT's computation."""
    step = next(r for r in step_rows if r["impl"] == FIXED)
    calls = {r["impl"]: r["median_us"] for r in call_rows}
    extra = max(calls[SAME] - calls[FIXED], 0.0) + calls[EDT_ONLY]
    est = step["median_us"] + extra
    return {"case": "schedule (decode step)", "B": step["B"], "impl": ESTIMATE, "median_us": est, "p20_us": est,
            "p80_us": est, "per": "step", "per_us": est, "vs_baseline": step["median_us"] / est,
            "overhead_pct": 100 * extra / step["median_us"], "new_tokens": step["new_tokens"]}


def run(device: torch.device, mode: str, bandwidth: float) -> list[dict]:
    """Rows per (setup, case, implementation); ``per_us`` is per sample / step / call."""
    from benchmarks.bench_generate import load

    rows = []
    for setup in setups(mode, device):
        model = load(setup.model, device)
        dtype = str(next(model.parameters()).dtype).replace("torch.", "")
        tag = dict(model=setup.model, dtype=dtype, family="inference")
        bar = progress_bar(total=3, desc=f"inference {setup.model}", unit="case")
        sc = [dict(r, new_tokens=setup.new_tokens, **tag) for r in _self_consistency(model, setup, device)]
        bar.update(1)
        steps = [dict(r, **tag) for r in _schedule_steps(model, setup, device)]
        bar.update(1)
        calls = [dict(r, new_tokens=0, **tag) for r in _schedule_sampler(setup, model.config.vocab_size, device)]
        bar.update(1)
        bar.close()
        rows += sc + steps + [dict(_estimate(steps, calls), **tag)] + calls
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

