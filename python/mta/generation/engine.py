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

import time
from collections.abc import Sequence

import torch

from mta.generation.braking import braking_reports
from mta.generation.compaction import check_compaction, compact, full_batch_update, restore_rows
from mta.generation.plan import GenerationPlan, LogitsProcessor, make_plan
from mta.generation.result import GenerationResult
from mta.generation.sampler import DecodeSampler, ParamSchedule, PlainSampler, SamplerFactory, ScheduledSampler
from mta.generation.stops import StopChecker, trim_text
from mta.prompts import EncodedPrompts, left_pad
from mta_kernels.integrations.transformers import BrakingLogitsProcessor

__all__ = ["DecodeState", "GenerationResult", "generate"]


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
    mixing: SamplerFactory | None = None,
    schedule: ParamSchedule | None = None,
    return_entropy: bool = False,
    chat_template: bool = False,
    add_special_tokens: bool | None = None,
    cache: str = "auto",
    compile: bool = False,
    progress: bool = True,
    compact_every: int = 0,
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
    schedule : mta.generation.sampler.ParamSchedule, optional
        Per-step ``[B]`` parameters from the step, its logits and per-row state, read by the
        same fused sampler call, no host sync (:mod:`mta.inference.schedules`); the values
        used are in ``result.extras["schedule"]``. Not with ``mixing``.
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
    compact_every : int
        Every this many steps drop the finished rows from the batch (their cache rows
        included; one host sync each time), so samples that end early stop costing compute
        (:mod:`mta.generation.compaction`). 0 (default): off. The result is the same;
        not with ``mixing``, ``braking``, stateful processors or ``compile``.

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
    plan = make_plan(
        model, tokenizer, prompts, n=n, max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k,
        top_p=top_p, min_p=min_p, generator=generator, seed=seed, eos_token_id=eos_token_id, stop=stop,
        stop_check_interval=stop_check_interval, logits_processors=logits_processors, braking=braking,
        mixing=mixing, return_entropy=return_entropy, chat_template=chat_template,
        add_special_tokens=add_special_tokens, cache=cache, compile=compile, progress=progress, schedule=schedule,
    )
    sampler = _start_sampler(model, tokenizer, plan)
    compact_every = check_compaction(compact_every, plan, sampler, logits_processors)
    if plan.max_new_tokens == 0:
        return _empty_result(plan)
    return _decode(model, tokenizer, plan, sampler, compact_every)


def _start_sampler(model, tokenizer, plan: GenerationPlan) -> DecodeSampler:
    """The plain fused sampler (scheduled with ``schedule``), or the one ``mixing`` starts
    (which checks its own prompts)."""
    if plan.schedule is not None:
        return ScheduledSampler(plan.params, plan.batch_size, model.device, plan.schedule, plan.max_new_tokens)
    if plan.mixing is None:
        return PlainSampler(plan.params, plan.batch_size, model.device)
    return plan.mixing.start(model, tokenizer, plan.prompt_ids, n=plan.n, params=plan.params,
                             chat_template=plan.chat_template, add_special_tokens=plan.add_special_tokens)


def _empty_result(plan: GenerationPlan) -> GenerationResult:
    B = plan.batch_size
    return GenerationResult(
        texts=[""] * B, token_ids=[[] for _ in range(B)], logprobs=[[] for _ in range(B)],
        finish_reasons=["length"] * B, prompt_indices=plan.prompt_indices, prompt_token_ids=plan.prompt_ids,
        entropies=[[] for _ in range(B)] if plan.return_entropy else None, n=plan.n,
        braking=braking_reports(plan.braking, [[] for _ in range(B)], set(plan.eos)) if plan.braking else None,
    )


def _wants_static_cache(model, plan: GenerationPlan) -> bool:
    use_static = plan.cache == "static" or plan.compile or (plan.cache == "auto" and model.device.type == "cuda")
    if use_static and not _supports_static_cache(model):
        if plan.cache == "static" or plan.compile:
            raise ValueError(f"cache='static' / compile=True: {type(model).__name__} does not support a StaticCache")
        use_static = False
    return use_static


def _prefill(model, enc: EncodedPrompts, n: int):
    """One forward pass over the left-padded prompts; the cache and the last logits repeated
    for the ``n`` samples of each prompt. Returns ``(DynamicCache, logits [P * n, V])``."""
    from transformers import DynamicCache

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
    return kv, logits


