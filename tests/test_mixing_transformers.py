"""Guided logits mixing with transformers models, worked examples of every recipe.

Each example is checked against a brute-force loop that runs every model without a cache on
its full sequence (own prompt + tokens so far, unpadded) and applies the recipe's formula
written out in torch:

* ``MixingLogitsProcessor`` + ``ModelLogits`` inside transformers' ``model.generate``;
* ``mta.generate(..., mixing=Mixing(...))`` (the fused path), greedy and sampled, with
  ``n > 1`` and left padding; CFG with its own unconditional prompts;
* the processor inside ``mta.generate`` (decode state passed to the sources);
* models whose vocabularies differ (300 vs 320).
"""

import math

import pytest
import torch
from transformers import LogitsProcessorList

import mta
import mta_kernels as mk
from mta.generation.engine import generate
from mta.mixing import Lockstep, Mixing, ModelLogits
from mta.models import tiny_random_model
from mta_kernels.integrations.transformers import MixingLogitsProcessor, RowHistoryError
from mta_kernels.mixing.recipes import classifier_free_guidance, contrastive_decoding, proxy_tuning, weighted_ensemble

V = 300
PROMPTS = [[0, 5, 6, 7, 8, 9, 10], [0, 20, 21]]  # different lengths: left padding
UNCOND = [[0], [0, 42, 43]]  # CFG's unconditional prompts (own lengths, own padding)
T = 6


def _tiny(arch: str, seed: int, vocab_size: int = V):
    # initializer_range 0.2: peaked enough for the plausibility cut to remove tokens, and
    # clear argmax gaps (cached and uncached fp32 forwards differ by ~1e-6).
    return tiny_random_model(arch, vocab_size=vocab_size, seed=seed, initializer_range=0.2)


@pytest.fixture(scope="module")
def models():
    return {"llama": _tiny("llama", 0), "qwen2": _tiny("qwen2", 1), "gpt2": _tiny("gpt2", 2)}


def _lp(x):
    return torch.log_softmax(x.float(), dim=-1)


def _cd(expert, amateur, beta=0.5, alpha=0.1):
    p = torch.softmax(expert.float(), -1)
    keep = p >= alpha * p.max(-1, keepdim=True).values
    return torch.where(keep, _lp(expert) - beta * _lp(amateur), -math.inf)


# name: (recipe, model names in the recipe's order, the formula on the models' logits)
CASES = {
    "proxy_tuning": (proxy_tuning(0.8), ["llama", "qwen2", "gpt2"], lambda l: l[0] + 0.8 * (l[1] - l[2])),
    "contrastive": (contrastive_decoding(beta=0.5), ["llama", "gpt2"], lambda l: _cd(l[0], l[1])),
    "cfg": (classifier_free_guidance(1.5), ["llama", "llama"], lambda l: _lp(l[1]) + 1.5 * (_lp(l[0]) - _lp(l[1]))),
    "ensemble": (weighted_ensemble([0.6, 0.4, 0.3]), ["llama", "qwen2", "gpt2"],
                 lambda l: 0.6 * _lp(l[0]) + 0.4 * _lp(l[1]) + 0.3 * _lp(l[2])),
}


def _row_prompts(name: str, k: int, prompts=PROMPTS) -> list[list[int]]:
    """Model k's prompt per row: CFG's unconditional branch reads UNCOND."""
    return UNCOND if name == "cfg" and k == 1 else prompts


@torch.no_grad()
def _last_logits(model, ids: list[int]) -> torch.Tensor:
    return model(torch.tensor([ids])).logits[0, -1]


def brute_force_greedy(name, models, steps=T, prompts=PROMPTS, eos=None, vocab_size=None):
    """Per row: argmax of the formula, every model run without cache on its whole sequence."""
    _, names, formula = CASES[name]
    out = []
    for b in range(len(prompts)):
        gen = []
        for _ in range(steps):
            logits = [_last_logits(models[m], _row_prompts(name, k, prompts)[b] + gen)[:vocab_size]
                      for k, m in enumerate(names)]
            gen.append(int(formula(logits).argmax()))
            if gen[-1] == eos:
                break
        out.append(gen)
    return out


