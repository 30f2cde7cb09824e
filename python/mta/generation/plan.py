"""One :func:`mta.generate` call, checked and decided before the model runs.

:func:`make_plan` turns generate's arguments into a :class:`GenerationPlan`: every argument
checked (errors name it), prompts encoded, per-prompt parameters expanded to rows, EOS /
padding ids resolved, processors wrapped. The decode path (``engine.py``) reads the plan
and nothing else.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from numbers import Integral

import torch

from mta.generation.params import SamplingParams, sampling_params
from mta.generation.sampler import ParamSchedule, SamplerFactory
from mta.prompts import encode_prompts
from mta_kernels._validation import check_generator, check_int
from mta_kernels.integrations.transformers import BrakingLogitsProcessor

__all__ = ["CACHE_MODES", "GenerationPlan", "LogitsProcessor", "make_plan"]

LogitsProcessor = Callable[..., torch.Tensor]
CACHE_MODES = ("auto", "static", "dynamic")


@dataclass(frozen=True)
class GenerationPlan:
    """Everything one generate call decided; ``B = len(prompt_ids) * n`` rows, prompt-major."""

    prompt_ids: list[list[int]]  # per prompt, unpadded
    n: int
    max_new_tokens: int
    params: SamplingParams
    generator: torch.Generator | None
    eos: list[int]
    pad_id: int
    stops: list[str]
    stop_check_interval: int
    processors: list[Callable]  # each call(input_ids, logits, state) -> logits
    braking: BrakingLogitsProcessor | None
    mixing: SamplerFactory | None
    schedule: ParamSchedule | None  # per-step parameters (ScheduledSampler); not with mixing
    return_entropy: bool
    chat_template: bool
    add_special_tokens: bool | None
    cache: str
    compile: bool
    progress: bool

    @property
    def num_prompts(self) -> int:
        return len(self.prompt_ids)

    @property
    def batch_size(self) -> int:
        return self.num_prompts * self.n

    @property
    def prompt_indices(self) -> list[int]:
        return [p for p in range(self.num_prompts) for _ in range(self.n)]

    def wants_fp32_logits(self) -> bool:
        """User processors were promised fp32 logits; the kernels read any logit dtype."""
        return bool(self.processors)


def _eos_ids(model, tokenizer, eos_token_id) -> list[int]:
    if eos_token_id is None:
        eos_token_id = getattr(model.generation_config, "eos_token_id", None)
        if eos_token_id is None and tokenizer is not None:
            eos_token_id = tokenizer.eos_token_id
    if eos_token_id is None:
        return []
    ids = [eos_token_id] if isinstance(eos_token_id, Integral) else list(eos_token_id)
    for i in ids:
        if isinstance(i, bool) or not isinstance(i, Integral) or i < 0:
            raise ValueError(f"eos_token_id must be an int >= 0 or a list of them, got {eos_token_id!r}")
    return [int(i) for i in ids]


def _pad_id(model, tokenizer, eos: list[int]) -> int:
    for candidate in (
        getattr(tokenizer, "pad_token_id", None),
        getattr(model.generation_config, "pad_token_id", None),
        getattr(model.config, "pad_token_id", None),
    ):
        if isinstance(candidate, Integral):
            return int(candidate)
    return eos[0] if eos else 0


#: Config fields that give a model's context length, by family (Llama / Qwen2, GPT-2, ...).
_CONTEXT_FIELDS = ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length")

#: max_new_tokens beyond this is refused for a model that declares no context length: the
#: decode buffers are [B, prompt + max_new_tokens] int64.
MAX_NEW_TOKENS = 2**20


def _context_length(model) -> int | None:
    config = model.config.get_text_config()
    for name in _CONTEXT_FIELDS:
        value = getattr(config, name, None)
        if isinstance(value, Integral) and not isinstance(value, bool) and value > 0:
            return int(value)
    return None


def _check_length(model, prompt_ids: list[list[int]], max_new_tokens: int) -> None:
    """The longest prompt plus ``max_new_tokens`` must fit the model's context (vLLM's rule:
    positions past it are out of the model's range, and the buffers are sized by it)."""
    context = _context_length(model)
    longest = max(len(p) for p in prompt_ids)
    if context is None:
        if max_new_tokens > MAX_NEW_TOKENS:
            raise ValueError(f"max_new_tokens must be <= {MAX_NEW_TOKENS} (the model declares no context length), "
                             f"got {max_new_tokens}")
    elif longest + max_new_tokens > context:
        raise ValueError(f"max_new_tokens={max_new_tokens} does not fit the model's context of {context} tokens: "
                         f"the longest prompt has {longest} tokens, so at most {max(context - longest, 0)} new ones")


def _check_braking(braking: BrakingLogitsProcessor, batch: int, device: torch.device) -> None:
    """A per-row braking config or ``in_think`` must have one entry per sample (B rows), now
    rather than at the first decode step."""
    try:
        braking.cfg.normalised(batch, device)
    except (TypeError, ValueError) as e:
        raise type(e)(f"braking.cfg: {e} (the batch is len(prompts) * n = {batch} rows)") from e
    in_think = braking.in_think
    if isinstance(in_think, torch.Tensor) and (in_think.shape != (batch,) or in_think.dtype != torch.bool):
        raise ValueError(f"braking.in_think must be a bool or a [{batch}] bool tensor (len(prompts) * n rows), "
                         f"got {in_think.dtype} of shape {tuple(in_think.shape)}")


