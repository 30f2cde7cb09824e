"""Staged RLVR on ThinkFree prompts (TFPI's training schedule): ``mta tfpi train CONFIG``.

A config is an ``mta rl train`` config (:class:`mta.rl.RLConfig` fields, flat or in tables)
plus a list of stages, each a maximum response length that grows from one stage to the
next (the paper's 2K -> 4K -> 8K, scaled down for CPU demos) and a number of steps::

    [[stages]]
    max_new_tokens = 32
    steps = 4
    [[stages]]
    max_new_tokens = 64
    steps = 4

A stage may set other RLConfig fields too (``lr``, ``group_size``, ...). Every prompt is
made ThinkFree (:func:`mta.tfpi.think_free`) once, rendered with the chat template; each
stage is one :class:`mta.rl.Trainer` run in ``RUN_DIR/stage-K`` (a fresh optimizer, as a
new trainer run) that starts from the model of the previous stage's final checkpoint. The
stages' metrics go into one ``RUN_DIR/metrics.jsonl`` (``global_step``, ``stage``,
``stage_max_new_tokens`` added) and one plot with the stage boundaries; the final model
is saved under ``RUN_DIR/model``.

Resume: a stage whose checkpoint is final is not run again; an interrupted stage resumes
from its own checkpoint (the trainer's exact resume); a stage not begun starts from the
previous stage's final checkpoint. So a run killed at a stage boundary continues exactly.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from mta.data import Problem
from mta.rl import checkpoint as ckpt
from mta.rl.config import RLConfig, config_from_mapping, flatten_config, read_config_file
from mta.rl.metrics import plot_metrics
from mta.tfpi.transform import EMPTY_THINK, THINK_OPEN, think_free

__all__ = ["Stage", "TFPIConfig", "load_tfpi_config", "run_stages", "think_free_problems"]

PANELS = [
    ("reward / accuracy", ["reward", "accuracy", "eval_accuracy"], None),
    ("response length (tokens)", ["response_length", "response_length_max", "stage_max_new_tokens"], None),
    ("truncated fraction", ["truncated_fraction"], None),
    ("entropy (nats / token)", ["entropy"], None),
    ("grad norm", ["grad_norm"], ("lr", "lr")),
    ("step time (s)", ["step_s"], None),
]


@dataclass
class Stage:
    """One stage: its response-length cap, steps, and other RLConfig fields it changes."""

    max_new_tokens: int
    steps: int
    overrides: dict = field(default_factory=dict)


@dataclass
class TFPIConfig:
    """A base RLConfig (``run_dir`` is the run's directory), the stages and the empty block."""

    base: RLConfig
    stages: list[Stage]
    empty_think: str = EMPTY_THINK

    def stage_config(self, k: int) -> RLConfig:
        """Stage ``k``'s trainer config: ThinkFree prompts are rendered already (no template)."""
        s = self.stages[k]
        return config_from_mapping({**self.base.to_dict(), **s.overrides, "max_new_tokens": s.max_new_tokens,
                                    "steps": s.steps, "run_dir": str(Path(self.base.run_dir) / f"stage-{k + 1}"),
                                    "chat_template": False, "prompt_template": "{question}"})


def _check_stages(stages) -> list[Stage]:
    if not isinstance(stages, list) or not stages:
        raise ValueError("stages: give at least one stage ([[stages]] tables with max_new_tokens and steps)")
    out = []
    for k, s in enumerate(stages):
        if not isinstance(s, dict):
            raise ValueError(f"stages[{k}]: must be a table of fields, got {s!r}")
        for name in ("max_new_tokens", "steps"):
            v = s.get(name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"stages[{k}].{name} must be an int >= 1, got {v!r}")
        for name in ("run_dir", "chat_template", "prompt_template"):
            if name in s:
                raise ValueError(f"stages[{k}].{name}: set by mta tfpi train itself, not per stage")
        out.append(Stage(s["max_new_tokens"], s["steps"], {k2: v for k2, v in s.items()
                                                           if k2 not in ("max_new_tokens", "steps")}))
        if k and out[k].max_new_tokens <= out[k - 1].max_new_tokens:
            raise ValueError(f"stages[{k}].max_new_tokens ({out[k].max_new_tokens}) must be greater than "
                             f"stages[{k - 1}].max_new_tokens ({out[k - 1].max_new_tokens}): TFPI stages grow the "
                             "response length")
    return out


def load_tfpi_config(path: str | Path | None = None, overrides: dict | None = None, *, stages=None,
                     empty_think: str | None = None) -> TFPIConfig:
    """Read a TFPI config (module docstring); ``overrides`` apply to the base RLConfig,
    ``stages`` (a list of dicts) replaces the file's. Every stage config is validated."""
    raw = dict(read_config_file(path)) if path is not None else {}
    file_stages = raw.pop("stages", None)
    tfpi = raw.pop("tfpi", {}) or {}
    base = config_from_mapping(flatten_config(raw, path or "<config>"), overrides)
    cfg = TFPIConfig(base, _check_stages(stages if stages is not None else file_stages),
                     empty_think if empty_think is not None else tfpi.get("empty_think", EMPTY_THINK))
    for k in range(len(cfg.stages)):
        try:
            cfg.stage_config(k)
        except ValueError as error:
            raise ValueError(f"stages[{k}]: {error}") from None
    think_free("x", empty_think=cfg.empty_think)  # checks the block
    return cfg


def think_free_problems(problems: list[Problem], tokenizer, cfg: RLConfig, empty_think: str) -> list[Problem]:
    """``problems`` with each question replaced by its ThinkFree prompt, rendered."""
    out = []
    for p in problems:
        user = cfg.prompt_template.replace("{question}", p.question)
        prompt = think_free([{"role": "user", "content": user}] if cfg.chat_template else user, tokenizer,
                            empty_think=empty_think)
        out.append(dataclasses.replace(p, question=prompt))
    return out


def _final(run_dir: Path, steps: int) -> dict | None:
    """The state of ``run_dir``'s checkpoint if it is the last one of a ``steps``-step run."""
    if not ckpt.has_checkpoint(run_dir):
        return None
    model_state, state = ckpt.load_checkpoint(run_dir)
    return {"model": model_state, **state} if int(state["step"]) >= steps else None


def _combined(cfg: TFPIConfig, stage_rows: list[list[dict]]) -> tuple[list[dict], dict]:
    rows, boundaries, offset = [], {}, 0
    for k, (stage, srows) in enumerate(zip(cfg.stages, stage_rows)):
        boundaries[offset] = f"stage {k + 1}: {stage.max_new_tokens} tokens"
        for r in srows:
            rows.append({**r, "global_step": offset + r["step"], "stage": k + 1,
                         "stage_max_new_tokens": stage.max_new_tokens})
        offset += stage.steps
    return rows, boundaries


def run_stages(cfg: TFPIConfig, *, model=None, tokenizer=None, problems=None, eval_problems=None,
               until_stage: int | None = None) -> list[dict]:
    """Run (or resume) the stages; returns the combined metrics rows.

    ``until_stage=k`` stops after stage ``k`` (1-based; a run interrupted at a boundary).
    """
    from mta.rl.loading import load_model, load_problems, resolve_device
    from mta.rl.trainer import Trainer
    from mta.models import add_think_tokens

    base, run_dir = cfg.base, Path(cfg.base.run_dir)
    if model is None:
        model, tokenizer = load_model(base.model, resolve_device(base.device), seed=base.seed)
    elif tokenizer is None:
        raise ValueError("a model passed to run_stages needs its tokenizer (tokenizer=None)")
    if len(tokenizer.encode(THINK_OPEN, add_special_tokens=False)) != 1:
        add_think_tokens(model, tokenizer)  # SmolLM2: <think> / </think> as single tokens, as the braking demo
    if problems is None:
        problems = load_problems(base.data, limit=base.data_limit, seed=base.data_seed)
    if eval_problems is None and base.eval_data is not None:
        eval_problems = load_problems(base.eval_data, limit=base.eval_limit, seed=base.eval_seed)
    train_p = think_free_problems(problems, tokenizer, base, cfg.empty_think)
    eval_p = think_free_problems(eval_problems, tokenizer, base, cfg.empty_think) if eval_problems else None
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "tfpi_config.json").write_text(json.dumps(
        {"base": base.to_dict(), "stages": [s.__dict__ for s in cfg.stages], "empty_think": cfg.empty_think},
        indent=1))
    stage_rows: list[list[dict]] = []
    previous: dict | None = None
    last = len(cfg.stages) if until_stage is None else min(until_stage, len(cfg.stages))
    for k in range(last):
        scfg = cfg.stage_config(k)
        done = _final(Path(scfg.run_dir), scfg.steps)
        if done is not None:  # finished before: its model is where the next stage starts
            previous = done
            stage_rows.append(done["metrics"])
            continue
        if previous is not None and not ckpt.has_checkpoint(scfg.run_dir):
            model.load_state_dict(previous["model"])
        print(f"tfpi stage {k + 1}/{len(cfg.stages)}: max_new_tokens {scfg.max_new_tokens}, {scfg.steps} steps")
        trainer = Trainer(scfg, model=model, tokenizer=tokenizer, problems=train_p, eval_problems=eval_p)
        stage_rows.append(trainer.train())
        previous = None  # the model in memory is this stage's final one
        _write(cfg, stage_rows, run_dir)
    if previous is not None:
        model.load_state_dict(previous["model"])
    rows = _write(cfg, stage_rows, run_dir)
    if last == len(cfg.stages):
        model.save_pretrained(run_dir / "model")
        tokenizer.save_pretrained(run_dir / "model")
    return rows


def _write(cfg: TFPIConfig, stage_rows: list[list[dict]], run_dir: Path) -> list[dict]:
    rows, boundaries = _combined(cfg, stage_rows)
    with open(run_dir / "metrics.jsonl", "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    if rows:
        plot_metrics(rows, run_dir / "metrics.png", title=f"mta tfpi train — {run_dir}", panels=PANELS,
                     step_key="global_step", boundaries=boundaries)
    return rows