@torch.no_grad()
def formula_scores(name, models, b, gen, prompts=PROMPTS) -> torch.Tensor:
    """The formula's scores [len(gen), V] at each generated position of row b (teacher-forced)."""
    _, names, formula = CASES[name]
    logits = []
    for k, m in enumerate(names):
        prompt = _row_prompts(name, k, prompts)[b]
        full = models[m](torch.tensor([prompt + gen])).logits[0]
        logits.append(full[len(prompt) - 1: len(prompt) - 1 + len(gen)])
    return formula(logits)


def _left_padded(prompts, pad=1):
    width = max(map(len, prompts))
    ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    return ids, mask


def _processor(name, models, prompts=PROMPTS):
    recipe, names, _ = CASES[name]
    sources = []
    for k, m in enumerate(names[1:], start=1):
        if name == "cfg":
            sources.append(ModelLogits(models[m], prompt_ids=UNCOND))  # own prompt, padded by ModelLogits
        else:
            sources.append(ModelLogits(models[m], attention_mask=_left_padded(prompts)[1]))
    return MixingLogitsProcessor(recipe, sources)


def _mixing(name, models, **kw):
    recipe, names, _ = CASES[name]
    return Mixing([models[m] for m in names[1:]], recipe, prompts=UNCOND if name == "cfg" else None, **kw)


def _cut_at_eos(tokens: list[int], eos: int) -> list[int]:
    return tokens[: tokens.index(eos) + 1] if eos in tokens else tokens


# -- (a) the processor inside transformers' generate ------------------------------------------


@pytest.mark.parametrize("name", list(CASES))
def test_processor_in_hf_generate_equals_brute_force(name, models):
    model0 = models[CASES[name][1][0]]
    ids, mask = _left_padded(PROMPTS)
    proc = _processor(name, models)
    out = model0.generate(input_ids=ids, attention_mask=mask, do_sample=False, max_new_tokens=T, pad_token_id=1,
                          logits_processor=LogitsProcessorList([proc]))
    eos = model0.generation_config.eos_token_id
    want = brute_force_greedy(name, models, eos=eos)
    got = [_cut_at_eos(row, eos) for row in out[:, ids.shape[1]:].tolist()]
    assert got == want

    # A second generate call with the same processor: the sources refuse a sequence that did
    # not grow, and work again after reset().
    with pytest.raises(ValueError, match=r"already consumed.*reset\(\)"):
        model0.generate(input_ids=ids, attention_mask=mask, do_sample=False, max_new_tokens=2, pad_token_id=1,
                        logits_processor=LogitsProcessorList([proc]))
    proc.reset()
    again = model0.generate(input_ids=ids, attention_mask=mask, do_sample=False, max_new_tokens=T, pad_token_id=1,
                            logits_processor=LogitsProcessorList([proc]))
    assert torch.equal(again, out)


# -- (b) greedy mta.generate with mixing=, n > 1, left padding -------------------------------


@pytest.mark.parametrize("name", list(CASES))
def test_generate_with_mixing_greedy_equals_brute_force(name, models):
    model0 = models[CASES[name][1][0]]
    want = brute_force_greedy(name, models)
    plain = generate(model0, None, PROMPTS, temperature=0.0, max_new_tokens=T, eos_token_id=[], progress=False)
    assert plain.token_ids != want  # the mixture decodes something else than model 0 alone
    out = generate(model0, None, PROMPTS, n=2, top_k=1, max_new_tokens=T, eos_token_id=[], seed=0, progress=False,
                   mixing=_mixing(name, models))
    assert out.token_ids == [want[0], want[0], want[1], want[1]]
    assert all(lp == 0.0 for row in out.logprobs for lp in row)  # one token left after top-k 1
    # Temperature 0 is greedy on the mixture too (model 0 on a static cache here, the other
    # models on their own dynamic caches); the processor path agrees.
    greedy = generate(model0, None, PROMPTS, temperature=0.0, max_new_tokens=T, eos_token_id=[], progress=False,
                      cache="static", mixing=_mixing(name, models))
    assert greedy.extras["cache"] == "static"
    assert greedy.token_ids == want
    if name != "cfg":  # the processor path reads generate's prompts (its state gives the padding)
        recipe, names, _ = CASES[name]
        proc = MixingLogitsProcessor(recipe, [ModelLogits(models[m]) for m in names[1:]])
        for _ in range(2):  # reused: ModelLogits resets itself at mta.generate's step 0
            via_proc = generate(model0, None, PROMPTS, n=2, temperature=0.0, max_new_tokens=T, eos_token_id=[],
                                progress=False, logits_processors=[proc])
            assert via_proc.token_ids == out.token_ids