def _decode_cache(model, kv, plan: GenerationPlan, max_cache_len: int, use_static: bool):
    """The cache the loop decodes with: the prefill's ``DynamicCache``, or a ``StaticCache``
    holding it (fixed shapes, so the step can be compiled). Returns ``(cache, is_static)``."""
    if not use_static:
        return kv, False
    static = _static_from_dynamic(model, kv, max_cache_len)
    if static is None and (plan.cache == "static" or plan.compile):
        raise ValueError(f"cache='static' / compile=True: {type(model).__name__} has sliding-window layers")
    return (static, True) if static is not None else (kv, False)


class _Rows:
    """The loop's per-row tensors, all on the device: nothing here is read by the host per step."""

    def __init__(self, enc: EncodedPrompts, plan: GenerationPlan, device: torch.device):
        n, T = plan.n, plan.max_new_tokens
        P, L = enc.input_ids.shape
        B = P * n
        expand = (lambda t: t.repeat_interleave(n, dim=0)) if n > 1 else (lambda t: t)
        self.seq = torch.full((B, L + T), plan.pad_id, dtype=torch.int64, device=device)
        self.seq[:, :L] = expand(enc.input_ids)
        self.mask = torch.ones((B, L + T), dtype=torch.int64, device=device)
        self.mask[:, :L] = expand(enc.attention_mask)
        self.prompt_lengths = expand(enc.attention_mask.sum(-1))
        self.position = self.prompt_lengths.unsqueeze(1).clone()  # [B, 1]: position of the next token fed
        self.logprobs = torch.zeros((B, T), dtype=torch.float32, device=device)
        self.entropies = torch.zeros((B, T), dtype=torch.float32, device=device) if plan.return_entropy else None
        self.lengths = torch.zeros(B, dtype=torch.int64, device=device)
        self.finished = torch.zeros(B, dtype=torch.bool, device=device)
        self.aborted = torch.zeros(B, dtype=torch.bool, device=device)
        self.eos = torch.tensor(plan.eos, dtype=torch.int64, device=device) if plan.eos else None
        self.state = DecodeState(0, L, self.prompt_lengths, torch.arange(P, device=device).repeat_interleave(n),
                                 self.finished, n)
        self.index: torch.Tensor | None = None  # once compacted: each row's original row (compaction.py)
        self.full: dict[str, torch.Tensor] = {}  # once compacted: the full-size result tensors

    def record(self, step: int, tokens: torch.Tensor, logprobs: torch.Tensor, pad_id: int) -> torch.Tensor:
        """Store this step's draws; finished rows get padding (fed to the model, as generate does)."""
        L = self.state.prompt_width
        got = tokens >= 0  # -1: no finite logit left
        emit = got & ~self.finished
        self.aborted |= ~got & ~self.finished
        tokens = torch.where(emit, tokens, pad_id)
        self.seq[:, L + step] = tokens
        self.logprobs[:, step] = torch.where(emit, logprobs, 0.0)
        self.lengths += emit
        self.finished |= ~got
        if self.eos is not None:
            self.finished |= torch.isin(tokens, self.eos)
        return tokens


def _decode(model, tokenizer, plan: GenerationPlan, sampler: DecodeSampler, compact_every: int = 0) -> GenerationResult:
    device = model.device
    cuda = device.type == "cuda"
    enc = left_pad(plan.prompt_ids, plan.pad_id, device)
    L, T = enc.input_ids.shape[1], plan.max_new_tokens
    use_static = _wants_static_cache(model, plan)

    t0 = time.perf_counter()
    kv, logits = _prefill(model, enc, plan.n)
    sampler.prefill(logits)  # e.g. the mixing models' own prompts, each with its own cache
    kv, use_static = _decode_cache(model, kv, plan, L + T, use_static)
    if cuda:
        torch.cuda.synchronize(device)  # for the prefill timing only (once per call)
    prefill_s = time.perf_counter() - t0

    rows = _Rows(enc, plan, device)
    t1 = time.perf_counter()
    steps, checker = _loop(model, tokenizer, plan, sampler, kv, use_static, rows, logits, compact_every)
    restore_rows(rows)
    result = _collect(tokenizer, plan, rows, steps, checker, t1)
    result.prefill_s = prefill_s
    result.extras = {"cache": "static" if use_static else "dynamic", "compiled": bool(plan.compile)}
    if isinstance(sampler, ScheduledSampler):
        result.extras["schedule"] = sampler.trace()
    return result