def _stop_list(stop) -> list[str]:
    if stop is None:
        return []
    stops = [stop] if isinstance(stop, str) else list(stop)
    for s in stops:
        if not isinstance(s, str) or not s:
            raise ValueError(f"stop must be a non-empty str or a list of them, got {stop!r}")
    return stops


def processor_callers(processors) -> list[Callable]:
    """Each processor as ``call(input_ids, logits, state)``; ``state`` goes to those that ask for it."""
    if processors is None:
        return []
    if callable(processors):
        processors = [processors]
    calls = []
    for i, proc in enumerate(processors):
        if not callable(proc):
            raise TypeError(f"logits_processors[{i}] must be callable (input_ids, logits) -> logits")
        with_state = getattr(proc, "call_with_state", None)
        try:
            wants_state = "state" in inspect.signature(proc).parameters
        except (TypeError, ValueError):
            wants_state = False
        if callable(with_state):  # mta_kernels' processors: a two-argument __call__ for transformers
            calls.append(lambda ids, logits, state, f=with_state: f(ids, logits, state))
        elif wants_state:
            calls.append(lambda ids, logits, state, proc=proc: proc(ids, logits, state=state))
        else:
            calls.append(lambda ids, logits, state, proc=proc: proc(ids, logits))
    return calls


def make_plan(
    model,
    tokenizer,
    prompts: Sequence,
    *,
    n,
    max_new_tokens,
    temperature,
    top_k,
    top_p,
    min_p,
    generator,
    seed,
    eos_token_id,
    stop,
    stop_check_interval,
    logits_processors,
    braking,
    mixing,
    return_entropy,
    chat_template,
    add_special_tokens,
    cache,
    compile,
    progress,
    schedule=None,
) -> GenerationPlan:
    """Check every argument of :func:`mta.generate` and resolve the defaults (see its docstring)."""
    n = check_int(n, "n", lo=1)
    max_new_tokens = check_int(max_new_tokens, "max_new_tokens", lo=0)
    stop_check_interval = check_int(stop_check_interval, "stop_check_interval", lo=1)
    if cache not in CACHE_MODES:
        raise ValueError(f"cache must be 'auto', 'static' or 'dynamic', got {cache!r}")
    if compile and cache == "dynamic":
        raise ValueError("compile=True needs cache='static' or 'auto' (a fixed-shape decode step)")
    stops = _stop_list(stop)
    if stops and tokenizer is None:
        raise ValueError("stop strings need a tokenizer (tokenizer=None)")
    processors = processor_callers(logits_processors)
    if braking is not None and not isinstance(braking, BrakingLogitsProcessor):
        raise TypeError("braking must be a mta_kernels.integrations.transformers.BrakingLogitsProcessor, "
                        f"got {type(braking).__name__}")
    device = model.device
    if generator is not None and seed is not None:
        raise ValueError("pass generator or seed, not both")
    check_generator(generator, device, other="the model's weights")
    if seed is not None:
        generator = torch.Generator(device).manual_seed(check_int(seed, "seed", lo=0))
    if mixing is not None and not isinstance(mixing, SamplerFactory):
        raise TypeError(f"mixing must be a mta.mixing.Mixing (an object with start(...)), got {type(mixing).__name__}")
    if schedule is not None:
        if not callable(schedule):
            raise TypeError(f"schedule must be a ParamSchedule (callable with a StepContext), got {type(schedule).__name__}")
        if mixing is not None:
            raise ValueError("schedule= and mixing= cannot be combined: the mixing sampler takes fixed parameters")

    vocab_size = getattr(model.config.get_text_config(), "vocab_size", None)
    prompt_ids = encode_prompts(
        prompts, tokenizer, chat_template=chat_template, add_special_tokens=add_special_tokens, vocab_size=vocab_size
    )
    _check_length(model, prompt_ids, max_new_tokens)
    params = sampling_params(len(prompt_ids), n, device, temperature=temperature, top_k=top_k, top_p=top_p,
                             min_p=min_p)
    if braking is not None:
        _check_braking(braking, len(prompt_ids) * n, device)
    eos = _eos_ids(model, tokenizer, eos_token_id)
    return GenerationPlan(
        prompt_ids=prompt_ids,
        n=n,
        max_new_tokens=max_new_tokens,
        params=params,
        generator=generator,
        eos=eos,
        pad_id=_pad_id(model, tokenizer, eos),
        stops=stops,
        stop_check_interval=stop_check_interval,
        processors=processors,
        braking=braking,
        mixing=mixing,
        schedule=schedule,
        return_entropy=return_entropy,
        chat_template=chat_template,
        add_special_tokens=add_special_tokens,
        cache=cache,
        compile=compile,
        progress=progress,
    )
