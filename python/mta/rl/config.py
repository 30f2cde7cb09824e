"""The trainer's configuration: one documented field per knob, read from TOML or YAML.

A config file holds the fields of :class:`RLConfig`, flat or grouped in tables (``[rollout]``,
``[objective]``, ...; the table names are only for the reader). Every field can be
overridden on the command line (``mta rl train run.toml --lr 1e-5 --reward random``).
:meth:`RLConfig.validate` checks every field before anything is loaded or computed: an
unknown reward, ``group_size < 2``, a micro-batch that does not divide the mini-batch, ...
each get a ``ValueError`` naming the field.

Defaults are DAPO's (DESIGN.md): temperature 1.0 and no top-k / top-p, clip 0.2 / 0.28,
token-mean loss, no KL, lr 1e-6, groups whose rewards are all equal dropped.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from mta.rewards import ANSWER_FORMATS, REWARDS
from mta_kernels.rl import ADVANTAGE_MODES, AGG_MODES

__all__ = ["OBJECTIVES", "RLConfig", "config_from_mapping", "flatten_config", "load_config", "parse_value", "read_config_file"]

#: Which samples the policy loss learns from: all (``standard``), only those with a positive
#: advantage (``psr``), only a negative one (``nsr``), or both with the positive ones scaled by
#: ``psr_weight`` (``weighted``, W-REINFORCE's λ).
OBJECTIVES = ("standard", "psr", "nsr", "weighted")
LR_SCHEDULES = ("constant", "linear", "cosine")
KL_ESTIMATORS = ("k1", "k3")
OLD_LOGPROBS = ("recompute", "rollout")


def _f(default, help: str):  # noqa: A002 - the field's documentation
    return field(default=default, metadata={"help": help})


@dataclass
class RLConfig:
    """Every setting of one RL run (see the module docstring; ``help`` of each field below)."""

    # -- model and data -------------------------------------------------------------------
    model: str = _f("smollm2", "'smollm2' (SmolLM2-135M-Instruct, offline), a local transformers model "
                    "directory, or 'tiny-llama' / 'tiny-qwen2' (random tiny model, SmolLM2's tokenizer; smoke runs)")
    data: str = _f("arithmetic", "data set: gsm8k, gsm8k-train, math500, arithmetic (mta.data) or a .jsonl file "
                   "with question / answer fields")
    data_limit: int | None = _f(None, "use only the first N problems (arithmetic: generate N; default 100)")
    data_seed: int = _f(0, "seed of the generated arithmetic problems")
    one_shot: int | None = _f(None, "one-shot RL: train on problem #N only, repeated as the whole data set")
    prompt_template: str = _f("{question}", "the user message; {question} is replaced by the problem")
    chat_template: bool = _f(True, "wrap the prompt in the tokenizer's chat template (an error if it has none)")
    # -- reward ---------------------------------------------------------------------------
    reward: str = _f("ground_truth", f"reward variant: {', '.join(REWARDS)}")
    answer_format: str = _f("any", f"format the format-gated rewards ask for: {', '.join(ANSWER_FORMATS)}")
    reward_p: float = _f(0.5, "probability of a 1 for the random rewards")
    answer_timeout_s: float = _f(5.0, "time bound of one math-verify answer check (past it: unscorable, counted)")
    # -- rollout --------------------------------------------------------------------------
    prompts_per_step: int = _f(8, "prompts (groups) trained on per step")
    group_size: int = _f(8, "samples per prompt G (>= 2: the group mean is the baseline)")
    max_new_tokens: int = _f(128, "response length cap")
    temperature: float = _f(1.0, "sampling temperature (> 0); the old log-probs are recomputed at it")
    top_k: int = _f(0, "top-k filter of the rollouts (0: off)")
    top_p: float = _f(1.0, "top-p filter of the rollouts (1: off)")
    compact_every: int = _f(8, "drop finished rows from the rollout batch every N decode steps (0: never)")
    old_logprobs: str = _f("recompute", "'recompute': teacher-forced with mk.linear_token_logprobs (always "
                           "right); 'rollout': the engine's, allowed only without top-k / top-p")
    dynamic_sampling: bool = _f(True, "drop groups whose rewards are all equal and refill from the next prompts")
    max_gen_rounds: int = _f(3, "generation rounds per step at most when refilling (DAPO max_num_gen_batches)")
    overlong_filter: bool = _f(False, "leave responses cut at max_new_tokens out of the loss")
    overlong_buffer: int = _f(0, "DAPO soft overlong penalty: the last N tokens before the cap are penalised "
                              "linearly down to -overlong_penalty (0: off)")
    overlong_penalty: float = _f(1.0, "the soft overlong penalty at the cap")
    # -- objective ------------------------------------------------------------------------
    advantage: str = _f("grpo", f"group advantage: {', '.join(ADVANTAGE_MODES)}")
    objective: str = _f("standard", f"samples that contribute: {', '.join(OBJECTIVES)}")
    psr_weight: float = _f(0.1, "λ: the positive samples' weight in objective='weighted'")
    clip_low: float = _f(0.2, "ratio clipped below at 1 - clip_low")
    clip_high: float = _f(0.28, "ratio clipped above at 1 + clip_high (DAPO clip-higher)")
    dual_clip: float | None = _f(None, "dual clip c > 1 for negative advantages (none: off)")
    loss_agg: str = _f("token-mean", f"loss aggregation: {', '.join(AGG_MODES)}")
    kl_coef: float = _f(0.0, "weight of the KL to the frozen initial model (0: no reference model)")
    kl_estimator: str = _f("k3", "KL estimator: k1 (log ratio) or k3 (verl low_var_kl)")
    # -- optimisation ---------------------------------------------------------------------
    steps: int = _f(20, "training steps (one rollout batch each)")
    ppo_epochs: int = _f(1, "passes over each rollout batch")
    mini_batch_size: int | None = _f(None, "sequences per optimizer step (default: the whole batch)")
    micro_batch_size: int = _f(8, "sequences per forward/backward (gradient accumulation)")
    lr: float = _f(1e-6, "AdamW learning rate")
    weight_decay: float = _f(0.01, "AdamW weight decay")
    adam_betas: tuple[float, float] = _f((0.9, 0.999), "AdamW betas")
    grad_clip: float | None = _f(1.0, "gradient norm clip (none: off)")
    lr_schedule: str = _f("constant", f"after warm-up: {', '.join(LR_SCHEDULES)}")
    warmup_steps: int = _f(0, "linear warm-up steps")
    min_lr_ratio: float = _f(0.0, "lr at the end of a linear / cosine schedule, as a fraction of lr")
    bf16: bool | None = _f(None, "bf16 autocast (none: on CUDA only)")
    device: str = _f("auto", "cpu, cuda or auto")
    seed: int = _f(0, "seed of the data order, the rollouts and the random rewards")
    # -- evaluation and output ------------------------------------------------------------
    eval_data: str | None = _f(None, "held-out data set, greedy accuracy at the start, the end and every "
                               "eval_every steps (none: no evaluation)")
    eval_limit: int = _f(64, "problems of the held-out set")
    eval_seed: int = _f(1, "seed of generated held-out arithmetic")
    eval_every: int = _f(0, "evaluate every N steps as well (0: start and end only)")
    run_dir: str = _f("runs/rl", "metrics.jsonl, plots and the checkpoint go here")
    save_every: int = _f(0, "checkpoint every N steps (0: at the end only)")
    resume: bool = _f(True, "resume from run_dir's checkpoint when there is one")
    progress: bool = _f(True, "progress bar")

    # ------------------------------------------------------------------------------------

    @property
    def batch_size(self) -> int:
        """Sequences per step: ``prompts_per_step * group_size``."""
        return self.prompts_per_step * self.group_size

    def validate(self) -> RLConfig:
        """Check every field (``ValueError`` naming it); returns self."""
        _one_of(self, "reward", REWARDS)
        _one_of(self, "answer_format", ANSWER_FORMATS)
        _one_of(self, "advantage", ADVANTAGE_MODES)
        _one_of(self, "objective", OBJECTIVES)
        _one_of(self, "loss_agg", AGG_MODES)
        _one_of(self, "kl_estimator", KL_ESTIMATORS)
        _one_of(self, "lr_schedule", LR_SCHEDULES)
        _one_of(self, "old_logprobs", OLD_LOGPROBS)
        _one_of(self, "device", ("auto", "cpu", "cuda"))
        if self.group_size < 2:
            raise ValueError(f"group_size must be >= 2 (the group mean is the baseline), got {self.group_size}")
        for name in ("prompts_per_step", "max_new_tokens", "steps", "ppo_epochs", "micro_batch_size",
                     "max_gen_rounds", "eval_limit"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("data_seed", "seed", "eval_seed", "warmup_steps", "eval_every", "save_every", "compact_every",
                     "overlong_buffer", "top_k"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.data_limit is not None and self.data_limit < 1:
            raise ValueError(f"data_limit must be >= 1 or none, got {self.data_limit}")
        if self.one_shot is not None and self.one_shot < 0:
            raise ValueError(f"one_shot must be a problem index >= 0 or none, got {self.one_shot}")
        mini = self.mini_batch_size or self.batch_size
        if self.batch_size % mini:
            raise ValueError(f"mini_batch_size ({mini}) must divide the batch (prompts_per_step * group_size = "
                             f"{self.batch_size})")
        if mini % self.micro_batch_size:
            raise ValueError(f"micro_batch_size ({self.micro_batch_size}) must divide the mini-batch ({mini} "
                             "sequences)")
        if not (self.temperature > 0 and math.isfinite(self.temperature)):
            raise ValueError(f"temperature must be > 0 (a greedy group has no spread to learn from), "
                             f"got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.old_logprobs == "rollout" and (self.top_k > 0 or self.top_p < 1):
            raise ValueError("old_logprobs='rollout' would mix two distributions: the engine's log-probs are under "
                             f"the filtered distribution (top_k={self.top_k}, top_p={self.top_p}) and the loss's "
                             "under the full one; use old_logprobs='recompute'")
        if self.overlong_buffer >= self.max_new_tokens:
            raise ValueError(f"overlong_buffer ({self.overlong_buffer}) must be < max_new_tokens "
                             f"({self.max_new_tokens})")
        _interval(self, "clip_low", 0.0, 1.0)
        _interval(self, "clip_high", 0.0, math.inf)
        _interval(self, "reward_p", 0.0, 1.0)
        _interval(self, "psr_weight", 0.0, math.inf)
        _interval(self, "kl_coef", 0.0, math.inf)
        _interval(self, "weight_decay", 0.0, math.inf)
        _interval(self, "min_lr_ratio", 0.0, 1.0)
        _interval(self, "overlong_penalty", 0.0, math.inf)
        if self.dual_clip is not None and not self.dual_clip > 1:
            raise ValueError(f"dual_clip must be > 1 or none, got {self.dual_clip}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ValueError(f"grad_clip must be > 0 or none, got {self.grad_clip}")
        if not self.answer_timeout_s > 0:
            raise ValueError(f"answer_timeout_s must be > 0, got {self.answer_timeout_s}")
        if len(self.adam_betas) != 2 or not all(0 <= b < 1 for b in self.adam_betas):
            raise ValueError(f"adam_betas must be two numbers in [0, 1), got {self.adam_betas}")
        if "{question}" not in self.prompt_template:
            raise ValueError(f"prompt_template must contain {{question}}, got {self.prompt_template!r}")
        return self

    def to_dict(self) -> dict[str, Any]:
        """The fields as plain values (JSON / TOML friendly)."""
        out = dataclasses.asdict(self)
        out["adam_betas"] = list(self.adam_betas)
        return out

    def replace(self, **changes) -> RLConfig:
        """A copy with ``changes`` (field names checked)."""
        _check_names(changes)
        return dataclasses.replace(self, **changes)


def _one_of(cfg: RLConfig, name: str, allowed) -> None:
    value = getattr(cfg, name)
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(str, allowed))}; got {value!r}")


def _interval(cfg: RLConfig, name: str, lo: float, hi: float) -> None:
    value = getattr(cfg, name)
    if not lo <= value <= hi:
        raise ValueError(f"{name} must be in [{lo}, {hi}], got {value}")


FIELDS = {f.name: f for f in fields(RLConfig)}


def _check_names(values: dict) -> None:
    for name in values:
        if name not in FIELDS:
            close = difflib.get_close_matches(name, FIELDS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"unknown config field {name!r}{hint}")


def _annotation(name: str) -> str:
    return str(FIELDS[name].type)


def parse_value(name: str, text: Any) -> Any:
    """``text`` (a command-line string, or a value read from a file) as field ``name``'s type."""
    _check_names({name: text})
    kind = _annotation(name)
    optional = "None" in kind
    if isinstance(text, str) and optional and text.strip().lower() in ("none", "null", ""):
        return None
    if text is None:
        if optional:
            return None
        raise ValueError(f"{name} cannot be none")
    try:
        if kind.startswith("bool"):
            if isinstance(text, bool):
                return text
            lowered = str(text).strip().lower()
            if lowered in ("true", "1", "yes", "on"):
                return True
            if lowered in ("false", "0", "no", "off"):
                return False
            raise ValueError(f"not a boolean: {text!r}")
        if kind.startswith("int"):
            if isinstance(text, bool) or (isinstance(text, float) and not text.is_integer()):
                raise ValueError(f"not an int: {text!r}")
            return int(text)
        if kind.startswith("float"):
            if isinstance(text, bool):
                raise ValueError(f"not a number: {text!r}")
            return float(text)
        if kind.startswith("tuple"):
            items = text.split(",") if isinstance(text, str) else list(text)
            return tuple(float(x) for x in items)
        if not isinstance(text, str):
            raise ValueError(f"not a string: {text!r}")
        return text
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name}: {error} (expected {kind})") from None


