"""``mta.generate``: batched, KV-cached generation for transformers causal LMs — the rollout engine.

One prefill per prompt (left-padded batch), then the cache rows are repeated for the ``n``
samples of each prompt, and a decode loop in the gpt-fast style runs one forward pass and one
:func:`mta_kernels.sample` call per step for the whole batch:

* per-row sampling parameters (temperature, top-k, top-p, min-p), a seeded generator,
  greedy at temperature 0 — the logprob of every token under the distribution it was drawn
  from comes out of the same kernel call;
* nothing on the per-token path waits for the GPU: the finished-row mask, lengths, logprobs
  and tokens stay on the device, and the host looks at them every ``stop_check_interval``
  steps (to stop when every row is done, and to search the new text for stop strings);
* a preallocated ``StaticCache`` where the model supports one (fixed shapes, so the decode
  step can be compiled, ``compile=True``), else a ``DynamicCache``;
* ``logits_processors`` hooks between the forward pass and the sampler, and ``braking``
  (SBT's braking controller, :mod:`mta_kernels.braking`) right before the sampler;
* ``mixing`` (:class:`mta.mixing.Mixing`): other models decoded in lockstep, their logits
  mixed with the model's and sampled by one :func:`mta_kernels.mix_and_sample` call per step.

Greedy output equals ``model.generate(do_sample=False)`` token for token (checked for Llama,
Qwen2, GPT-2 and SmolLM2, under left padding, in ``tests/test_generate.py``). Sampled output
is not the same draw as ``model.generate``'s (a different sampler consumes the random
stream), only the same distribution.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Sequence
from numbers import Integral

import torch

from mta.generation.braking import braking_reports
from mta.generation.params import sampling_params
from mta.generation.prompts import encode_prompts, left_pad
from mta.generation.result import GenerationResult
from mta.generation.stops import StopChecker, trim_text
from mta.mixing.generate import Mixing
from mta_kernels.integrations.transformers import BrakingLogitsProcessor

__all__ = ["DecodeState", "GenerationResult", "generate"]

LogitsProcessor = Callable[..., torch.Tensor]


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


def _check_int(name: str, value: object, lo: int) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < lo:
        raise ValueError(f"{name} must be >= {lo}, got {value}")
    return int(value)


def _stop_list(stop) -> list[str]:
    if stop is None:
        return []
    stops = [stop] if isinstance(stop, str) else list(stop)
    for s in stops:
        if not isinstance(s, str) or not s:
            raise ValueError(f"stop must be a non-empty str or a list of them, got {stop!r}")
    return stops


def _processor_callers(processors) -> list[Callable]:
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


class DecodeState:
    """What a ``logits_processors`` entry that takes a ``state`` keyword sees each step.

    All tensors are on the model's device and are the engine's own (read them, don't
    write them). Row ``b`` is sample ``b % n`` of prompt ``prompt_indices[b]``.
    """

    def __init__(self, step, prompt_width, prompt_lengths, prompt_indices, finished, n):
        self.step = step  # decode step (0 = the token after the prompt)
        self.prompt_width = prompt_width  # padded prompt length L; generated tokens start at L
        self.prompt_lengths = prompt_lengths  # [B] int64, real prompt tokens per row
        self.prompt_indices = prompt_indices  # [B] int64
        self.finished = finished  # [B] bool, rows already done (their output is ignored)
        self.n = n


def _entropy(logits: torch.Tensor) -> torch.Tensor:
    """Entropy in nats of ``softmax(logits)`` per row, fp32 (``0·log 0 = 0``)."""
    return torch.special.entr(torch.softmax(logits.float(), dim=-1)).sum(-1)


def _supports_static_cache(model) -> bool:
    return bool(getattr(model, "_can_compile_fullgraph", False))


def _static_from_dynamic(model, dynamic, max_cache_len: int):
    """A ``StaticCache`` holding ``dynamic``'s prefill; None where a layer is not a plain static one."""
    from transformers import StaticCache

    static = StaticCache(config=model.config, max_cache_len=max_cache_len)
    if any(getattr(static, "is_sliding", [])) or len(static.layers) != len(dynamic.layers):
        return None
    for i, layer in enumerate(dynamic.layers):
        static.update(layer.keys, layer.values, i)
    return static


