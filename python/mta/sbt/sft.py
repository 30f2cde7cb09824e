"""Self-Braking fine-tuning: supervised training on SBT records, honouring their loss masks.

``mta sbt train DATA.jsonl`` trains a causal LM on the records ``mta sbt build`` writes
(:mod:`mta.sbt.sft_data` templates them and builds the token mask). The loss is the mean
negative log-likelihood of the trained tokens of a batch; only their hidden states go
through the LM head, fused with the log-softmax in ``mk.linear_token_logprobs``
(:func:`mta.rl.logprobs.sequence_logprobs`), so the ``[tokens, vocab]`` logits never exist
at once and a masked token has no path to the loss at all.

Everything around the loss is the RL trainer's: AdamW and its schedule, micro-batching,
the clipped step (:mod:`mta.rl.optim`), the data order (:class:`mta.rl.stream.PromptStream`),
checkpoints that resume to the identical next step (:mod:`mta.rl.checkpoint`), the metrics
JSONL and plot (:mod:`mta.rl.metrics`). At the end the model and tokenizer are saved with
``save_pretrained`` under ``RUN_DIR/model``, which ``--model`` of every command loads.

SmolLM2 has no ``<think>`` token: with ``add_think_tokens`` (the default) ``<think>`` and
``</think>`` are added as single special tokens first, as the braking demo does.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from mta.rl import checkpoint as ckpt
from mta.rl.loading import load_model, resolve_device
from mta.rl.logprobs import check_lm_head, pack, sequence_logprobs
from mta.rl.metrics import plot_metrics
from mta.rl.optim import chunks, clipped_step, make_optimizer
from mta.rl.stream import PromptStream
from mta.sbt.sft_data import SFTExample, check_records, read_records, tokenize_records

__all__ = ["SFTConfig", "SFTTrainer", "masked_nll"]

LR_SCHEDULES = ("constant", "linear", "cosine")
RESUMABLE_CHANGES = ("progress", "save_every", "resume", "run_dir", "device")
PANELS = [
    ("loss (NLL / trained token)", ["loss"], None),
    ("tokens per step", ["trained_tokens", "masked_tokens"], None),
    ("grad norm", ["grad_norm"], ("lr", "lr")),
    ("tokens / s", ["train_tokens_per_s"], None),
]


@dataclass
class SFTConfig:
    """Settings of one ``mta sbt train`` run (the optimisation fields mean what they mean in RLConfig)."""

    data: str = ""                      # mta sbt build JSONL
    model: str = "smollm2"              # 'smollm2', 'tiny-llama' / 'tiny-qwen2' or a local model directory
    epochs: int = 1
    steps: int | None = None            # optimizer steps (None: epochs x batches per epoch)
    batch_size: int = 8                 # records per optimizer step
    micro_batch_size: int = 2           # records per forward / backward
    max_length: int = 2048              # tokens kept per record (the first ones)
    lr: float = 1e-5
    weight_decay: float = 0.0
    adam_betas: tuple[float, float] = (0.9, 0.999)
    grad_clip: float | None = 1.0
    lr_schedule: str = "constant"
    warmup_steps: int = 0
    min_lr_ratio: float = 0.0
    add_think_tokens: bool = True
    bf16: bool | None = None
    device: str = "auto"
    seed: int = 0
    run_dir: str = "runs/sbt-sft"
    save_every: int = 0
    resume: bool = True
    progress: bool = True

    def validate(self) -> SFTConfig:
        """``ValueError`` naming the first bad field; returns self."""
        for name in ("epochs", "batch_size", "micro_batch_size", "max_length"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"steps must be >= 1 or none, got {self.steps}")
        for name in ("warmup_steps", "save_every", "seed"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.batch_size % self.micro_batch_size:
            raise ValueError(f"micro_batch_size ({self.micro_batch_size}) must divide batch_size ({self.batch_size})")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {', '.join(LR_SCHEDULES)}; got {self.lr_schedule!r}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ValueError(f"grad_clip must be > 0 or none, got {self.grad_clip}")
        if not 0 <= self.min_lr_ratio <= 1:
            raise ValueError(f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be auto, cpu or cuda; got {self.device!r}")
        return self

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out["adam_betas"] = list(self.adam_betas)
        return out


def masked_nll(model, examples: list[SFTExample], pad_id: int, device: torch.device, *,
               autocast: torch.dtype | None = None) -> tuple[torch.Tensor, int]:
    """Summed NLL of the trained tokens of ``examples`` and their count.

    Only the trained tokens' hidden states reach the LM head (``mk.linear_token_logprobs``):
    a masked token is neither a target nor a row of the head's matmul, so it has no gradient.
    """
    firsts = [ex.loss_mask.index(1) if 1 in ex.loss_mask else len(ex.loss_mask) for ex in examples]
    firsts = [max(f, 1) for f in firsts]  # token 0 has no context to be predicted from
    prompts = [ex.input_ids[:f] for ex, f in zip(examples, firsts)]
    responses = [ex.input_ids[f:] for ex, f in zip(examples, firsts)]
    packed = pack(prompts, responses, pad_id, device)
    keep = torch.tensor([m for ex, f in zip(examples, firsts) for m in ex.loss_mask[f:]], dtype=torch.bool,
                        device=device)
    for name in ("gather", "targets", "rows", "cols"):
        setattr(packed, name, getattr(packed, name)[keep])
    logp, _ = sequence_logprobs(model, packed, 1.0, autocast=autocast)
    return -logp.sum(), int(keep.sum())


class SFTTrainer:
    """Supervised fine-tuning on SBT records as ``config`` says.

    Parameters
    ----------
    config : SFTConfig
    model, tokenizer : optional
        Use these instead of loading ``config.model``.
    records : list of dict, optional
        Records (``messages``, ``masked_spans``) instead of reading ``config.data``.
    """

    def __init__(self, config: SFTConfig, *, model=None, tokenizer=None, records: list[dict] | None = None):
        cfg = config.validate()
        if records is None:
            if not cfg.data:
                raise ValueError("data: give the JSONL that mta sbt build wrote")
            records = read_records(cfg.data)
        check_records(records)
        self.device = resolve_device(cfg.device) if model is None else model.device
        if model is None:
            model, tokenizer = load_model(cfg.model, self.device, seed=cfg.seed)
        elif tokenizer is None:
            raise ValueError("a model passed to SFTTrainer needs its tokenizer (tokenizer=None)")
        if cfg.add_think_tokens and any("<think>" in r["messages"][-1]["content"] for r in records):
            from mta.models import add_think_tokens

            add_think_tokens(model, tokenizer)
        check_lm_head(model)
        self.examples = tokenize_records(records, tokenizer, max_length=cfg.max_length)
        per_epoch = math.ceil(len(self.examples) / cfg.batch_size)
        self.cfg = cfg = dataclasses.replace(cfg, steps=cfg.steps or cfg.epochs * per_epoch)
        self.model, self.tokenizer = model.eval(), tokenizer  # no dropout in these models; eval keeps runs exact
        self.pad_id = next((t for t in (getattr(tokenizer, "pad_token_id", None), tokenizer.eos_token_id, 0)
                            if isinstance(t, int)), 0)
        bf16 = cfg.bf16 if cfg.bf16 is not None else self.device.type == "cuda"
        self.autocast = torch.bfloat16 if bf16 else None
        self.optimizer, self.scheduler = make_optimizer(model, cfg)
        self.stream = PromptStream(self.examples, seed=cfg.seed)
        self.step_count = 0
        self.run_dir, self.log, resuming = ckpt.open_run(cfg.run_dir, cfg.resume)
        if resuming:
            self._restore()

    def save(self) -> Path:
        """Checkpoint the run (:func:`mta.rl.checkpoint.save_run`) and plot its metrics."""
        path = ckpt.save_run(self.run_dir, step=self.step_count, model=self.model, optimizer=self.optimizer,
                             scheduler=self.scheduler, stream=self.stream, metrics=self.log.rows,
                             config=self.cfg.to_dict(), generators={})
        if self.log.rows:
            plot_metrics(self.log.rows, self.run_dir / "metrics.png", title=f"mta sbt train — {self.run_dir}",
                         panels=PANELS)
        return path

    def _restore(self) -> None:
        state = ckpt.restore_run(self.run_dir, self.device, model=self.model, optimizer=self.optimizer,
                                 scheduler=self.scheduler, stream=self.stream, config=self.cfg.to_dict(),
                                 resumable=RESUMABLE_CHANGES, generators={})
        self.step_count = int(state["step"])
        self.log.reset(state["metrics"])

    def step(self) -> dict:
        """One optimizer step on the next ``batch_size`` records; returns its metrics row."""
        cfg = self.cfg
        t0 = time.perf_counter()
        batch = [ex for _, ex in self.stream.next(cfg.batch_size)]
        trained = sum(ex.trained_tokens for ex in batch)
        self.optimizer.zero_grad(set_to_none=True)
        total = 0.0
        for lo, hi in chunks(0, len(batch), cfg.micro_batch_size):
            nll, _ = masked_nll(self.model, batch[lo:hi], self.pad_id, self.device, autocast=self.autocast)
            (nll / trained).backward()  # token mean over the whole batch
            total += float(nll.detach())
        row = {"step": self.step_count + 1, "epoch": self.stream.epoch, "lr": self.optimizer.param_groups[0]["lr"]}
        row["grad_norm"] = clipped_step(self.model, self.optimizer, cfg.grad_clip)
        self.scheduler.step()
        self.step_count += 1
        elapsed = time.perf_counter() - t0
        row.update({"loss": total / trained, "trained_tokens": trained,
                    "masked_tokens": sum(len(ex.loss_mask) - ex.trained_tokens for ex in batch),
                    "step_s": elapsed, "train_tokens_per_s": sum(len(ex.input_ids) for ex in batch) / elapsed})
        self.log.append(row)
        return row

    def train(self) -> list[dict]:
        """Train to ``steps``; checkpoint every ``save_every`` steps and at the end, then write
        ``RUN_DIR/model`` (``save_pretrained``). Returns every metrics row."""
        from mta.progress import progress_bar

        cfg = self.cfg
        bar = progress_bar(total=cfg.steps, initial=self.step_count, desc="sbt train", unit="step",
                           enabled=cfg.progress)
        while self.step_count < cfg.steps:
            row = self.step()
            bar.update(1)
            bar.set_postfix(loss=f"{row['loss']:.3f}")
            if cfg.save_every and self.step_count % cfg.save_every == 0 and self.step_count < cfg.steps:
                self.save()
        bar.close()
        self.save()
        self.model.eval()
        self.model.save_pretrained(self.run_dir / "model")
        self.tokenizer.save_pretrained(self.run_dir / "model")
        return self.log.rows