def _flatten(raw: dict, path: Path) -> dict:
    flat: dict = {}
    for key, value in raw.items():
        if isinstance(value, dict):  # a table: [rollout], [objective], ...
            for inner, v in value.items():
                if isinstance(v, dict):
                    raise ValueError(f"{path}: table {key}.{inner} nests too deep (one level of tables at most)")
                if inner in flat:
                    raise ValueError(f"{path}: field {inner!r} is set twice")
                flat[inner] = v
        else:
            if key in flat:
                raise ValueError(f"{path}: field {key!r} is set twice")
            flat[key] = value
    return flat


def read_config_file(path: str | Path) -> dict:
    """The mapping a TOML (``.toml``) or YAML (``.yaml`` / ``.yml``) file holds, unflattened."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no config file at {path}")
    if path.suffix == ".toml":
        import tomllib

        return tomllib.loads(path.read_text(encoding="utf-8"))
    if path.suffix in (".yaml", ".yml"):
        import yaml

        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        if not isinstance(raw, dict):
            raise ValueError(f"{path}: a YAML config must be a mapping of fields")
        return raw
    raise ValueError(f"{path}: a config must be .toml, .yaml or .yml")


def flatten_config(raw: dict, path: str | Path) -> dict:
    """``raw`` with its tables (``[rollout]``, ...) merged into one flat mapping of fields."""
    return _flatten(raw, Path(path))


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> RLConfig:
    """Read a TOML (``.toml``) or YAML (``.yaml`` / ``.yml``) config, apply ``overrides``
    (field -> value or command-line string), validate. ``path=None``: the defaults."""
    values: dict = {}
    if path is not None:
        values = _flatten(read_config_file(path), Path(path))
    return config_from_mapping(values, overrides)


def config_from_mapping(values: dict[str, Any], overrides: dict[str, Any] | None = None) -> RLConfig:
    """An :class:`RLConfig` from flat ``values`` (field -> value or string) and ``overrides``, validated."""
    values = {**values, **(overrides or {})}
    _check_names(values)
    return RLConfig(**{name: parse_value(name, value) for name, value in values.items()}).validate()