@torch.inference_mode()
def generate(
    model,
    tokenizer,
    prompts: Sequence,
    *,
    n: int = 1,
    max_new_tokens: int = 256,
    temperature: float | Sequence[float] | torch.Tensor = 1.0,
    top_k: int | Sequence[int] | torch.Tensor = 0,
    top_p: float | Sequence[float] | torch.Tensor = 1.0,
    min_p: float | Sequence[float] | torch.Tensor = 0.0,
    generator: torch.Generator | None = None,
    seed: int | None = None,
    eos_token_id: int | Sequence[int] | None = None,
    stop: str | Sequence[str] | None = None,
    stop_check_interval: int = 8,
    logits_processors: Sequence[LogitsProcessor] | None = None,
    braking: BrakingLogitsProcessor | None = None,
    mixing: Mixing | None = None,
    return_entropy: bool = False,
    chat_template: bool = False,
    add_special_tokens: bool | None = None,
    cache: str = "auto",
    compile: bool = False,
    progress: bool = True,
) -> GenerationResult:
    """Sample ``n`` completions of every prompt with a KV-cached decode loop.

    Parameters
    ----------
    model
        A transformers causal LM (Llama, Qwen2, GPT-2 families, ...), in eval mode.
    tokenizer
        Its tokenizer; may be None when every prompt is token ids and no stop strings are
        given (texts are then empty).
    prompts : list
        Each a str, a list of chat messages (``[{"role": ..., "content": ...}]``, always
        templated) or a list / 1-D tensor of token ids. Strings are tokenised with the
        tokenizer's special tokens (BOS) unless ``add_special_tokens=False``.
    n : int
        Samples per prompt. Each prompt is prefilled once; its cache rows are repeated.
    max_new_tokens : int
        Tokens per sample at most (0 returns empty completions without running the model).
    temperature, top_k, top_p, min_p : scalar, or one value per prompt
        As in :func:`mta_kernels.sample`: temperature 0 is greedy, ``top_k <= 0``,
        ``top_p = 1`` and ``min_p = 0`` are off. A list / tuple / 1-D tensor gives one value
        per prompt (length ``len(prompts)``), shared by that prompt's ``n`` samples.
    generator : torch.Generator, optional
        On the model's device; every step draws one uniform per row from it.
    seed : int, optional
        Shortcut for a fresh generator seeded with ``seed`` (not with ``generator``).
        Neither: torch's global RNG.
    eos_token_id : int or list of int, optional
        Tokens that end a sample (kept as its last token). Default: the model's
        ``generation_config.eos_token_id``, else the tokenizer's. ``[]`` disables EOS.
    stop : str or list of str, optional
        Stop strings. Searched in the decoded text every ``stop_check_interval`` steps
        (and at the end); the text is cut before the stop string, token ids and logprobs
        after the token that completed it. Needs ``tokenizer``.
    stop_check_interval : int
        Steps between host checks: stop-string search and, on GPU, the all-finished test
        that ends the loop early. Larger: fewer host syncs, up to ``interval - 1`` steps of
        wasted work at the end. On CPU the all-finished test runs every step (free there).
    logits_processors : list of callables, optional
        Each ``proc(input_ids, logits) -> logits`` with ``input_ids`` the [B, L + step]
        left-padded prompts and tokens so far (as transformers' ``LogitsProcessor``, which
        work as is) and ``logits`` [B, V] fp32; applied in order before sampling. One
        that takes a ``state`` keyword, or has a ``call_with_state(input_ids, logits,
        state)`` method (mta_kernels' processors), also gets a :class:`DecodeState`. Must not
        synchronise with the host if the loop is to stay sync-free.
    braking : mta_kernels.integrations.transformers.BrakingLogitsProcessor, optional
        Self-Braking decoding: applied after ``logits_processors``, right before sampling
        (so the forced brake tokens reach the sampler untouched); rows are the ``B =
        len(prompts) * n`` samples, so a per-row ``in_think`` / config has ``B`` entries.
        The result's ``braking`` then holds one :class:`BrakingReport` per sample.
    mixing : mta.mixing.Mixing, optional
        Guided logits mixing (proxy-tuning, contrastive decoding, classifier-free guidance,
        ensembles): ``model`` is the recipe's model 0, ``mixing.models`` the others, run in
        lockstep with their own caches. Each step samples the mixture in one fused call with
        the per-row ``top_k`` / ``top_p`` / ``min_p``; ``temperature`` τ scales the mixture
        (weights / τ), τ = 0 is greedy on it (top-k 1). Logprobs are under the filtered
        mixture; ``logits_processors`` and ``braking`` act on ``model``'s logits before
        mixing. See :class:`mta.mixing.Mixing`.
    return_entropy : bool
        Also return the entropy of the model's raw next-token distribution at each token.
    chat_template : bool
        Wrap string prompts as one user message in the tokenizer's chat template.
    add_special_tokens : bool, optional
        Override the special-token default when tokenising strings (see ``prompts``).
    cache : {"auto", "static", "dynamic"}
        ``"static"``: a preallocated ``StaticCache`` of ``L + max_new_tokens`` positions
        (raises if the model cannot use one); ``"dynamic"``: ``DynamicCache``; ``"auto"``:
        static on CUDA when the model supports it, else dynamic (on CPU, eager attention
        over the whole preallocated length costs more than it saves).
    compile : bool
        ``torch.compile`` the decode step (CUDA graphs on GPU, ``mode="reduce-overhead"``);
        implies the static cache. Off by default; the first call compiles (minutes).
    progress : bool
        Show a tqdm bar (one tick per decode step).

    Returns
    -------
    GenerationResult
        ``len(prompts) * n`` samples, prompt-major: texts, token ids, logprobs, finish
        reasons, prompt indices (and entropies), plus timings.

    Examples
    --------
    >>> from mta.models import load_smollm2                                   # doctest: +SKIP
    >>> model, tok = load_smollm2()                                           # doctest: +SKIP
    >>> out = generate(model, tok, ["What is 2 + 3?"], chat_template=True, n=4,
    ...                temperature=0.7, top_p=0.9, seed=0, max_new_tokens=32)  # doctest: +SKIP
    >>> out.texts[0], out.finish_reasons[0], len(out.logprobs[0])            # doctest: +SKIP
    """
    n = _check_int("n", n, 1)
    max_new_tokens = _check_int("max_new_tokens", max_new_tokens, 0)
    stop_check_interval = _check_int("stop_check_interval", stop_check_interval, 1)
    if cache not in ("auto", "static", "dynamic"):
        raise ValueError(f"cache must be 'auto', 'static' or 'dynamic', got {cache!r}")
    if compile and cache == "dynamic":
        raise ValueError("compile=True needs cache='static' or 'auto' (a fixed-shape decode step)")
    stops = _stop_list(stop)
    if stops and tokenizer is None:
        raise ValueError("stop strings need a tokenizer (tokenizer=None)")
    processors = _processor_callers(logits_processors)
    if braking is not None:
        if not isinstance(braking, BrakingLogitsProcessor):
            raise TypeError(f"braking must be a mta_kernels.integrations.transformers.BrakingLogitsProcessor, got {type(braking).__name__}")
        processors += _processor_callers([braking])
    device = model.device
    if generator is not None and seed is not None:
        raise ValueError("pass generator or seed, not both")
    if generator is not None and generator.device.type != device.type:
        raise ValueError(f"generator is on {generator.device} but the model is on {device}")
    if seed is not None:
        generator = torch.Generator(device).manual_seed(_check_int("seed", seed, 0))
    if mixing is not None and not isinstance(mixing, Mixing):
        raise TypeError(f"mixing must be a mta.mixing.Mixing, got {type(mixing).__name__}")

    vocab_size = getattr(model.config.get_text_config(), "vocab_size", None)
    prompt_ids = encode_prompts(
        prompts, tokenizer, chat_template=chat_template, add_special_tokens=add_special_tokens, vocab_size=vocab_size
    )
    P = len(prompt_ids)
    params = sampling_params(P, n, device, temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p)
    eos = _eos_ids(model, tokenizer, eos_token_id)
    pad_id = _pad_id(model, tokenizer, eos)
    B = P * n
    prompt_indices = [p for p in range(P) for _ in range(n)]
    mixer = None
    if mixing is not None:
        mixer = mixing.start(model, tokenizer, prompt_ids, n=n, params=params, chat_template=chat_template,
                             add_special_tokens=add_special_tokens)

    if max_new_tokens == 0:
        return GenerationResult(
            texts=[""] * B, token_ids=[[] for _ in range(B)], logprobs=[[] for _ in range(B)],
            finish_reasons=["length"] * B, prompt_indices=prompt_indices, prompt_token_ids=prompt_ids,
            entropies=[[] for _ in range(B)] if return_entropy else None, n=n,
            braking=braking_reports(braking, [[] for _ in range(B)], set(eos)) if braking is not None else None,
        )

    return _decode(
        model, tokenizer, prompt_ids, n=n, max_new_tokens=max_new_tokens, params=params, generator=generator,
        eos=eos, pad_id=pad_id, stops=stops, stop_check_interval=stop_check_interval, processors=processors,
        return_entropy=return_entropy, cache=cache, compile=compile, progress=progress, braking=braking,
        mixer=mixer,
    )


