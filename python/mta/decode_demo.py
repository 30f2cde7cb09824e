"""A short real decode: SmolLM2-135M-Instruct through :func:`mta.generate`.

A few chat prompts are batched with left padding; each prompt has its own sampling
parameters (greedy, top-k + top-p, min-p, ...), which reach :func:`mta_kernels.sample` as
per-row [B] tensors, so one call samples the whole batch each step. The greedy row is
checked against ``model.generate(do_sample=False)`` on the same prompt alone (unpadded).

Run it with ``mta demo`` (after the benchmark table) or ``python -m mta.decode_demo``.
"""

from __future__ import annotations

import argparse
import time

import torch

from mta.generation.engine import generate
from mta.generation.result import GenerationResult

__all__ = ["DEMO_PROMPTS", "DEMO_PARAMS", "greedy_matches_generate", "run_demo", "main"]

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
) -> GenerationResult:
    """Load SmolLM2-135M-Instruct, decode :data:`DEMO_PROMPTS` and print what happened."""
    from mta.models import load_smollm2

    t0 = time.perf_counter()
    model, tokenizer = load_smollm2(device=device, dtype=dtype)
    load_s = time.perf_counter() - t0
    print(f"SmolLM2-135M-Instruct on {device} ({str(dtype).replace('torch.', '')}), loaded in {load_s:.1f} s")

    res = generate(
        model, tokenizer, DEMO_PROMPTS, chat_template=True, max_new_tokens=max_new_tokens, seed=seed,
        return_entropy=True, progress=progress,
        **{key: [p[key] for p in DEMO_PARAMS] for key in ("temperature", "top_k", "top_p", "min_p")},
    )
    width = max(len(p) for p in res.prompt_token_ids)
    print(f"{len(DEMO_PROMPTS)} prompts, left-padded to {width} tokens; per-prompt sampling parameters, seed {seed}\n")
    for b, (prompt, params) in enumerate(zip(DEMO_PROMPTS, DEMO_PARAMS)):
        print(
            f"[row {b}] {describe(params)} | {len(res.token_ids[b])} tokens ({res.finish_reasons[b]}) | "
            f"mean logprob {_mean(res.logprobs[b]):.3f} (sampled dist) | mean model entropy "
            f"{_mean(res.entropies[b]):.3f} nats"
        )
        print(f"  user: {prompt}")
        print("  assistant: " + res.texts[b].strip().replace("\n", "\n             "))
    print(
        f"\n{res.num_tokens} tokens in {res.prefill_s + res.decode_s:.2f} s "
        f"(prefill {res.prefill_s * 1e3:.0f} ms, {res.steps} decode steps in {res.decode_s:.2f} s): "
        f"{res.tokens_per_s:.1f} tokens/s"
    )
    if verify:
        greedy = [b for b, p in enumerate(DEMO_PARAMS) if p["temperature"] == 0]
        for b in greedy:
            ok, ref = greedy_matches_generate(model, res.prompt_token_ids[b], res.token_ids[b], max_new_tokens)
            verdict = "OK" if ok else "MISMATCH"
            detail = f"{len(ref)} tokens identical" if ok else f"ours {res.token_ids[b]} vs generate {ref}"
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
    return 0 if res.num_tokens else 1


if __name__ == "__main__":
    raise SystemExit(main())
