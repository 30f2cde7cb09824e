"""Model and data named in a config or on the command line, loaded offline and checked.

Everything here runs before any compute, so a bad name, a data file without gold answers
or a tokenizer without the chat template the run needs fails at once, with the reason.
"""

from __future__ import annotations

from pathlib import Path

import torch

from mta.data import Problem, load_dataset

__all__ = ["TINY_MODELS", "check_chat_template", "load_model", "load_problems", "resolve_device"]

#: ``tiny-<arch>``: a randomly initialised tiny model of that architecture with SmolLM2's
#: tokenizer (vocabulary 49152) — for smoke runs of the whole pipeline, not for learning.
TINY_MODELS = ("tiny-llama", "tiny-qwen2")


def resolve_device(name: str) -> torch.device:
    """``"auto"``: CUDA when available, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' but CUDA is not available")
    return torch.device(name)


def load_model(spec: str, device: torch.device, *, seed: int = 0):
    """``(model, tokenizer)`` for ``spec``: ``"smollm2"``, ``"tiny-llama"`` / ``"tiny-qwen2"``,
    or a local transformers model directory (read with ``local_files_only``)."""
    from mta.models import load_smollm2, tiny_random_model

    if spec == "smollm2":
        return load_smollm2(device=device)
    if spec in TINY_MODELS:
        _, tokenizer = load_smollm2()
        model = tiny_random_model(spec.split("-", 1)[1], vocab_size=len(tokenizer), seed=seed, device=device,
                                  eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
        return model, tokenizer
    path = Path(spec)
    if not path.is_dir():
        raise ValueError(f"model must be 'smollm2', one of {TINY_MODELS} or a local model directory; "
                         f"{spec!r} is none of these")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True, dtype=torch.float32)
    return model.to(device).eval(), tokenizer


def check_chat_template(tokenizer, needed: bool) -> None:
    """A run that wraps prompts in the chat template needs a tokenizer that has one."""
    if needed and getattr(tokenizer, "chat_template", None) is None:
        raise ValueError("chat_template is on but the tokenizer has no chat template: set chat_template = false "
                         "(plain prompts) or use an instruct model's tokenizer")


def load_problems(name: str, *, limit: int | None, seed: int) -> list[Problem]:
    """A data set of :mod:`mta.data` by name or JSONL path; every problem must have a gold
    answer (a JSONL record without one is an error naming its line)."""
    problems = load_dataset(name, limit=limit, seed=seed)
    missing = [p.id for p in problems if not str(p.answer).strip()]
    if missing:
        raise ValueError(f"{name}: {len(missing)} problems have no gold answer (first: {missing[0]})")
    if not problems:
        raise ValueError(f"{name}: no problems")
    return problems