def _decode(
    model, tokenizer, prompt_ids, *, n, max_new_tokens, params, generator, eos, pad_id, stops,
    stop_check_interval, processors, return_entropy, cache, compile, progress, braking=None, mixer=None,
) -> GenerationResult:
    from transformers import DynamicCache

    device = model.device
    cuda = device.type == "cuda"
    enc = left_pad(prompt_ids, pad_id, device)
    P, L = enc.input_ids.shape
    B, T = P * n, max_new_tokens

    use_static = cache == "static" or compile or (cache == "auto" and cuda)
    if use_static and not _supports_static_cache(model):
        if cache == "static" or compile:
            raise ValueError(f"cache='static' / compile=True: {type(model).__name__} does not support a StaticCache")
        use_static = False

    # -- prefill: once per prompt, then repeat the rows for the n samples ------------------
    t0 = time.perf_counter()
    kv = DynamicCache(config=model.config)
    out = model(
        input_ids=enc.input_ids, attention_mask=enc.attention_mask, position_ids=enc.position_ids,
        past_key_values=kv, use_cache=True, logits_to_keep=1,
    )
    logits = out.logits[:, -1, :]
    del out
    if n > 1:
        kv.batch_repeat_interleave(n)
        logits = logits.repeat_interleave(n, dim=0)
    if mixer is not None:
        mixer.prefill(logits)  # the other models' prompts, each with its own cache
    if use_static:
        static = _static_from_dynamic(model, kv, L + T)
        if static is None and (cache == "static" or compile):
            raise ValueError(f"cache='static' / compile=True: {type(model).__name__} has sliding-window layers")
        if static is not None:
            kv = static
        use_static = static is not None
    if cuda:
        torch.cuda.synchronize(device)  # for the prefill timing only (once per call)
    prefill_s = time.perf_counter() - t0

    # -- device-side state of the loop ---------------------------------------------------------
    expand = (lambda t: t.repeat_interleave(n, dim=0)) if n > 1 else (lambda t: t)
    seq = torch.full((B, L + T), pad_id, dtype=torch.int64, device=device)
    seq[:, :L] = expand(enc.input_ids)
    mask = torch.ones((B, L + T), dtype=torch.int64, device=device)
    mask[:, :L] = expand(enc.attention_mask)
    prompt_lengths = expand(enc.attention_mask.sum(-1))
    position = prompt_lengths.unsqueeze(1).clone()  # [B, 1]: position of the next token fed
    logprobs = torch.zeros((B, T), dtype=torch.float32, device=device)
    entropies = torch.zeros((B, T), dtype=torch.float32, device=device) if return_entropy else None
    lengths = torch.zeros(B, dtype=torch.int64, device=device)
    finished = torch.zeros(B, dtype=torch.bool, device=device)
    aborted = torch.zeros(B, dtype=torch.bool, device=device)
    eos_t = torch.tensor(eos, dtype=torch.int64, device=device) if eos else None
    state = DecodeState(0, L, prompt_lengths, torch.arange(P, device=device).repeat_interleave(n), finished, n)

    def forward(tokens: torch.Tensor, position: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        out = model(
            input_ids=tokens.unsqueeze(1), position_ids=position, attention_mask=attention_mask,
            past_key_values=kv, use_cache=True,
        )
        return out.logits[:, -1, :]

    step_fn = forward
    if compile:
        step_fn = torch.compile(forward, mode="reduce-overhead" if cuda else None, dynamic=False, fullgraph=False)
    mark_step = torch.compiler.cudagraph_mark_step_begin if compile and cuda else (lambda: None)

    checker = StopChecker(tokenizer, stops, B) if stops else None
    checked = 0  # steps whose tokens the stop checker has seen
    finish_every = stop_check_interval if cuda else 1
    sampler = params if mixer is None else mixer  # mixer: one fused mix_and_sample call

    def check_stops(upto: int) -> None:
        nonlocal checked
        if checker is None or upto == checked:
            return
        chunk = seq[:, L + checked: L + upto].tolist()  # one transfer for the whole batch
        hits = checker.update(chunk, lengths.tolist())
        checked = upto
        if hits:
            finished[torch.tensor(hits, device=device)] = True

    from tqdm.auto import tqdm

    bar = tqdm(total=T, desc="generate", unit="step", disable=not progress, leave=False)
    t1 = time.perf_counter()
    steps = 0
    for step in range(T):
        logits = logits.float()
        if entropies is not None:
            entropies[:, step] = _entropy(logits)
        if processors:
            state.step = step
            ids = seq[:, : L + step]
            for proc in processors:
                logits = proc(ids, logits, state)
        tokens, lp = sampler.sample(logits, generator)
        got = tokens >= 0  # -1: no finite logit left
        emit = got & ~finished
        aborted |= ~got & ~finished
        tokens = torch.where(emit, tokens, pad_id)  # finished rows are fed padding, as generate does
        seq[:, L + step] = tokens
        logprobs[:, step] = torch.where(emit, lp, 0.0)
        lengths += emit
        finished |= ~got
        if eos_t is not None:
            finished |= torch.isin(tokens, eos_t)
        steps = step + 1
        bar.update(1)
        if steps == T:
            break
        if checker is not None and steps - checked >= stop_check_interval:
            check_stops(steps)
        if steps % finish_every == 0 and bool(finished.all()):  # the host sync, every few steps
            break
        mark_step()
        logits = step_fn(tokens, position, mask if use_static else mask[:, : L + steps])
        position += 1
        if mixer is not None:
            mixer.advance(tokens)
    check_stops(steps)
    bar.close()

    # -- back to the host, once ---------------------------------------------------------------
    lens = lengths.tolist()
    if checker is not None:
        for row, cut in checker.cut.items():
            lens[row] = min(lens[row], cut)
    gen = seq[:, L: L + steps].tolist()
    lp_host = logprobs[:, :steps].tolist()
    ent_host = entropies[:, :steps].tolist() if entropies is not None else None
    aborted_host = aborted.tolist()
    decode_s = time.perf_counter() - t1

    eos_set = set(eos)
    token_ids, reasons, texts = [], [], []
    for b in range(B):
        toks = gen[b][: lens[b]]
        token_ids.append(toks)
        if checker is not None and b in checker.cut:
            reasons.append("stop")
        elif aborted_host[b]:
            reasons.append("abort")
        elif toks and toks[-1] in eos_set:
            reasons.append("eos")
        else:
            reasons.append("length")
        if tokenizer is None:
            texts.append("")
        else:
            text = tokenizer.decode(toks, skip_special_tokens=True)
            texts.append(trim_text(text, stops) if reasons[-1] == "stop" else text)
    return GenerationResult(
        texts=texts,
        token_ids=token_ids,
        logprobs=[lp_host[b][: lens[b]] for b in range(B)],
        finish_reasons=reasons,
        prompt_indices=[p for p in range(P) for _ in range(n)],
        prompt_token_ids=prompt_ids,
        entropies=[ent_host[b][: lens[b]] for b in range(B)] if ent_host is not None else None,
        n=n,
        prefill_s=prefill_s,
        decode_s=decode_s,
        steps=steps,
        extras={"cache": "static" if use_static else "dynamic", "compiled": bool(compile)},
        braking=braking_reports(braking, token_ids, eos_set) if braking is not None else None,
    )
