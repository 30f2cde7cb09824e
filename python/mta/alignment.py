"""Model-Task Alignment (arXiv 2508.21188): measure it with pass@k, and run the paper's experiments.

The paper's claim: several surprising RL results — spurious rewards (random, incorrect),
one-shot RL, test-time self-reward (majority vote), training on negative samples only —
hold only when the model is already *aligned* with the task, and pass@k measures that
alignment: a model that solves most problems within k samples has the skill latent, and
those shortcuts can sharpen it; one that does not, gains from them little or nothing, while
standard RL with ground-truth rewards stays robust in both regimes.

* :func:`pass_at_k_curve` — pass@k for k = 1..n (the unbiased estimator,
  :func:`mta_kernels.pass_at_k`) of a model on a data set: n samples per problem from
  :func:`mta.generate`, judged by :mod:`mta.rewards`; a table (:meth:`PassAtK.table`),
  a plot (:func:`plot_pass_at_k`) and the verdict (:func:`alignment_verdict`).
* :data:`EXPERIMENTS` — each experiment of the paper as :class:`mta.rl.RLConfig` settings
  (``mta rl train CONFIG --experiment nsr``): every reward variant, one-shot RL, PSR / NSR /
  weighted objectives.

CLI: ``mta align passk --model smollm2 --data gsm8k --n 16``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

import mta_kernels as mk
from mta.answers import DEFAULT_TIMEOUT_S
from mta.data import Problem
from mta.rewards import Reward

__all__ = ["EXPERIMENTS", "DEFAULT_THRESHOLD", "PassAtK", "alignment_verdict", "pass_at_k_curve", "plot_pass_at_k"]

#: pass@n at or above this reads as strong alignment. Ours, not the paper's: it compares
#: models by their curves (strong: Qwen2.5-7B on math; weak: Llama-3.1-8B-Instruct on logic)
#: and gives no cut-off.
DEFAULT_THRESHOLD = 0.5

#: The paper's experiments as trainer settings (on top of a run's own config).
EXPERIMENTS: dict[str, dict] = {
    "ground_truth": {"reward": "ground_truth"},
    "random": {"reward": "random_format"},  # the paper's random reward is gated by format
    "random_ungated": {"reward": "random"},
    "incorrect": {"reward": "incorrect"},
    "format": {"reward": "format"},
    "entropy": {"reward": "entropy"},
    "majority": {"reward": "majority"},
    "one_shot": {"one_shot": 0},
    "psr": {"objective": "psr"},
    "nsr": {"objective": "nsr"},
    "weighted": {"objective": "weighted", "psr_weight": 0.1},
}


@dataclass
class PassAtK:
    """pass@k of one model on one data set."""

    n: int
    curve: list[float]  # curve[k - 1] = mean over problems of pass@k, k = 1..n
    correct: list[int]  # correct samples per problem
    problem_ids: list[str]
    unscorable: int  # samples whose answer check timed out (counted as wrong)
    mean_response_tokens: float

    def at(self, k: int) -> float:
        """pass@k."""
        if not 1 <= k <= self.n:
            raise ValueError(f"k must be in [1, {self.n}], got {k}")
        return self.curve[k - 1]

    def table(self) -> str:
        """Markdown: pass@k at k = 1, 2, 4, ..., n."""
        ks = sorted({k for k in (2 ** i for i in range(self.n.bit_length())) if k <= self.n} | {self.n})
        lines = ["| k | pass@k |", "|---|---|"] + [f"| {k} | {self.at(k):.3f} |" for k in ks]
        return "\n".join(lines)

    def to_json(self) -> dict:
        return asdict(self)


def pass_at_k_curve(model, tokenizer, problems: list[Problem], *, n: int = 16, max_new_tokens: int = 256,
                    temperature: float = 1.0, top_p: float = 1.0, prompt_template: str = "{question}",
                    chat_template: bool = True, answer_format: str = "any", batch_prompts: int = 8, seed: int = 0,
                    compact_every: int = 8, answer_timeout_s: float = DEFAULT_TIMEOUT_S,
                    progress: bool = True) -> PassAtK:
    """Sample ``n`` completions per problem and estimate pass@k for every k in 1..n.

    Parameters
    ----------
    model, tokenizer
        A transformers causal LM and its tokenizer.
    problems : list of mta.data.Problem
        With gold answers.
    n : int
        Samples per problem (>= 1); the curve runs to k = n.
    max_new_tokens, temperature, top_p
        Sampling (temperature > 0: pass@k of a greedy model is pass@1).
    prompt_template, chat_template
        The user message (``{question}`` replaced) and whether to wrap it in the chat template.
    answer_format : str
        :data:`mta.rewards.ANSWER_FORMATS` (only the correctness is used here).
    batch_prompts : int
        Problems per :func:`mta.generate` call (each prefilled once, sampled ``n`` times).
    seed : int
        Seeds the sampling.
    compact_every : int
        Drop finished rows from the batch every this many steps.
    answer_timeout_s : float
        Bound of one math-verify check; a sample past it is unscorable (counted, judged wrong).

    Returns
    -------
    PassAtK
    """
    from mta.generation.engine import generate
    from mta.progress import progress_bar

    if not problems:
        raise ValueError("problems is empty")
    for name, value, lo in (("n", n, 1), ("batch_prompts", batch_prompts, 1), ("max_new_tokens", max_new_tokens, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < lo:
            raise ValueError(f"{name} must be an int >= {lo}, got {value!r}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0 for pass@k (greedy samples are all the same), got {temperature}")
    if "{question}" not in prompt_template:
        raise ValueError(f"prompt_template must contain {{question}}, got {prompt_template!r}")
    judge = Reward("ground_truth", answer_format=answer_format, timeout_s=answer_timeout_s)
    generator = torch.Generator(model.device).manual_seed(seed)
    correct, unscorable, tokens = [], 0, 0
    bar = progress_bar(total=len(problems), desc=f"pass@k (n={n})", unit="problem", enabled=progress)
    for start in range(0, len(problems), batch_prompts):
        chunk = problems[start: start + batch_prompts]
        out = generate(model, tokenizer, [prompt_template.replace("{question}", p.question) for p in chunk], n=n,
                       max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, generator=generator,
                       chat_template=chat_template, compact_every=compact_every, progress=False)
        tokens += out.num_tokens
        for i, problem in enumerate(chunk):
            judgements = judge.judge_group(out.texts[i * n: (i + 1) * n], problem.answer)
            correct.append(sum(1 for j in judgements if j.correct))
            unscorable += sum(1 for j in judgements if j.unscorable)
        bar.update(len(chunk))
    bar.close()
    c = torch.tensor(correct, dtype=torch.int64)
    curve = [float(mk.pass_at_k(n, c, k).mean()) for k in range(1, n + 1)]
    return PassAtK(n=n, curve=curve, correct=correct, problem_ids=[p.id for p in problems], unscorable=unscorable,
                   mean_response_tokens=tokens / (len(problems) * n))


def alignment_verdict(result: PassAtK, threshold: float = DEFAULT_THRESHOLD) -> tuple[str, str]:
    """``("strong" | "weak", explanation)``: the paper's reading of a pass@k curve.

    Strong alignment when pass@n reaches ``threshold`` (see :data:`DEFAULT_THRESHOLD`).
    """
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    p1, pn, n = result.at(1), result.at(result.n), result.n
    if pn >= threshold:
        return "strong", (
            f"strong model-task alignment: pass@{n} = {pn:.3f} >= {threshold} (pass@1 = {p1:.3f}). The skill is "
            "latent: here the paper finds that spurious rewards (random, incorrect), one-shot RL, majority-vote "
            "self-reward and negative-only (NSR) training can raise pass@1 by sharpening it; ground-truth RL "
            "works too.")
    return "weak", (
        f"weak model-task alignment: pass@{n} = {pn:.3f} < {threshold} (pass@1 = {p1:.3f}). The paper finds that "
        "spurious rewards, one-shot RL, self-reward and negative-only training fail in this regime; train with "
        "ground-truth rewards and standard RL, which it finds robust.")


def plot_pass_at_k(results: dict[str, PassAtK], path: str | Path, title: str = "pass@k") -> Path:
    """pass@k vs k (log2 axis), one curve per entry of ``results``; returns the PNG's path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for label, r in results.items():
        ax.plot(range(1, r.n + 1), r.curve, "o-", markersize=3, label=label)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("k (samples)")
    ax.set_ylabel("pass@k")
    ax.set_ylim(0, 1)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_report(result: PassAtK, out_dir: str | Path, *, label: str, threshold: float = DEFAULT_THRESHOLD) -> str:
    """Write ``passk.json``, ``passk.md`` and ``passk.png`` under ``out_dir``; return the markdown."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    level, text = alignment_verdict(result, threshold)
    md = (f"# pass@k: {label}\n\n{len(result.correct)} problems, n = {result.n} samples each, "
          f"{result.mean_response_tokens:.1f} tokens per sample, {result.unscorable} unscorable samples "
          f"(counted as wrong)\n\n{result.table()}\n\n**Verdict ({level})**: {text}\n\n![pass@k](passk.png)\n")
    (out_dir / "passk.md").write_text(md, encoding="utf-8")
    (out_dir / "passk.json").write_text(json.dumps({"label": label, "verdict": level, "threshold": threshold,
                                                    **result.to_json()}, indent=1) + "\n", encoding="utf-8")
    plot_pass_at_k({label: result}, out_dir / "passk.png", title=f"pass@k — {label}")
    return md