def test_cfg_unconditional_prompts_in_generate_forms_and_per_model_lists(models):
    model = models["llama"]
    want = brute_force_greedy("cfg", models)
    recipe = CASES["cfg"][0]
    for prompts in (UNCOND, [UNCOND], [torch.tensor(p) for p in UNCOND]):
        out = generate(model, None, PROMPTS, temperature=0.0, max_new_tokens=T, eos_token_id=[], progress=False,
                       mixing=Mixing(model, recipe, prompts=prompts))
        assert out.token_ids == want
    # Without its own prompts the unconditional branch reads the conditional prompt: γ
    # cancels and CFG decodes the model alone.
    plain = generate(model, None, PROMPTS, temperature=0.0, max_new_tokens=T, eos_token_id=[], progress=False)
    same = generate(model, None, PROMPTS, temperature=0.0, max_new_tokens=T, eos_token_id=[], progress=False,
                    mixing=Mixing(model, recipe))
    assert same.token_ids == plain.token_ids


def test_generate_with_mixing_stops_at_eos_like_brute_force(models):
    free = brute_force_greedy("contrastive", models, steps=12)
    eos = free[1][1]  # a token the mixture picks early in row 1: rows end at different steps
    want = brute_force_greedy("contrastive", models, steps=12, eos=eos)
    assert len(want[1]) == 2 and want != free
    out = generate(models["llama"], None, PROMPTS, temperature=0.0, max_new_tokens=12, eos_token_id=eos,
                   progress=False, mixing=_mixing("contrastive", models))
    assert out.token_ids == want
    assert out.finish_reasons == ["eos" if eos in row else "length" for row in want]


# -- (c) sampled: logprobs under the mixture -----------------------------------------------------


@pytest.mark.parametrize("name", list(CASES))
def test_sampled_logprobs_are_log_softmax_of_the_formula(name, models):
    model0 = models[CASES[name][1][0]]
    out = generate(model0, None, PROMPTS, n=2, temperature=[1.0, 0.7], max_new_tokens=T, eos_token_id=[], seed=0,
                   progress=False, mixing=_mixing(name, models))
    tau = [1.0, 1.0, 0.7, 0.7]
    for row, (tokens, lps) in enumerate(zip(out.token_ids, out.logprobs)):
        scores = formula_scores(name, models, out.prompt_indices[row], tokens) / tau[row]
        assert scores.gather(1, torch.tensor(tokens)[:, None]).isfinite().all()  # never a removed token
        expected = _lp(scores).gather(1, torch.tensor(tokens)[:, None]).squeeze(1)
        torch.testing.assert_close(torch.tensor(lps), expected, rtol=1e-4, atol=1e-4)
    again = generate(model0, None, PROMPTS, n=2, temperature=[1.0, 0.7], max_new_tokens=T, eos_token_id=[], seed=0,
                     progress=False, mixing=_mixing(name, models))
    assert again.token_ids == out.token_ids  # seeded: reproducible


def test_per_prompt_temperature_zero_rows_are_greedy_on_the_mixture(models):
    out = generate(models["llama"], None, PROMPTS, n=3, temperature=[0.0, 1.0], top_k=[0, 20], max_new_tokens=T,
                   eos_token_id=[], seed=1, progress=False, mixing=_mixing("contrastive", models))
    want = brute_force_greedy("contrastive", models)
    assert out.token_ids[:3] == [want[0]] * 3
    assert all(lp == 0.0 for row in out.logprobs[:3] for lp in row)
    for row in range(3, 6):  # top-k 20 on the mixture: the chosen token among the 20 best
        scores = formula_scores("contrastive", models, 1, out.token_ids[row])
        kth = scores.topk(20, dim=-1).values[:, -1]
        chosen = scores.gather(1, torch.tensor(out.token_ids[row])[:, None]).squeeze(1)
        assert (chosen >= kth).all()


