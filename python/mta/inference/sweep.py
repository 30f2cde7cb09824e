"""Parameter sweeps: accuracy and token cost over a grid of temperature, top-p, top-k, min-p.

The whole grid runs as batched generations: every (grid point, problem) pair is one prompt
with its own parameters (``mta.generate`` takes one value per prompt, which reach the fused
sampler as per-row tensors), ``batch_size`` prompts per call, ``n`` samples each. So a
20-point grid over 10 problems is a handful of decode loops, not 200.

Accuracy is the fraction of samples whose answer matches the gold (mean pass@1). Wall time
of a call is attributed to its rows in proportion to the tokens each generated (a decode
loop's cost grows with its rows' tokens), so a point's ``time_s`` is comparable across
points that shared calls.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from mta.answers import AnswerCheckTimeout, answers_match, extract_answer
from mta.data import Problem
from mta.inference.techniques import Decoding

__all__ = ["SWEEP_PARAMS", "SweepPoint", "SweepResult", "sweep"]

SWEEP_PARAMS = ("temperature", "top_p", "top_k", "min_p")


@dataclass(frozen=True)
class SweepPoint:
    """One grid point's outcome."""

    params: dict  # temperature, top_p, top_k, min_p
    accuracy: float  # correct samples / samples
    mean_tokens: float  # generated tokens per sample
    time_s: float  # wall time attributed to this point
    samples: int
    correct: int


