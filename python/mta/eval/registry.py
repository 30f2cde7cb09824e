"""Techniques and models by name, for ``mta eval`` and the demo.

A technique spec is ``NAME[:key=value,key=value...]``, e.g. ``sc:n=16,vote=weighted`` or
``bon:n=8,selector=oracle``; values are read as int, float, ``true`` / ``false``, else text.
The keys of :class:`~mta.inference.techniques.Decoding` (temperature, top_k, top_p, min_p,
max_new_tokens) set that technique's decoding, the rest go to its factory. The spec is
the technique's name in the results.

A new technique is one entry in :data:`TECHNIQUES`: ``name -> factory(decoding, name,
**options) -> Technique``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields, replace

from mta.inference.techniques import BestOfN, Braking, Decoding, Sampling, SelfConsistency, Technique

__all__ = ["MODELS", "TECHNIQUES", "check_model", "load_model", "make_technique", "parse_spec"]


def _sampling(decoding: Decoding, name: str) -> Technique:
    return Sampling(decoding, name=name)


def _greedy(decoding: Decoding, name: str) -> Technique:
    return Sampling(replace(decoding, temperature=0.0), name=name)


def _edt(decoding: Decoding, name: str, theta: float = 0.5, base: float = 0.8) -> Technique:
    from mta.inference.schedules import EntropyAdaptiveTemperature

    return Sampling(decoding, schedule=EntropyAdaptiveTemperature(theta, base), name=name)


def _self_consistency(decoding: Decoding, name: str, n: int = 8, vote: str = "majority",
                      weighting: str = "mean") -> Technique:
    return SelfConsistency(n, vote=vote, weighting=weighting, decoding=decoding, name=name)


def _best_of_n(decoding: Decoding, name: str, n: int = 8, selector: str = "mean_logprob") -> Technique:
    return BestOfN(n, selector=selector, decoding=decoding, name=name)


def _braking(decoding: Decoding, name: str, **triggers) -> Technique:
    from mta_kernels.braking import BrakingConfig

    return Braking(BrakingConfig(**triggers) if triggers else None, decoding=decoding, name=name)


def _wsd(decoding: Decoding, name: str, base: str = "auto", window: int | None = None, gamma: float | None = None,
         max_draft_tokens: int | None = None) -> Technique:
    from mta.wsd.technique import WeakToStrong

    rule = {k: v for k, v in (("window", window), ("gamma", gamma)) if v is not None}  # else the paper's
    return WeakToStrong(base, max_draft_tokens=max_draft_tokens, decoding=decoding, name=name, **rule)


#: name -> factory(decoding, name, **options); the options a spec may set are the factory's.
TECHNIQUES: dict[str, Callable[..., Technique]] = {
    "greedy": _greedy,
    "sample": _sampling,
    "edt": _edt,  # sampling with entropy-adaptive temperature (a per-step schedule)
    "sc": _self_consistency,
    "bon": _best_of_n,
    "braking": _braking,
    "wsd": _wsd,  # Weak-to-Strong Decoding: the evaluated model drafts, base=auto|gemma3|smollm2 takes over
}


def _value(text: str):
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse_spec(spec: str) -> tuple[str, dict]:
    """``"sc:n=8,vote=weighted"`` -> ``("sc", {"n": 8, "vote": "weighted"})``."""
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"a technique spec is NAME[:key=value,...], got {spec!r}")
    name, _, rest = spec.strip().partition(":")
    options = {}
    for part in filter(None, (p.strip() for p in rest.split(","))):
        key, eq, value = part.partition("=")
        if not eq or not key.strip():
            raise ValueError(f"technique spec {spec!r}: {part!r} is not key=value")
        options[key.strip()] = _value(value.strip())
    return name, options


_DECODING_KEYS = {f.name for f in fields(Decoding)}


def make_technique(spec: str, decoding: Decoding | None = None) -> Technique:
    """The technique a spec names, decoding from ``decoding`` with the spec's overrides."""
    import inspect

    kind, options = parse_spec(spec)
    if kind not in TECHNIQUES:
        raise ValueError(f"unknown technique {kind!r} in {spec!r}; known: {', '.join(TECHNIQUES)}")
    decoding = decoding or Decoding()
    overrides = {k: options.pop(k) for k in list(options) if k in _DECODING_KEYS}
    if overrides:
        decoding = replace(decoding, **overrides)
    factory = TECHNIQUES[kind]
    params = inspect.signature(factory).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    unknown = [k for k in options if k not in params or k in ("decoding", "name")]
    if unknown and not takes_any:
        allowed = sorted({k for k in params if k not in ("decoding", "name")} | _DECODING_KEYS)
        raise ValueError(f"technique spec {spec!r}: unknown option(s) {unknown}; {kind} takes {allowed}")
    try:
        return factory(decoding, spec.strip(), **options)
    except TypeError as error:
        raise ValueError(f"technique spec {spec!r}: {error}") from None


def _smollm2(device):
    from mta.models import load_smollm2

    return load_smollm2(device=device)


def _smollm2_tokenizer():
    """SmolLM2's tokenizer alone from the cached copy (the model load is skipped), else via the full load."""
    from mta import models

    # The cached copy's location is models.py's business; reading it here saves loading weights.
    cached = models._cached_copy_dir(models.smollm2_gguf_path())
    if not models._is_complete(cached):
        return models.load_smollm2()[1]
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(cached)
    tokenizer.padding_side = "left"
    return tokenizer


def _tiny(device):
    """A tiny random Llama with SmolLM2's vocabulary and tokenizer: fast, for tests and plumbing."""
    from mta.models import tiny_random_model

    tokenizer = _smollm2_tokenizer()
    return tiny_random_model("llama", vocab_size=len(tokenizer), seed=0, device=device), tokenizer


#: Model names ``mta eval --model`` knows; anything else is read as a local model directory.
MODELS: dict[str, Callable] = {"smollm2": _smollm2, "tiny": _tiny}


def check_model(name: str) -> str:
    """``name`` if :func:`load_model` knows it, else a ``ValueError`` (before anything loads)."""
    from pathlib import Path

    if name not in MODELS and not (Path(name) / "config.json").is_file():
        raise ValueError(f"unknown model {name!r}: one of {sorted(MODELS)}, or a local model directory "
                         "holding config.json")
    return name


def load_model(name: str, device: str = "cpu"):
    """``(model, tokenizer)`` for a name in :data:`MODELS` or a local transformers directory (offline)."""
    if check_model(name) in MODELS:
        return MODELS[name](device)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(name, local_files_only=True)
    tokenizer.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(name, local_files_only=True)
    return model.to(device).eval(), tokenizer