# -- (d) vocabularies that differ ----------------------------------------------------------------


def test_vocab_mismatch_error_reaches_the_user_unchanged_and_vocab_size_fixes_it():
    wide, narrow = _tiny("llama", 0, vocab_size=320), _tiny("qwen2", 1, vocab_size=300)
    models = {"llama": wide, "gpt2": narrow}
    with pytest.raises(ValueError) as op_error:  # the op's own message
        mk.mix_logits([torch.zeros(1, 320), torch.zeros(1, 300)], [1.0, -0.5])
    recipe = CASES["contrastive"][0]
    with pytest.raises(ValueError) as err:
        generate(wide, None, PROMPTS, temperature=0.0, max_new_tokens=T, eos_token_id=[], progress=False,
                 mixing=Mixing(narrow, recipe))
    assert str(err.value) == str(op_error.value)
    assert "logits[0] has 320, logits[1] has 300" in str(err.value) and "vocab_size" in str(err.value)

    want = brute_force_greedy("contrastive", models, vocab_size=300)
    out = generate(wide, None, PROMPTS, temperature=0.0, max_new_tokens=T, eos_token_id=[], progress=False,
                   mixing=Mixing(narrow, recipe, vocab_size=300))
    assert out.token_ids == want
    # The other model narrower than model 0's pad id would be: finished rows are fed padding.
    narrow_first = generate(narrow, None, PROMPTS, temperature=0.0, max_new_tokens=2, eos_token_id=[],
                            progress=False, mixing=Mixing(wide, recipe, vocab_size=300))
    assert all(t < 300 for row in narrow_first.token_ids for t in row)

    # The processor: the same error from inside transformers' generate, and -inf past vocab_size.
    ids, mask = _left_padded(PROMPTS)
    proc = MixingLogitsProcessor(recipe, [ModelLogits(narrow, attention_mask=mask)])
    with pytest.raises(ValueError) as hf_err:
        wide.generate(input_ids=ids, attention_mask=mask, do_sample=False, max_new_tokens=T, pad_token_id=1,
                      logits_processor=LogitsProcessorList([proc]))
    assert str(hf_err.value) == str(op_error.value)
    proc = MixingLogitsProcessor(recipe, [ModelLogits(narrow, attention_mask=mask)], vocab_size=300)
    scores = proc(ids, wide(ids, attention_mask=mask).logits[:, -1].detach())
    assert scores.shape == (2, 320) and scores[:, 300:].eq(-math.inf).all()
    proc.reset()
    hf = wide.generate(input_ids=ids, attention_mask=mask, do_sample=False, max_new_tokens=T, pad_token_id=1,
                       logits_processor=LogitsProcessorList([proc]))
    eos = wide.generation_config.eos_token_id
    assert [_cut_at_eos(r, eos) for r in hf[:, ids.shape[1]:].tolist()] == \
        brute_force_greedy("contrastive", models, eos=eos, vocab_size=300)


# -- the pieces on their own ---------------------------------------------------------------------