@dataclass
class SweepResult:
    """Every grid point, in grid order, and the axes that varied."""

    points: list[SweepPoint]
    axes: dict  # param -> values swept (more than one value)

    def table(self) -> str:
        """A markdown table, one line per grid point."""
        head = "| " + " | ".join([*SWEEP_PARAMS, "accuracy", "mean tokens", "time s"]) + " |"
        lines = [head, "|" + "---|" * (len(SWEEP_PARAMS) + 3)]
        for pt in self.points:
            cells = [f"{pt.params[k]:g}" for k in SWEEP_PARAMS]
            cells += [f"{pt.accuracy:.3f} ({pt.correct}/{pt.samples})", f"{pt.mean_tokens:.1f}", f"{pt.time_s:.2f}"]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)

    def best(self) -> SweepPoint:
        """The most accurate point; among equals, the one with the fewest tokens."""
        return min(self.points, key=lambda p: (-p.accuracy, p.mean_tokens))

    def plot(self, path: str | Path, title: str = "") -> Path:
        """Heat maps of accuracy and mean tokens over the first two swept axes (one row of
        panels per combination of any further swept axes)."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        axes = list(self.axes) or ["temperature"]
        x_key = axes[0]
        y_key = axes[1] if len(axes) > 1 else None
        rest = axes[2:]
        xs = sorted({p.params[x_key] for p in self.points})
        ys = sorted({p.params[y_key] for p in self.points}) if y_key else [None]
        facets = sorted({tuple(p.params[k] for k in rest) for p in self.points})
        fig, grid = plt.subplots(len(facets), 2, figsize=(5.5 * 2, 0.6 * len(ys) + 2.6 * len(facets) + 0.4),
                                 squeeze=False)
        for row, facet in enumerate(facets):
            for col, (metric, label, cmap) in enumerate((("accuracy", "accuracy", "viridis"),
                                                        ("mean_tokens", "mean tokens", "magma"))):
                values = [[math.nan] * len(xs) for _ in ys]
                for p in self.points:
                    if tuple(p.params[k] for k in rest) != facet:
                        continue
                    yi = ys.index(p.params[y_key]) if y_key else 0
                    values[yi][xs.index(p.params[x_key])] = getattr(p, metric)
                ax = grid[row][col]
                scale = {"vmin": 0.0, "vmax": 1.0} if metric == "accuracy" else {}
                im = ax.imshow(values, cmap=cmap, aspect="auto", origin="lower", **scale)
                for yi, line in enumerate(values):
                    for xi, v in enumerate(line):
                        if not math.isnan(v):
                            ax.text(xi, yi, f"{v:.2f}" if metric == "accuracy" else f"{v:.0f}",
                                    ha="center", va="center", fontsize=7, color="w")
                ax.set_xticks(range(len(xs)), [f"{x:g}" for x in xs])
                ax.set_yticks(range(len(ys)), [f"{y:g}" for y in ys] if y_key else [""])
                ax.set_xlabel(x_key)
                if y_key:
                    ax.set_ylabel(y_key)
                facet_text = ", ".join(f"{k}={v:g}" for k, v in zip(rest, facet))
                ax.set_title(f"{label}" + (f" ({facet_text})" if facet_text else ""), fontsize=9)
                fig.colorbar(im, ax=ax)
        if title:
            fig.suptitle(title, fontsize=9)
        fig.tight_layout()
        path = Path(path)
        fig.savefig(path, dpi=110)
        plt.close(fig)
        return path


def _grid(grid: Mapping[str, Sequence]) -> tuple[list[dict], dict]:
    if not isinstance(grid, Mapping) or not grid:
        raise ValueError(f"grid must be a non-empty dict of parameter -> list of values, among {SWEEP_PARAMS}")
    defaults = {"temperature": 1.0, "top_p": 1.0, "top_k": 0, "min_p": 0.0}
    values = {}
    for key, vals in grid.items():
        if key not in SWEEP_PARAMS:
            raise ValueError(f"grid key {key!r} is not a sampling parameter; use {SWEEP_PARAMS}")
        if isinstance(vals, (str, bytes)) or not isinstance(vals, Sequence) or not vals:
            raise ValueError(f"grid[{key!r}] must be a non-empty list of values")
        values[key] = list(vals)
    keys = list(values)
    points = []
    for combo in itertools.product(*(values[k] for k in keys)):
        point = dict(defaults, **dict(zip(keys, combo)))
        Decoding(temperature=point["temperature"], top_k=point["top_k"], top_p=point["top_p"],
                 min_p=point["min_p"])  # checks every value, naming the parameter
        points.append(point)
    axes = {k: v for k, v in values.items() if len(v) > 1}
    return points, axes


def sweep(model, tokenizer, problems: Sequence[Problem], grid: Mapping[str, Sequence], *, n: int = 1,
          max_new_tokens: int = 256, prompt: str = "{question}", chat_template: bool = True, batch_size: int = 64,
          seed: int = 0, progress: bool = True) -> SweepResult:
    """Run every point of ``grid`` on ``problems`` and measure accuracy and tokens.

    Parameters
    ----------
    grid : dict
        Parameter -> values, e.g. ``{"temperature": [0.3, 0.7, 1.0], "top_p": [0.9, 1.0]}``;
        the grid is their product; parameters not named keep their neutral value (T = 1,
        top-p 1, top-k 0, min-p 0).
    n : int
        Samples per (point, problem).
    batch_size : int
        Prompts per generate call (each with ``n`` rows).

    Returns
    -------
    SweepResult
        ``.points`` (accuracy, mean tokens, time per point), ``.table()``, ``.plot(path)``.
    """
    from mta.generation.engine import generate
    from mta.progress import progress_bar
    from mta_kernels._validation import check_int

    n = check_int(n, "n", lo=1)
    batch_size = check_int(batch_size, "batch_size", lo=1)
    if not problems:
        raise ValueError("problems is empty")
    points, axes = _grid(grid)
    decoding = Decoding(max_new_tokens=max_new_tokens, prompt=prompt, chat_template=chat_template)
    jobs = [(pi, qi) for pi in range(len(points)) for qi in range(len(problems))]
    texts = decoding.prompts(problems)
    tokens = [0] * len(points)
    correct = [0] * len(points)
    seconds = [0.0] * len(points)
    bar = progress_bar(total=len(jobs), desc="sweep", unit="prompt", enabled=progress)
    for b0 in range(0, len(jobs), batch_size):
        chunk = jobs[b0:b0 + batch_size]
        params = {k: [points[pi][k] for pi, _ in chunk] for k in SWEEP_PARAMS}
        start = time.perf_counter()
        out = generate(model, tokenizer, [texts[qi] for _, qi in chunk], n=n, max_new_tokens=max_new_tokens,
                       seed=seed + b0, chat_template=chat_template, progress=False, **params)
        elapsed = time.perf_counter() - start
        total = max(out.num_tokens, 1)
        for row, (text, ids) in enumerate(zip(out.texts, out.token_ids)):
            pi, qi = chunk[row // n]
            tokens[pi] += len(ids)
            seconds[pi] += elapsed * len(ids) / total
            answer = extract_answer(text)
            try:
                correct[pi] += answer is not None and answers_match(problems[qi].answer, answer)
            except AnswerCheckTimeout:
                pass
        bar.update(len(chunk))
    bar.close()
    per_point = len(problems) * n
    return SweepResult(
        [SweepPoint(points[i], correct[i] / per_point, tokens[i] / per_point, seconds[i], per_point, correct[i])
         for i in range(len(points))],
        axes,
    )
