"""Weak-to-Strong Decoding (arXiv 2506.07434), batched and across tokenizers.

A small aligned *drafter* writes the opening of each answer; the *base* model takes over
where it has become confident in the draft: the first window of ``w`` draft tokens whose
geometric-mean probability under the base model reaches ``γ`` (the paper: w = 6, γ = 0.8).
Done for a whole batch in three batched phases, none of them per row:

1. **draft** — the drafter drafts greedily, up to ``max_draft_tokens``, with
   :func:`mta.generate`;
2. **score** — each draft is decoded to text and re-encoded by the base tokenizer; the base
   model scores every draft teacher-forced in one left-padded forward pass
   (:func:`mta.wsd.scoring.score_drafts`) and :func:`mta_kernels.wsd_switch_point` picks each
   row's cut, in base tokens;
3. **continue** — the base model continues from ``its prompt + the kept draft tokens``
   (token-id prompts to :func:`mta.generate`), for the rows that switched and the drafts
   that ran out of length.

Drafting whole drafts before scoring costs the drafter tokens past the switch point (the
paper's token-by-token hand-over does not write them), and buys batching: per-row, step by
step hand-over cannot batch rows that switch at different steps.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from numbers import Integral, Real

import torch

import mta_kernels as mk
from mta.generation.engine import generate
from mta.generation.params import sampling_params
from mta.prompts import encode_prompts
from mta.wsd.handover import drafter_tokens_covering, encode_drafts, join_texts
from mta.wsd.result import WSDResult, WSDRow
from mta.wsd.scoring import score_drafts
from mta_kernels._validation import check_int

__all__ = ["WINDOW", "GAMMA", "MAX_DRAFT_TOKENS", "weak_to_strong_decode"]

#: The paper's settings.
WINDOW, GAMMA, MAX_DRAFT_TOKENS = 6, 0.8, 512


def _check_prompts(prompts: object, name: str) -> list:
    if isinstance(prompts, (str, bytes)) or not isinstance(prompts, Sequence):
        raise TypeError(f"{name} must be a list of str or chat-message lists, got {type(prompts).__name__}")
    if len(prompts) == 0:
        raise ValueError(f"{name} is empty: pass at least one prompt")
    for i, prompt in enumerate(prompts):
        if isinstance(prompt, str):
            if not prompt.strip():
                raise ValueError(f"{name}[{i}] is empty: every prompt needs text")
        elif isinstance(prompt, (list, tuple)) and prompt and all(isinstance(m, dict) for m in prompt):
            continue
        elif isinstance(prompt, (list, tuple)) and len(prompt) == 0:
            raise ValueError(f"{name}[{i}] is empty: every prompt needs text")
        else:
            raise TypeError(
                f"{name}[{i}] must be a str or a list of chat messages, got {type(prompt).__name__}: WSD carries "
                "text between two tokenizers, so token ids of one mean nothing to the other"
            )
    return list(prompts)


def _check_gamma(gamma: object) -> float:
    if isinstance(gamma, bool) or not isinstance(gamma, Real) or not (gamma > 0 and math.isfinite(gamma)):
        raise ValueError(f"gamma must be a finite number > 0 (above 1 the base model never takes over), got {gamma!r}")
    return float(gamma)


def _rows_of(value, rows: list[int]):
    """A sampling parameter for the continued rows: a scalar as is, one value per prompt subset."""
    if isinstance(value, torch.Tensor) and value.dim() == 1:
        return value[torch.tensor(rows, dtype=torch.int64, device=value.device)]
    if isinstance(value, (list, tuple)):
        return [value[i] for i in rows]
    return value


def _switch_points(logprobs: list[list[float]], window: int, gamma: float) -> tuple[list[int], list[bool]]:
    """Each row's cut (base tokens kept) and whether a window reached ``gamma``.

    ``mk.wsd_switch_point`` returns the draft length both when the last window reaches
    ``gamma`` and when none does; one ``-inf`` column after each draft (a window holding it
    never reaches ``gamma``) tells the two apart in the same call: a row whose answer is its
    extended length ``L + 1`` never switched.
    """
    lengths = [len(lp) for lp in logprobs]
    table = torch.full((len(logprobs), max(lengths) + 1), -math.inf, dtype=torch.float32)
    for b, lp in enumerate(logprobs):
        table[b, : len(lp)] = torch.tensor(lp, dtype=torch.float32)
    extended = torch.tensor(lengths, dtype=torch.int64) + 1
    cut = mk.wsd_switch_point(table, extended, window=window, gamma=gamma).tolist()
    switched = [c <= n for c, n in zip(cut, lengths)]
    return [min(c, n) for c, n in zip(cut, lengths)], switched


def weak_to_strong_decode(
    drafter,
    drafter_tokenizer,
    base,
    base_tokenizer,
    prompts: Sequence,
    *,
    base_prompts: Sequence | None = None,
    draft_chat_template: bool = True,
    base_chat_template: bool = False,
    window: int = WINDOW,
    gamma: float = GAMMA,
    max_draft_tokens: int = MAX_DRAFT_TOKENS,
    max_new_tokens: int = 512,
    draft_stop: str | Sequence[str] | None = None,
    stop: str | Sequence[str] | None = None,
    temperature=0.0,
    top_k=0,
    top_p=1.0,
    min_p=0.0,
    seed: int | None = None,
    progress: bool = True,
) -> WSDResult:
    """Weak-to-Strong Decoding of a batch of prompts, drafter and base on any tokenizers.

    Parameters
    ----------
    drafter, drafter_tokenizer
        The small aligned model (e.g. SmolLM2-135M-Instruct) and its tokenizer.
    base, base_tokenizer
        The model that takes over (e.g. Gemma-3-270M base) and its tokenizer, which may
        differ from the drafter's.
    prompts : list of str or chat-message lists
        What the drafter answers (with its chat template when ``draft_chat_template``).
        Text only: token ids cannot cross tokenizers. Empty prompts are rejected.
    base_prompts : list, optional
        What the base model sees instead, one per prompt (e.g. ``"Question: ...\\nAnswer:\\n"``
        for a base model without a chat template); default ``prompts``. The draft text is
        appended to it.
    draft_chat_template, base_chat_template : bool
        Wrap plain-string prompts in that model's chat template.
    window, gamma
        The switch rule (:func:`mta_kernels.wsd_switch_point`): ``window >= 1`` tokens,
        ``gamma > 0``; above 1 no window reaches it and every draft is kept whole.
    max_draft_tokens : int
        Drafter tokens per row at most (the paper: 512); 0 lets the base model write it all.
    max_new_tokens : int
        Base tokens generated after the switch at most.
    draft_stop, stop : str or list of str, optional
        Stop strings for the drafter and for the base continuation.
    temperature, top_k, top_p, min_p : scalar, or one value per prompt
        Sampling of the base continuation (:func:`mta.generate`); greedy by default. The
        draft is always greedy.
    seed : int, optional
        Seed of the base continuation's sampler.
    progress : bool
        tqdm bars for the three phases.

    Returns
    -------
    WSDResult
        One :class:`~mta.wsd.result.WSDRow` per prompt (where it switched: draft tokens
        kept, base tokens generated; texts and tokens) and the phase timings.

    Notes
    -----
    A draft is continued by the base model when a window reached ``gamma`` (``switched``:
    the kept prefix is the draft up to that window's end) or when it used all
    ``max_draft_tokens`` without ending; a draft that ended (EOS, stop string) with no
    window reaching ``gamma`` is the answer as it is. Greedy rows give the same result in a
    batch as alone (``tests/test_wsd.py`` checks it against a per-row reference loop).

    Examples
    --------
    >>> from mta.models import load_smollm2, load_gemma3_270m              # doctest: +SKIP
    >>> drafter, dtok = load_smollm2(); base, btok = load_gemma3_270m()     # doctest: +SKIP
    >>> out = weak_to_strong_decode(drafter, dtok, base, btok, ["What is 12 * 7?"],
    ...                             base_prompts=["Question: What is 12 * 7?\\nAnswer:\\n"])  # doctest: +SKIP
    >>> out.rows[0].switch_point, out.rows[0].base_tokens, out.rows[0].text  # doctest: +SKIP
    """
    start = time.perf_counter()
    prompts = _check_prompts(prompts, "prompts")
    base_prompts = prompts if base_prompts is None else _check_prompts(base_prompts, "base_prompts")
    if len(base_prompts) != len(prompts):
        raise ValueError(f"base_prompts has {len(base_prompts)} prompts but prompts has {len(prompts)}")
    for name, tok in (("drafter_tokenizer", drafter_tokenizer), ("base_tokenizer", base_tokenizer)):
        if tok is None:
            raise TypeError(f"{name} is required: WSD carries the draft between the models as text")
    if isinstance(window, bool) or not isinstance(window, Integral) or window < 1:
        raise ValueError(f"window must be an int >= 1, got {window!r}")
    gamma = _check_gamma(gamma)
    max_draft_tokens = check_int(max_draft_tokens, "max_draft_tokens", lo=0)
    max_new_tokens = check_int(max_new_tokens, "max_new_tokens", lo=0)
    # Checked now, not after minutes of drafting.
    sampling_params(len(prompts), 1, torch.device("cpu"), temperature=temperature, top_k=top_k, top_p=top_p,
                    min_p=min_p)
    base_prompt_ids = encode_prompts(
        base_prompts, base_tokenizer, chat_template=base_chat_template, add_special_tokens=None,
        vocab_size=getattr(base.config.get_text_config(), "vocab_size", None),
    )

    stops = [stop] if isinstance(stop, str) else list(stop or [])

    # 1. Draft, greedily, the whole batch at once.
    t0 = time.perf_counter()
    draft = generate(drafter, drafter_tokenizer, prompts, max_new_tokens=max_draft_tokens, temperature=0.0,
                     chat_template=draft_chat_template, stop=draft_stop, progress=progress)
    draft_s = time.perf_counter() - t0

    # 2. Score the drafts in the base model's tokens, one pass; cut each row.
    t0 = time.perf_counter()
    draft_base = encode_drafts(base_tokenizer, draft.texts)
    pad_id = base_tokenizer.pad_token_id if base_tokenizer.pad_token_id is not None else 0
    logprobs = score_drafts(base, base_prompt_ids, draft_base, pad_id=pad_id, progress=progress)
    cuts, switched = _switch_points(logprobs, int(window), gamma)
    score_s = time.perf_counter() - t0

    # 3. The base model continues the rows that switched or whose draft ran out of length.
    t0 = time.perf_counter()
    continued = [b for b in range(len(prompts))
                 if max_new_tokens > 0 and (switched[b] or draft.finish_reasons[b] == "length")]
    base_ids: dict[int, list[int]] = {}
    base_finish: dict[int, str] = {}
    if continued:
        cont = generate(
            base, base_tokenizer, [base_prompt_ids[b] + draft_base[b][: cuts[b]] for b in continued],
            max_new_tokens=max_new_tokens, stop=stop, seed=seed, progress=progress,
            **{name: _rows_of(value, continued) for name, value in
               (("temperature", temperature), ("top_k", top_k), ("top_p", top_p), ("min_p", min_p))},
        )
        for i, b in enumerate(continued):
            base_ids[b], base_finish[b] = cont.token_ids[i], cont.finish_reasons[i]
    continue_s = time.perf_counter() - t0

    rows = []
    for b in range(len(prompts)):
        kept_ids = draft_base[b][: cuts[b]]
        text, kept_text, base_text = join_texts(base_tokenizer, kept_ids, base_ids.get(b, []), stops)
        whole = cuts[b] == len(draft_base[b])
        rows.append(WSDRow(
            index=b, text=text, draft_text=draft.texts[b], draft_token_ids=draft.token_ids[b],
            draft_finish=draft.finish_reasons[b], draft_base_token_ids=draft_base[b],
            draft_base_logprobs=logprobs[b], switch_point=cuts[b], switched=switched[b], kept_text=kept_text,
            kept_draft_tokens=len(draft.token_ids[b]) if whole else drafter_tokens_covering(
                drafter_tokenizer, draft.token_ids[b], kept_text),
            base_token_ids=base_ids.get(b, []), base_text=base_text, base_finish=base_finish.get(b),
        ))
    params = {"window": int(window), "gamma": gamma, "max_draft_tokens": max_draft_tokens,
              "max_new_tokens": max_new_tokens}
    return WSDResult(rows, draft_s=draft_s, score_s=score_s, continue_s=continue_s,
                     total_s=time.perf_counter() - start, params=params)