def test_lockstep_logits_equal_uncached_forward_under_left_padding(models):
    lockstep = Lockstep([models["qwen2"], models["gpt2"]], n=2)
    per_model = [PROMPTS, UNCOND]
    first = lockstep.prefill(per_model)
    assert lockstep.batch_size == 4 and [x.shape for x in first] == [(4, V), (4, V)]
    gen = [[3, 4], [3, 4], [11, 12], [11, 12]]
    for step in range(3):
        logits = lockstep.logits
        for k, m in enumerate(lockstep.models):
            for row in range(4):
                ids = per_model[k][row // 2] + gen[row][:step]
                torch.testing.assert_close(logits[k][row], _last_logits(m, ids), rtol=1e-4, atol=1e-5)
        if step < 2:
            lockstep.advance(torch.tensor([g[step] for g in gen]))
    assert lockstep.steps == 2


def test_model_logits_follows_a_growing_sequence_and_rejects_a_new_one(models):
    model = models["llama"]
    ids, mask = _left_padded(PROMPTS)
    source = ModelLogits(model, attention_mask=mask)
    source(ids)
    grown = torch.cat([ids, torch.tensor([[3, 4], [5, 6]])], dim=1)
    got = source(grown)  # two new tokens at once
    for b in range(2):
        torch.testing.assert_close(got[b], _last_logits(model, PROMPTS[b] + grown[b, -2:].tolist()),
                                   rtol=1e-4, atol=1e-5)
    with pytest.raises(RowHistoryError, match="rewound, or the same step came twice"):
        source(grown)
    got = source(torch.cat([grown, torch.tensor([[7], [8]])], dim=1))  # the right rows still continue
    torch.testing.assert_close(got[0], _last_logits(model, PROMPTS[0] + [3, 4, 7]), rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match=r"input_ids has 3 rows but the cached sequences have 2.*reset\(\)"):
        source(torch.cat([grown, grown[:1]])[:, :-1].repeat(1, 2)[:3])
    # The error dropped the stale cache: the next call is a new generation's prefill.
    torch.testing.assert_close(source(ids)[1], _last_logits(model, PROMPTS[1]), rtol=1e-4, atol=1e-5)


def test_model_logits_refuses_rows_reordered_under_one_prompt(models):
    """Beams of one prompt regrouped (what beam search does every step): refused, cache kept."""
    model = models["llama"]
    beams = torch.tensor([PROMPTS[1], PROMPTS[1]])
    source = ModelLogits(model)
    source(beams)
    grown = torch.cat([beams, torch.tensor([[3], [4]])], dim=1)
    source(grown)
    with pytest.raises(RowHistoryError, match=r"they were reordered.*num_beams > 1"):
        source(torch.cat([grown[[1, 0]], torch.tensor([[7], [8]])], dim=1))
    got = source(torch.cat([grown, torch.tensor([[7], [8]])], dim=1))
    torch.testing.assert_close(got[1], _last_logits(model, PROMPTS[1] + [4, 8]), rtol=1e-4, atol=1e-5)


def test_model_logits_in_hf_generate_refuses_a_longer_prompt_without_reset(models):
    """A reused processor on a longer prompt used to mix against the previous call's cache."""
    expert, amateur = models["llama"], models["gpt2"]
    short = torch.tensor([[0, 5, 6], [0, 20, 21]])
    longer = torch.tensor([[0, 9, 8, 7, 6, 5, 4, 3], [0, 30, 31, 32, 33, 34, 35, 36]])
    proc = MixingLogitsProcessor(contrastive_decoding(beta=0.5), [ModelLogits(amateur)])

    def hf(ids, steps=4):
        return expert.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False, eos_token_id=None,
                               max_new_tokens=steps, pad_token_id=1, logits_processor=LogitsProcessorList([proc]))

    hf(short)
    with pytest.raises(ValueError, match=r"does not extend.*already consumed.*reset\(\)"):
        hf(longer)
    out = hf(longer)  # the failed call dropped the stale cache
    want = brute_force_greedy("contrastive", models, steps=4, prompts=longer.tolist())
    assert out[:, longer.shape[1]:].tolist() == want
    proc.reset()
    assert torch.equal(hf(longer), out)


@pytest.mark.parametrize("num_beams, do_sample", [(3, False), (2, True)])
def test_processor_refuses_beam_search(models, num_beams, do_sample):
    """Beam search regroups its rows every step: the other model's cache would belong to
    other beams. The processor raises instead of decoding wrong text."""
    ids, mask = _left_padded(PROMPTS)
    proc = _processor("contrastive", models)
    with pytest.raises(RowHistoryError, match=r"ModelLogits.*they were reordered.*num_beams > 1"):
        models["llama"].generate(input_ids=ids, attention_mask=mask, num_beams=num_beams, do_sample=do_sample,
                                 max_new_tokens=T, pad_token_id=1, logits_processor=LogitsProcessorList([proc]))


