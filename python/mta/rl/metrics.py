"""The run's metrics: one JSON line per step in ``RUN_DIR/metrics.jsonl``, and PNG plots of them.

Per step: reward and accuracy (every generated sample, kept or not), response length,
entropy, clip fraction, KL (to the old policy and, with ``kl_coef``, to the reference),
grad norm, learning rate, groups generated / kept, unscorable samples, the time of each
phase (generation, old log-probs, training forward/backward, optimizer) and tokens/s per
phase; held-out greedy accuracy where evaluated.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

__all__ = ["MetricsLog", "plot_metrics", "read_metrics"]

METRICS = "metrics.jsonl"


class MetricsLog:
    """Appends metric rows to ``path`` (JSONL), flushed per row so a crash loses nothing."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.rows: list[dict] = []

    def append(self, row: dict) -> None:
        self.rows.append(row)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")

    def reset(self, rows: list[dict]) -> None:
        """Start over from ``rows`` (a resumed run: the checkpoint's metrics, later lines dropped)."""
        self.rows = list(rows)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "w", encoding="utf-8") as f:
            for row in self.rows:
                f.write(json.dumps(row) + "\n")


def read_metrics(path: str | Path) -> list[dict]:
    """The rows of a ``metrics.jsonl`` (or of ``RUN_DIR/metrics.jsonl`` given the run directory)."""
    path = Path(path)
    if path.is_dir():
        path = path / METRICS
    if not path.is_file():
        raise FileNotFoundError(f"no metrics at {path}")
    rows = []
    for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}:{line_no}: not JSON ({error.msg})") from None
    return rows


_PANELS = [
    ("reward / accuracy", ["reward", "accuracy", "eval_accuracy"], None),
    ("response length (tokens)", ["response_length", "response_length_max"], None),
    ("entropy (nats / token)", ["entropy"], None),
    ("clipping and KL", ["clip_fraction", "approx_kl", "kl_ref"], None),
    ("grad norm", ["grad_norm"], ("lr", "lr")),
    ("tokens / s per phase", ["generate_tokens_per_s", "logprob_tokens_per_s", "train_tokens_per_s"], None),
]


def plot_metrics(rows_or_path, out: str | Path, title: str | None = None, *, panels=None, step_key: str = "step",
                 boundaries: dict[float, str] | None = None) -> Path:
    """A PNG of the run's curves (six panels); returns its path.

    ``panels`` replaces the RL panels (``(title, keys, twin)`` triples, at most six),
    ``step_key`` names the x axis, ``boundaries`` (x -> label) draws dashed vertical lines
    (``mta tfpi train``: the stage boundaries)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = rows_or_path if isinstance(rows_or_path, list) else read_metrics(rows_or_path)
    if not rows:
        raise ValueError("no metrics to plot (the run has no steps yet)")
    fig, axes = plt.subplots(2, 3, figsize=(15, 7.5))
    panels = _PANELS if panels is None else panels
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    for ax, (name, keys, twin) in zip(axes.flat, panels):
        for key in keys:
            points = [(r[step_key], r[key]) for r in rows if isinstance(r.get(key), (int, float))
                      and math.isfinite(r[key]) and step_key in r]
            if points:
                xs, ys = zip(*points)
                ax.plot(xs, ys, "o-" if key == "eval_accuracy" else "-", label=key, markersize=4)
        if twin is not None:
            key, label = twin
            points = [(r[step_key], r[key]) for r in rows if isinstance(r.get(key), (int, float)) and step_key in r]
            if points:
                ax2 = ax.twinx()
                ax2.plot(*zip(*points), "k:", label=label)
                ax2.set_ylabel(label)
        if name.startswith("tokens / s") and ax.lines:
            ax.set_yscale("log")
        for x, label in (boundaries or {}).items():
            ax.axvline(x, color="grey", linestyle="--", linewidth=0.8)
            ax.annotate(label, (x, 1), xycoords=("data", "axes fraction"), fontsize=6, rotation=90, va="top")
        ax.set_title(name, fontsize=10)
        ax.set_xlabel(step_key)
        ax.grid(True, alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=7)
    fig.suptitle(title or "mta rl", fontsize=10)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
