"""A short real decode: SmolLM2-135M-Instruct, a KV-cached loop, ``mk.sample`` every step.

A few chat prompts are batched with left padding; each row has its own sampling parameters
(greedy, top-k + top-p, min-p, ...), passed to :func:`mta_kernels.sample` as per-row [B]
tensors, so one call samples the whole batch. The greedy row is checked against
``model.generate(do_sample=False)`` on the same prompt alone (unpadded).

This is a demo of the ops in a real loop, kept lean: it checks for finished rows on the host
each step. The generation engine (``mta.generate``) is the full version.

Run it with ``mta demo`` (after the benchmark table) or ``python -m mta.decode_demo``.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field

import torch

import mta_kernels as mk

__all__ = ["DEMO_PROMPTS", "DEMO_PARAMS", "DecodeResult", "decode", "greedy_matches_generate", "run_demo", "main"]

# Row 0 (greedy) has the shortest prompt, so it is left-padded: the check against an unpadded
# model.generate also checks the padding mask and position ids.
DEMO_PROMPTS = [
    "List three fruits.",
    "Write a short poem about the sea at night.",
    "Give me two tips for learning a new programming language.",
    "Explain in two sentences why the sky is blue.",
]
DEMO_PARAMS = [
    dict(temperature=0.0, top_k=0, top_p=1.0, min_p=0.0),
    dict(temperature=0.7, top_k=50, top_p=0.9, min_p=0.0),
    dict(temperature=1.0, top_k=0, top_p=1.0, min_p=0.1),
    dict(temperature=0.9, top_k=0, top_p=0.95, min_p=0.05),
]


def describe(params: dict) -> str:
    """``T=0.7 top_k=50 top_p=0.9``: the parameters that are on; ``greedy`` for T = 0."""
    if params["temperature"] == 0:
        return "greedy (T=0)"
    parts = [f"T={params['temperature']:g}"]
    if params["top_k"] > 0:
        parts.append(f"top_k={params['top_k']}")
    if params["top_p"] < 1:
        parts.append(f"top_p={params['top_p']:g}")
    if params["min_p"] > 0:
        parts.append(f"min_p={params['min_p']:g}")
    return " ".join(parts)


@dataclass
class DecodeResult:
    """What :func:`decode` produced, per row and overall."""

    prompt_ids: list[list[int]]  # each row's prompt, without padding
    tokens: list[list[int]]  # generated tokens, up to and including EOS
    logprobs: list[list[float]]  # under the processed (filtered) distribution; 0 for greedy
    model_logprobs: list[list[float]]  # under the model's raw softmax (T = 1, no filters)
    hit_eos: list[bool]
    prefill_s: float
    decode_s: float
    steps: int
    texts: list[str] = field(default_factory=list)

    @property
    def total_tokens(self) -> int:
        return sum(len(t) for t in self.tokens)

    @property
    def tokens_per_s(self) -> float:
        return self.total_tokens / max(self.prefill_s + self.decode_s, 1e-9)


def _eos_ids(model, tokenizer) -> list[int]:
    eos = model.generation_config.eos_token_id
    if eos is None:
        eos = tokenizer.eos_token_id
    return [eos] if isinstance(eos, int) else list(eos)


def _per_row(params: list[dict], device) -> tuple[torch.Tensor, ...]:
    return (
        torch.tensor([p["temperature"] for p in params], dtype=torch.float32, device=device),
        torch.tensor([p["top_k"] for p in params], dtype=torch.int64, device=device),
        torch.tensor([p["top_p"] for p in params], dtype=torch.float32, device=device),
        torch.tensor([p["min_p"] for p in params], dtype=torch.float32, device=device),
    )


@torch.inference_mode()
def decode(
    model,
    tokenizer,
    prompts: list[str],
    params: list[dict],
    *,
    max_new_tokens: int = 48,
    seed: int = 0,
    progress: bool = True,
) -> DecodeResult:
    """Chat-template ``prompts``, left-pad them into one batch and decode with ``mk.sample``.

    Parameters
    ----------
    model, tokenizer
        A transformers causal LM and its tokenizer (with a chat template).
    prompts : list of str
        User messages, one per row.
    params : list of dict
        Per row: ``temperature``, ``top_k``, ``top_p``, ``min_p``.
    max_new_tokens : int
        Tokens per row at most; a row stops at its first EOS token.
    seed : int
        Seed of the ``torch.Generator`` that every ``mk.sample`` call draws from.
    progress : bool
        Show a tqdm bar.
    """
    if len(prompts) != len(params):
        raise ValueError(f"{len(prompts)} prompts but {len(params)} parameter sets")
    device = model.device
    texts = [
        tokenizer.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True, tokenize=False)
        for p in prompts
    ]
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    try:
        enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
    finally:
        tokenizer.padding_side = side
    input_ids, mask = enc["input_ids"], enc["attention_mask"]
    B = input_ids.shape[0]
    eos = torch.tensor(_eos_ids(model, tokenizer), device=device)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else int(eos[0])
    temperature, top_k, top_p, min_p = _per_row(params, device)
    generator = torch.Generator(device).manual_seed(seed)

    # Under left padding a row's positions count its real tokens only (as generate does).
    positions = (mask.long().cumsum(-1) - 1).masked_fill_(mask == 0, 1)
    next_pos = positions[:, -1:] + 1

    tokens = torch.full((B, max_new_tokens), pad_id, dtype=torch.int64, device=device)
    logprobs = torch.zeros(B, max_new_tokens, dtype=torch.float32, device=device)
    model_logprobs = torch.zeros(B, max_new_tokens, dtype=torch.float32, device=device)
    lengths = torch.zeros(B, dtype=torch.int64, device=device)
    finished = torch.zeros(B, dtype=torch.bool, device=device)

    t0 = time.perf_counter()
    out = model(input_ids=input_ids, attention_mask=mask, position_ids=positions, use_cache=True, logits_to_keep=1)
    prefill_s = time.perf_counter() - t0

    from tqdm.auto import tqdm

    bar = tqdm(total=max_new_tokens, desc="decode", unit="step", disable=not progress, leave=False)
    t1 = time.perf_counter()
    steps = 0
    for step in range(max_new_tokens):
        logits = out.logits[:, -1, :]
        tok, lp = mk.sample(logits, temperature, top_k, top_p, min_p, generator=generator, return_logprobs=True)
        live = ~finished
        tok = torch.where(live, tok, pad_id)  # finished rows are fed padding, as generate does
        tokens[:, step] = tok
        logprobs[:, step] = torch.where(live, lp, 0.0)
        model_lp = torch.log_softmax(logits.float(), dim=-1).gather(1, tok.unsqueeze(1)).squeeze(1)
        model_logprobs[:, step] = torch.where(live, model_lp, 0.0)
        lengths += live
        finished |= torch.isin(tok, eos)
        steps = step + 1
        bar.update(1)
        if bool(finished.all()) or steps == max_new_tokens:  # host sync: fine for a CPU demo
            break
        mask = torch.cat([mask, mask.new_ones(B, 1)], dim=1)
        out = model(
            input_ids=tok.unsqueeze(1),
            attention_mask=mask,
            position_ids=next_pos,
            past_key_values=out.past_key_values,
            use_cache=True,
        )
        next_pos = next_pos + 1
    decode_s = time.perf_counter() - t1
    bar.close()

    lens = lengths.tolist()
    row_tokens = [tokens[b, : lens[b]].tolist() for b in range(B)]
    eos_set = set(eos.tolist())
    return DecodeResult(
        prompt_ids=[input_ids[b][mask[b, : input_ids.shape[1]].bool()].tolist() for b in range(B)],
        tokens=row_tokens,
        logprobs=[logprobs[b, : lens[b]].tolist() for b in range(B)],
        model_logprobs=[model_logprobs[b, : lens[b]].tolist() for b in range(B)],
        hit_eos=[bool(t) and t[-1] in eos_set for t in row_tokens],
        prefill_s=prefill_s,
        decode_s=decode_s,
        steps=steps,
        texts=[tokenizer.decode(t, skip_special_tokens=True) for t in row_tokens],
    )


@torch.inference_mode()
def greedy_matches_generate(model, prompt_ids: list[int], tokens: list[int], max_new_tokens: int) -> tuple[bool, list[int]]:
    """Run ``model.generate(do_sample=False)`` on one unpadded prompt; compare with ``tokens``."""
    ids = torch.tensor([prompt_ids], device=model.device)
    out = model.generate(
        input_ids=ids,
        attention_mask=torch.ones_like(ids),
        do_sample=False,
        max_new_tokens=max_new_tokens,
        pad_token_id=model.generation_config.pad_token_id or model.generation_config.eos_token_id,
    )
    ref = out[0, ids.shape[1]:].tolist()
    return ref == tokens, ref


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else float("nan")


def run_demo(
    *,
    device: str = "cpu",
    dtype: torch.dtype = torch.float32,
    max_new_tokens: int = 48,
    seed: int = 0,
    verify: bool = True,
    progress: bool = True,
) -> DecodeResult:
    """Load SmolLM2-135M-Instruct, decode :data:`DEMO_PROMPTS` and print what happened."""
    from mta.models import load_smollm2

    t0 = time.perf_counter()
    model, tokenizer = load_smollm2(device=device, dtype=dtype)
    load_s = time.perf_counter() - t0
    print(f"SmolLM2-135M-Instruct on {device} ({str(dtype).replace('torch.', '')}), loaded in {load_s:.1f} s")

    res = decode(
        model, tokenizer, DEMO_PROMPTS, DEMO_PARAMS, max_new_tokens=max_new_tokens, seed=seed, progress=progress
    )
    width = max(len(p) for p in res.prompt_ids)
    print(f"{len(DEMO_PROMPTS)} prompts, left-padded to {width} tokens; mk.sample with per-row parameters, seed {seed}\n")
    for b, (prompt, params) in enumerate(zip(DEMO_PROMPTS, DEMO_PARAMS)):
        n = len(res.tokens[b])
        stop = "EOS" if res.hit_eos[b] else "max tokens"
        print(
            f"[row {b}] {describe(params)} | {n} tokens ({stop}) | mean logprob {_mean(res.logprobs[b]):.3f} "
            f"(sampled dist), {_mean(res.model_logprobs[b]):.3f} (model)"
        )
        print(f"  user: {prompt}")
        print("  assistant: " + res.texts[b].strip().replace("\n", "\n             "))
    print(
        f"\n{res.total_tokens} tokens in {res.prefill_s + res.decode_s:.2f} s "
        f"(prefill {res.prefill_s * 1e3:.0f} ms, {res.steps} decode steps in {res.decode_s:.2f} s): "
        f"{res.tokens_per_s:.1f} tokens/s"
    )
    if verify:
        greedy = [b for b, p in enumerate(DEMO_PARAMS) if p["temperature"] == 0]
        for b in greedy:
            ok, ref = greedy_matches_generate(model, res.prompt_ids[b], res.tokens[b], max_new_tokens)
            verdict = "OK" if ok else "MISMATCH"
            detail = f"{len(ref)} tokens identical" if ok else f"ours {res.tokens[b]} vs generate {ref}"
            print(f"greedy row {b} vs model.generate(do_sample=False): {verdict} ({detail})")
    return res


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mta.decode_demo", description=__doc__.splitlines()[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    return run_from_args(args)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The decode demo's options (shared with ``mta demo``)."""
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--max-new-tokens", type=int, default=48, help="tokens per row at most (default 48)")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    parser.add_argument("--no-verify", action="store_true", help="skip the check against model.generate")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run_from_args(args: argparse.Namespace) -> int:
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    res = run_demo(
        device=device,
        dtype=getattr(torch, args.dtype),
        max_new_tokens=args.max_new_tokens,
        seed=args.seed,
        verify=not args.no_verify,
        progress=not args.no_progress,
    )
    return 0 if res.total_tokens else 1


if __name__ == "__main__":
    raise SystemExit(main())