def test_processor_passes_decode_state_only_to_sources_that_take_it():
    seen = {}

    def plain(input_ids):
        return torch.zeros(input_ids.shape[0], 4)

    def with_state(input_ids, state=None):
        seen["state"] = state
        return torch.zeros(input_ids.shape[0], 4)

    proc = MixingLogitsProcessor(weighted_ensemble([1.0, 1.0, 1.0]), [plain, with_state])
    scores = torch.tensor([[0.0, 1.0, 2.0, 3.0]])
    LogitsProcessorList([proc])(torch.tensor([[1, 2]]), scores)  # transformers: two arguments
    assert seen["state"] is None
    proc.call_with_state(torch.tensor([[1, 2]]), scores, state="decode-state")  # what mta.generate calls
    assert seen["state"] == "decode-state"


@pytest.mark.parametrize(
    "make, error, match",
    [
        (lambda m: MixingLogitsProcessor(proxy_tuning(), [ModelLogits(m)]), ValueError,
         r"3 models \(base, expert, anti_expert\).*other 2, got 1"),
        (lambda m: MixingLogitsProcessor("cd", [ModelLogits(m)]), TypeError, "recipe must be a MixRecipe"),
        (lambda m: MixingLogitsProcessor(contrastive_decoding(), [3]), TypeError, r"sources\[0\] must be callable"),
        (lambda m: Mixing([m, m], contrastive_decoding()), ValueError, r"2 models \(expert, amateur\).*got 2"),
        (lambda m: Mixing(m, contrastive_decoding(), vocab_size=0), ValueError, "vocab_size"),
        (lambda m: Mixing([m, m], proxy_tuning(), prompts=UNCOND), TypeError, "one list of prompts"),
        (lambda m: Mixing(m, contrastive_decoding(), prompts=3), TypeError, "prompts must be a list"),
        (lambda m: ModelLogits(m, prompt_ids=[[]]), ValueError, "at least one token"),
        (lambda m: generate(m, None, PROMPTS, mixing=contrastive_decoding()), TypeError, "mixing must be"),
        (lambda m: generate(m, None, PROMPTS, mixing=Mixing(m, classifier_free_guidance(), prompts=[[0]])),
         ValueError, "has 1 prompts but generate got 2"),
        (lambda m: generate(m, None, PROMPTS, mixing=Mixing(m, classifier_free_guidance(), prompts=[[0], [999]])),
         ValueError, r"mixing models\[0\] \(its own prompts\).*999"),
    ],
)
def test_argument_errors(models, make, error, match):
    with pytest.raises(error, match=match):
        make(models["llama"])


def test_lazy_exports():
    assert mta.Mixing is Mixing and mta.ModelLogits is ModelLogits and mta.Lockstep is Lockstep
    assert mta.MixingLogitsProcessor is MixingLogitsProcessor


@pytest.mark.smollm2
def test_smollm2_cfg_with_chat_prompts_same_tokens_in_both_paths():
    from mta.prompts import encode_prompts
    from mta.models import load_smollm2

    model, tok = load_smollm2()
    questions = ["Write one sentence about the sea.", "Name a fruit."]
    uncond = [[{"role": "user", "content": "Write one sentence."}], [{"role": "user", "content": "Name something."}]]
    recipe = classifier_free_guidance(1.5)
    out = generate(model, tok, questions, chat_template=True, temperature=0.0, max_new_tokens=8, progress=False,
                   mixing=Mixing(model, recipe, prompts=uncond))
    plain = generate(model, tok, questions, chat_template=True, temperature=0.0, max_new_tokens=8, progress=False)
    assert out.token_ids != plain.token_ids  # guidance changes the text
    uncond_ids = encode_prompts(uncond, tok, chat_template=True, add_special_tokens=None, vocab_size=None)
    ids, mask = _left_padded(out.prompt_token_ids, pad=tok.pad_token_id)
    proc = MixingLogitsProcessor(recipe, [ModelLogits(model, prompt_ids=uncond_ids)])
    hf = model.generate(input_ids=ids, attention_mask=mask, do_sample=False, max_new_tokens=8,
                        pad_token_id=tok.pad_token_id, logits_processor=LogitsProcessorList([proc]))
    assert [_cut_at_eos(r, tok.eos_token_id) for r in hf[:, ids.shape[1]:].tolist()] == out.token_ids
    assert out.texts[0] == tok.decode(out.token_ids[0], skip_special_tokens=True)
