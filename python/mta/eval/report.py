"""What an evaluation run writes: per-technique summary, markdown table, plots, samples.

``summary.md`` / ``summary.json``: per (model, technique) the problems done, accuracy, mean
generated tokens per problem (all samples), wall time in total and per problem, and the
samples per problem. ``samples.jsonl``: one line per problem and sample (the record's
fields with that sample's text, answer, tokens and logprob). ``accuracy_vs_tokens.png``:
accuracy against mean tokens per problem (the cost of each point of accuracy), and wall time
per problem.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

__all__ = ["EvalReport", "TechniqueSummary", "summarise", "write_outputs"]


@dataclass(frozen=True)
class TechniqueSummary:
    """One (model, technique) over the problems it has done."""

    model: str
    technique: str
    items: int
    correct: int
    accuracy: float
    mean_tokens: float  # generated tokens per problem, all samples
    time_s: float  # wall time, summed over the problems
    samples_per_item: float
    no_answer: int  # problems where the technique stated no answer
    check_timeouts: int


@dataclass
class EvalReport:
    """The summaries of a run, in the order the techniques first appear in the log."""

    dataset: str
    problems: int
    rows: list[TechniqueSummary]
    resumed_records: int = 0  # records already in the log when this call started
    elapsed_s: float = 0.0  # this call's wall time
    extra: dict = field(default_factory=dict)

    def row(self, technique: str, model: str | None = None) -> TechniqueSummary:
        for r in self.rows:
            if r.technique == technique and (model is None or r.model == model):
                return r
        raise KeyError(f"no results for technique {technique!r}" + (f" on {model!r}" if model else ""))

    def markdown(self) -> str:
        """The summary table (accuracy, mean tokens, wall time per technique)."""
        models = {r.model for r in self.rows}
        head = (["model"] if len(models) > 1 else []) + [
            "technique", "problems", "accuracy", "mean tokens", "samples", "wall time s", "s / problem"]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for r in self.rows:
            done = f"{r.items}" if r.items == self.problems else f"{r.items} of {self.problems}"
            cells = ([r.model] if len(models) > 1 else []) + [
                r.technique, done, f"{r.accuracy:.3f} ({r.correct}/{r.items})", f"{r.mean_tokens:.1f}",
                f"{r.samples_per_item:g}", f"{r.time_s:.1f}", f"{r.time_s / max(r.items, 1):.2f}"]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)


def summarise(records: list[dict], manifest: dict, problems) -> EvalReport:
    """Group the records by (model, technique) and total them."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in records:
        groups.setdefault((r["model"], r["technique"]), []).append(r)
    rows = []
    for (model, technique), rs in groups.items():
        n = len(rs)
        correct = sum(r["correct"] for r in rs)
        rows.append(TechniqueSummary(
            model=model, technique=technique, items=n, correct=correct, accuracy=correct / n,
            mean_tokens=sum(r["tokens"] for r in rs) / n, time_s=sum(r["time_s"] for r in rs),
            samples_per_item=sum(len(r["samples"]) for r in rs) / n,
            no_answer=sum(r["answer"] is None for r in rs), check_timeouts=sum(r["check_timeout"] for r in rs),
        ))
    return EvalReport(manifest.get("dataset", ""), len(problems), rows)


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def write_outputs(out_dir: Path, records: list[dict], report: EvalReport) -> None:
    """``samples.jsonl``, ``summary.md``, ``summary.json`` and the plot (each replaced whole)."""
    lines = []
    for r in records:
        item = {k: v for k, v in r.items() if k != "samples"}
        for k, s in enumerate(r["samples"]):
            lines.append(json.dumps({**item, "sample": k, **{f"sample_{key}": v for key, v in s.items()}},
                                    ensure_ascii=False))
    _write_text(out_dir / "samples.jsonl", "".join(line + "\n" for line in lines))
    header = f"# Evaluation: {report.dataset}, {report.problems} problems\n\n"
    _write_text(out_dir / "summary.md", header + report.markdown() + "\n\n![accuracy vs tokens](accuracy_vs_tokens.png)\n")
    _write_text(out_dir / "summary.json", json.dumps(
        {"dataset": report.dataset, "problems": report.problems, "rows": [asdict(r) for r in report.rows]},
        indent=1) + "\n")
    plot(report, out_dir / "accuracy_vs_tokens.png")


def plot(report: EvalReport, path: Path) -> Path:
    """Accuracy vs mean tokens per problem (one point per technique), and wall time per problem."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    multi = len({r.model for r in report.rows}) > 1
    labels = [f"{r.model} / {r.technique}" if multi else r.technique for r in report.rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    markers = "osD^vP*Xh<>"
    for i, (r, label) in enumerate(zip(report.rows, labels)):
        left.scatter(r.mean_tokens, r.accuracy, s=45, marker=markers[i % len(markers)], label=label, alpha=0.85)
    left.legend(fontsize=7, loc="best")
    left.set_xlabel("generated tokens per problem (all samples)")
    left.set_ylabel("accuracy")
    left.set_xscale("log")
    left.set_ylim(-0.03, 1.03)
    left.grid(True, alpha=0.3)
    left.set_title("accuracy vs token cost", fontsize=10)
    right.barh(range(len(labels)), [r.time_s / max(r.items, 1) for r in report.rows])
    right.set_yticks(range(len(labels)), labels, fontsize=8)
    right.invert_yaxis()
    right.set_xlabel("wall time per problem (s)")
    right.grid(True, axis="x", alpha=0.3)
    fig.suptitle(f"{report.dataset}: {report.problems} problems", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
