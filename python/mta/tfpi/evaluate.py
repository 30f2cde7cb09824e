"""ThinkFree vs thinking: the same model on the same problems, both ways (``mta tfpi eval``).

Each problem is decoded greedily twice: with a thinking prompt (:func:`thinking_prompt`:
the template's own with ``enable_thinking=True``, an open ``<think>`` appended when the
template does not open one) and with the ThinkFree prompt (:func:`think_free`). The answer
judged (math-verify, bounded: :func:`mta.answers.is_correct`) is the text after the last
``</think>`` when there is one, else the whole completion. Per mode: accuracy, mean and
90th-percentile generated tokens, wall time; a table, a plot and a JSON go to ``--out``.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from mta.data import Problem
from mta.tfpi.transform import EMPTY_THINK, THINK_CLOSE, THINK_OPEN, think_free, thinking_prompt

__all__ = ["ModeResult", "compare_modes", "write_report"]

MODES = ("thinking", "thinkfree")


@dataclass
class ModeResult:
    mode: str
    accuracy: float
    mean_tokens: float
    p90_tokens: float
    mean_thinking_tokens: float  # tokens before the first </think> (all of them when it never closes)
    wall_s: float
    truncated: int
    problems: int
    per_problem: list[dict]


def _p90(values: list[int]) -> float:
    """The 90th percentile (linear interpolation, as numpy's default)."""
    if not values:
        return 0.0
    xs = sorted(values)
    pos = 0.9 * (len(xs) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def _answer_text(text: str) -> str:
    return text.rsplit(THINK_CLOSE, 1)[1] if THINK_CLOSE in text else text


def compare_modes(model, tokenizer, problems: list[Problem], *, max_new_tokens: int = 256, batch_size: int = 8,
                  prompt_template: str = "{question}", empty_think: str = EMPTY_THINK, timeout_s: float = 5.0,
                  progress: bool = True, modes: tuple[str, ...] = MODES) -> list[ModeResult]:
    """Decode every problem in each of ``modes`` (module docstring); one :class:`ModeResult` each."""
    from mta.answers import AnswerCheckTimeout, is_correct
    from mta.generation.engine import generate
    from mta.progress import progress_bar
    from mta.models import add_think_tokens

    if not problems:
        raise ValueError("problems: nothing to evaluate")
    if max_new_tokens < 1 or batch_size < 1:
        raise ValueError(f"max_new_tokens and batch_size must be >= 1, got {max_new_tokens}, {batch_size}")
    if "{question}" not in prompt_template:
        raise ValueError(f"prompt_template must contain {{question}}, got {prompt_template!r}")
    if not modes or any(m not in MODES for m in modes):
        raise ValueError(f"modes must be some of {MODES}, got {modes!r}")
    if len(tokenizer.encode(THINK_OPEN, add_special_tokens=False)) != 1:
        add_think_tokens(model, tokenizer)
    results = []
    for mode in modes:
        prompts = []
        for p in problems:
            messages = [{"role": "user", "content": prompt_template.replace("{question}", p.question)}]
            text = thinking_prompt(messages, tokenizer) if mode == "thinking" else \
                think_free(messages, tokenizer, empty_think=empty_think)
            prompts.append(tokenizer.encode(text, add_special_tokens=False))
        rows, t0 = [], time.perf_counter()
        bar = progress_bar(total=len(problems), desc=f"tfpi eval {mode}", unit="problem", enabled=progress)
        for lo in range(0, len(problems), batch_size):
            out = generate(model, tokenizer, prompts[lo:lo + batch_size], max_new_tokens=max_new_tokens,
                           temperature=0.0, progress=False)
            for p, ids, reason in zip(problems[lo:lo + batch_size], out.token_ids, out.finish_reasons):
                text = tokenizer.decode(ids, skip_special_tokens=False)
                close_id = tokenizer.convert_tokens_to_ids(THINK_CLOSE)
                thinking = ids.index(close_id) if close_id in ids else len(ids)
                try:
                    ok = is_correct(_answer_text(text).replace(tokenizer.eos_token or "\0", ""), p.answer,
                                    timeout_s=timeout_s)
                except AnswerCheckTimeout:
                    ok = False
                rows.append({"id": p.id, "tokens": len(ids), "thinking_tokens": thinking if mode == "thinking" else 0,
                             "correct": bool(ok), "finish": reason,
                             "closed_think": THINK_CLOSE in text, "completion": text})
            bar.update(len(out.token_ids))
        bar.close()
        wall = time.perf_counter() - t0
        tokens = [r["tokens"] for r in rows]
        results.append(ModeResult(mode, sum(r["correct"] for r in rows) / len(rows), sum(tokens) / len(tokens),
                                  _p90(tokens), sum(r["thinking_tokens"] for r in rows) / len(rows), wall,
                                  sum(r["finish"] == "length" for r in rows), len(rows), rows))
    return results


def table(results: list[ModeResult], title: str = "") -> str:
    """A markdown table of the modes side by side."""
    lines = [f"### {title}" if title else "", "",
             "| mode | problems | accuracy | mean tokens | p90 tokens | mean thinking tokens | truncated | wall s |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        lines.append(f"| {r.mode} | {r.problems} | {r.accuracy:.3f} | {r.mean_tokens:.1f} | {r.p90_tokens:.1f} | "
                     f"{r.mean_thinking_tokens:.1f} | {r.truncated} | {r.wall_s:.1f} |")
    return "\n".join(lines).lstrip()


def write_report(results: list[ModeResult], out: str | Path, title: str = "") -> str:
    """``results.json``, ``table.md`` and ``plot.png`` under ``out``; returns the table."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps([asdict(r) for r in results], indent=1))
    text = table(results, title)
    (out / "table.md").write_text(text + "\n")
    fig, axes = plt.subplots(1, 4, figsize=(14, 3.5))
    names = [r.mode for r in results]
    for ax, (label, key) in zip(axes, (("accuracy", "accuracy"), ("mean tokens", "mean_tokens"),
                                       ("p90 tokens", "p90_tokens"), ("wall time (s)", "wall_s"))):
        values = [getattr(r, key) for r in results]
        ax.bar(names, values, color=["tab:orange", "tab:blue"][: len(names)])
        for x, v in enumerate(values):
            ax.annotate(f"{v:.3g}", (x, v), ha="center", va="bottom", fontsize=8)
        ax.set_title(label, fontsize=10)
    fig.suptitle(title or "ThinkFree vs thinking", fontsize=10)
    fig.tight_layout()
    fig.savefig(out / "plot.png", dpi=110)
    plt.close(fig)
    return text
