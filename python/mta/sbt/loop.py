"""The whole Self-Braking loop, end to end: ``mta sbt loop`` (``make sbt-loop``).

1. **traces**: the model thinks on the training problems (sampled, ``--samples`` each):
   a thinking prompt (:func:`mta.tfpi.thinking_prompt`), decoding stops at ``</think>`` or
   the end of turn; the thinking is then closed (``\\n</think>\\n\\n``) and the answer
   decoded greedily after it, giving ``<think>…</think>answer`` traces;
2. **score** them and **build** SBT-E records (:func:`mta.sbt.run_jsonl`);
3. **before**: greedy decoding of the held-out problems with the thinking prompt — thinking
   tokens (before ``</think>``, all of them when it never closes), all tokens, accuracy;
4. **fine-tune** on the SBT-E records (:class:`mta.sbt.sft.SFTTrainer`, masks honoured);
5. **after**: step 3 again with the fine-tuned model; a table (``report.md``), a JSON and
   the run's files go to ``--out``.

SmolLM2 gets ``<think>`` / ``</think>`` as new special tokens first (as the braking demo).
Every number comes from this run; with a 135M model the effect may be small or absent.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

__all__ = ["add_arguments", "run_loop"]


def _traces(model, tokenizer, problems, *, samples: int, max_new_tokens: int, temperature: float, seed: int,
            batch_size: int, progress: bool) -> list[dict]:
    from mta.generation.engine import generate
    from mta.progress import progress_bar
    from mta.tfpi.transform import THINK_CLOSE, thinking_prompt

    close_id = tokenizer.convert_tokens_to_ids(THINK_CLOSE)
    records = []
    bar = progress_bar(total=len(problems), desc="sbt loop: traces", unit="problem", enabled=progress)
    for lo in range(0, len(problems), batch_size):
        chunk = problems[lo:lo + batch_size]
        prompts = [tokenizer.encode(thinking_prompt([{"role": "user", "content": p.question}], tokenizer),
                                    add_special_tokens=False) for p in chunk]
        out = generate(model, tokenizer, prompts, n=samples, max_new_tokens=max_new_tokens, temperature=temperature,
                       seed=seed + lo, eos_token_id=[tokenizer.eos_token_id, close_id], progress=False)
        closed = []
        for i, ids in enumerate(out.token_ids):
            ids = [t for t in ids if t not in (close_id, tokenizer.eos_token_id)]
            thinking = tokenizer.decode(ids, skip_special_tokens=True).strip()
            closed.append((thinking, prompts[i // samples] + tokenizer.encode(
                thinking + "\n" + THINK_CLOSE + "\n\n", add_special_tokens=False)))
        answers = generate(model, tokenizer, [c[1] for c in closed], max_new_tokens=48, temperature=0.0,
                           progress=False)
        for i, ((thinking, _), answer) in enumerate(zip(closed, answers.texts)):
            p = chunk[i // samples]
            records.append({"id": f"{p.id}#{i % samples}", "problem": p.question, "gold": p.answer,
                            "trace": f"<think>\n{thinking}\n</think>\n\n{answer.strip()}"})
        bar.update(len(chunk))
    bar.close()
    return records


def _row(r) -> dict:
    return {"accuracy": r.accuracy, "mean_thinking_tokens": r.mean_thinking_tokens, "mean_tokens": r.mean_tokens,
            "p90_tokens": r.p90_tokens, "closed_think": sum(p["closed_think"] for p in r.per_problem) / r.problems,
            "truncated": r.truncated, "wall_s": r.wall_s}


def run_loop(args: argparse.Namespace) -> dict:
    """Run the loop (module docstring) with the options of :func:`add_arguments`; returns the summary."""
    from mta.data import load_dataset
    from mta.rl.loading import load_model, resolve_device
    from mta.models import add_think_tokens
    from mta.sbt.pipeline import run_jsonl
    from mta.sbt.sft import SFTConfig, SFTTrainer
    from mta.sbt.sft_data import read_records
    from mta.tfpi.evaluate import compare_modes

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    progress = not args.no_progress
    times = {}
    t0 = time.perf_counter()
    problems = load_dataset(args.data, limit=args.train + args.heldout, seed=args.seed)
    if len(problems) < args.train + args.heldout:
        raise ValueError(f"--data {args.data} has {len(problems)} problems, fewer than --train + --heldout")
    train, heldout = problems[: args.train], problems[args.train:]
    model, tokenizer = load_model(args.model, resolve_device(args.device), seed=args.seed)
    add_think_tokens(model, tokenizer)
    times["load_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    traces = _traces(model, tokenizer, train, samples=args.samples, max_new_tokens=args.trace_tokens,
                     temperature=args.temperature, seed=args.seed, batch_size=args.batch_size, progress=progress)
    with open(out / "traces.jsonl", "w", encoding="utf-8") as f:
        for r in traces:
            f.write(json.dumps(r) + "\n")
    times["traces_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    scored = run_jsonl(out / "traces.jsonl", None, "score", tokenizer, progress=progress)
    built = run_jsonl(out / "traces.jsonl", out / "sbt-e.jsonl", "sbt-e", tokenizer, overwrite=True,
                      progress=progress)
    print(scored.table("score")), print(built.table("build --method sbt-e"))
    times["score_build_s"] = time.perf_counter() - t0

    def evaluate(tag):
        t = time.perf_counter()
        res = compare_modes(model, tokenizer, heldout, max_new_tokens=args.eval_tokens, batch_size=args.batch_size,
                            progress=progress, modes=("thinking",))[0]
        (out / f"eval_{tag}.json").write_text(json.dumps(res.per_problem, indent=1))
        times[f"eval_{tag}_s"] = time.perf_counter() - t
        return _row(res)

    before = evaluate("before")
    summary = {"traces": len(traces), "sbt_e_records": built.kept, "skipped": dict(built.skipped),
               "rules": dict(built.rules), "before": before, "after": None, "times": times, "args": vars(args)}
    if built.kept == 0:
        print("no SBT-E record was built (every trace skipped, see sbt-e.skipped.jsonl): nothing to fine-tune on")
    else:
        t0 = time.perf_counter()
        cfg = SFTConfig(model=args.model, epochs=args.epochs, batch_size=args.sft_batch_size,
                        micro_batch_size=args.sft_micro_batch_size, lr=args.lr, seed=args.seed,
                        run_dir=str(out / "sft"), resume=False, progress=progress, max_length=args.max_length)
        sft_rows = SFTTrainer(cfg, model=model, tokenizer=tokenizer, records=read_records(out / "sbt-e.jsonl")).train()
        times["sft_s"] = time.perf_counter() - t0
        summary["sft_loss_first"], summary["sft_loss_last"] = sft_rows[0]["loss"], sft_rows[-1]["loss"]
        summary["sft_steps"] = len(sft_rows)
        summary["after"] = evaluate("after")
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    lines = [f"SBT loop: {args.model} on {args.data}: {len(train)} training problems x {args.samples} traces, "
             f"{len(heldout)} held-out problems (greedy, thinking prompt, {args.eval_tokens} new tokens at most)",
             f"SBT-E records: {built.kept} of {len(traces)} traces (skipped: {dict(built.skipped)}; rules: "
             f"{dict(built.rules)})", "",
             "| model | accuracy | mean thinking tokens | mean tokens | p90 tokens | closed </think> | truncated |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for tag in ("before", "after"):
        r = summary[tag]
        if r is not None:
            lines.append(f"| {tag} | {r['accuracy']:.3f} | {r['mean_thinking_tokens']:.1f} | {r['mean_tokens']:.1f} | "
                         f"{r['p90_tokens']:.1f} | {r['closed_think']:.2f} | {r['truncated']} |")
    if "sft_loss_first" in summary:
        lines.append(f"\nSFT: {summary['sft_steps']} steps, loss {summary['sft_loss_first']:.3f} -> "
                     f"{summary['sft_loss_last']:.3f}")
    lines.append("times (s): " + ", ".join(f"{k[:-2]} {v:.0f}" for k, v in times.items()))
    report = "\n".join(lines)
    (out / "report.md").write_text(report + "\n")
    print(report)
    return summary


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The loop's options (``mta sbt loop``); the defaults are the few-minute CPU run."""
    p.add_argument("--model", default="smollm2", help="'smollm2' or a local model directory")
    p.add_argument("--data", default="arithmetic", help="gsm8k-train, arithmetic, ... or a .jsonl file")
    p.add_argument("--train", type=int, default=24, help="training problems (the first N)")
    p.add_argument("--heldout", type=int, default=24, help="held-out problems (the next N)")
    p.add_argument("--samples", type=int, default=2, help="traces per training problem")
    p.add_argument("--temperature", type=float, default=0.7, help="trace sampling temperature")
    p.add_argument("--trace-tokens", type=int, default=96, help="thinking tokens per trace at most")
    p.add_argument("--eval-tokens", type=int, default=96, help="new tokens per held-out answer at most")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--lr", type=float, default=2e-5)
    p.add_argument("--sft-batch-size", type=int, default=8)
    p.add_argument("--sft-micro-batch-size", type=int, default=4)
    p.add_argument("--max-length", type=int, default=1024)
    p.add_argument("--batch-size", type=int, default=12, help="prompts per generate call")
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/sbt-loop")
    p.add_argument("--no-progress", action="store_true")