def _loop(model, tokenizer, plan: GenerationPlan, sampler: DecodeSampler, kv, use_static: bool, rows: _Rows,
          logits: torch.Tensor, compact_every: int = 0) -> tuple[int, StopChecker | None]:
    """The decode loop: one forward pass and one sampler call per step, host checks every
    ``stop_check_interval`` steps, finished rows dropped every ``compact_every`` steps (0:
    never). Returns the steps run and the stop checker."""
    device = model.device
    cuda = device.type == "cuda"
    L, T = rows.state.prompt_width, plan.max_new_tokens

    def forward(tokens: torch.Tensor, position: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        out = model(
            input_ids=tokens.unsqueeze(1), position_ids=position, attention_mask=attention_mask,
            past_key_values=kv, use_cache=True,
        )
        return out.logits[:, -1, :]

    step_fn = forward
    if plan.compile:
        step_fn = torch.compile(forward, mode="reduce-overhead" if cuda else None, dynamic=False, fullgraph=False)
    mark_step = torch.compiler.cudagraph_mark_step_begin if plan.compile and cuda else (lambda: None)

    checker = StopChecker(tokenizer, plan.stops, plan.batch_size) if plan.stops else None
    checked = 0  # steps whose tokens the stop checker has seen
    finish_every = plan.stop_check_interval if cuda else 1
    to_fp32 = plan.wants_fp32_logits()
    braking = plan.braking.call_with_state if plan.braking is not None else None

    def check_stops(upto: int) -> None:
        nonlocal checked
        if checker is None or upto == checked:
            return
        chunk = rows.seq[:, L + checked: L + upto].tolist()  # one transfer for the whole batch
        if rows.index is None:
            hits = checker.update(chunk, rows.lengths.tolist())
        else:
            hits = full_batch_update(checker, rows.index.tolist(), chunk, rows.lengths.tolist())
        checked = upto
        if hits:
            rows.finished[torch.tensor(hits, device=device)] = True

    from mta.progress import progress_bar

    bar = progress_bar(total=T, desc="generate", unit="step", enabled=plan.progress, leave=False)
    steps = 0
    for step in range(T):
        if rows.entropies is not None:
            rows.entropies[:, step] = _entropy(logits)
        if plan.processors or braking is not None:
            rows.state.step = step
            ids = rows.seq[:, : L + step]
            if to_fp32:  # user processors see fp32, as documented; the kernels read any dtype
                logits = logits.float()
            for proc in plan.processors:
                logits = proc(ids, logits, rows.state)
            if braking is not None:  # last, so the forced brake tokens reach the sampler untouched
                logits = braking(ids, logits, rows.state)
        tokens, lp = sampler.sample(logits, plan.generator)
        tokens = rows.record(step, tokens, lp, plan.pad_id)
        steps = step + 1
        bar.update(1)
        if steps == T:
            break
        if checker is not None and steps - checked >= plan.stop_check_interval:
            check_stops(steps)
        if steps % finish_every == 0 and bool(rows.finished.all()):  # the host sync, every few steps
            break
        if compact_every and steps % compact_every == 0:
            check_stops(steps)  # a row is searched to its end before it is dropped
            tokens = compact(rows, kv, sampler, tokens)
            if tokens is None:
                break
        mark_step()
        logits = step_fn(tokens, rows.position, rows.mask if use_static else rows.mask[:, : L + steps])
        rows.position += 1
        sampler.advance(tokens)
    check_stops(steps)
    bar.close()
    return steps, checker


def _collect(tokenizer, plan: GenerationPlan, rows: _Rows, steps: int, checker: StopChecker | None,
             loop_start: float) -> GenerationResult:
    """Back to the host, once: per-sample tokens, logprobs, finish reasons and texts. The
    decode time runs from ``loop_start`` to the end of the transfers (texts excluded)."""
    L, B = rows.state.prompt_width, plan.batch_size
    lens = rows.lengths.tolist()
    if checker is not None:
        for row, cut in checker.cut.items():
            lens[row] = min(lens[row], cut)
    gen = rows.seq[:, L: L + steps].tolist()
    lp_host = rows.logprobs[:, :steps].tolist()
    ent_host = rows.entropies[:, :steps].tolist() if rows.entropies is not None else None
    aborted_host = rows.aborted.tolist()
    decode_s = time.perf_counter() - loop_start

    eos_set = set(plan.eos)
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
            texts.append(trim_text(text, plan.stops) if reasons[-1] == "stop" else text)
    return GenerationResult(
        texts=texts,
        token_ids=token_ids,
        logprobs=[lp_host[b][: lens[b]] for b in range(B)],
        finish_reasons=reasons,
        prompt_indices=plan.prompt_indices,
        prompt_token_ids=plan.prompt_ids,
        entropies=[ent_host[b][: lens[b]] for b in range(B)] if ent_host is not None else None,
        n=plan.n,
        decode_s=decode_s,
        steps=steps,
        braking=braking_reports(plan.braking, token_ids, eos_set) if plan.braking is not None else None,
    )
