"""Techniques behind the harness: one batched generation per batch (N samples of a prompt
are ``generate(n=N)``, never N calls), answers from votes / selectors, token and time
accounting; grid sweeps."""

import pytest
import torch

import mta.generation.engine as engine
from mta.data import Problem, arithmetic_problems
from mta.generation.result import GenerationResult
from mta.inference import BestOfN, Braking, Decoding, EntropyAdaptiveTemperature, Sampling, SelfConsistency, sweep
from mta.inference.selectors import RewardSelector
from mta.models import tiny_random_model

PROBLEMS = [Problem("a", "What is 2 + 2?", "4", "t"), Problem("b", "What is 3 * 3?", "9", "t")]


class FakeGenerate:
    """Stands in for ``mta.generate``: records each call, returns the texts given per prompt."""

    def __init__(self, texts_per_prompt, logprobs_per_prompt=None):
        self.texts, self.logprobs, self.calls = texts_per_prompt, logprobs_per_prompt, []

    def __call__(self, model, tokenizer, prompts, *, n=1, **kw):
        self.calls.append(dict(prompts=list(prompts), n=n, **kw))
        texts, lps = [], []
        for p in range(len(prompts)):
            options = self.texts(prompts[p]) if callable(self.texts) else self.texts[p % len(self.texts)]
            for k in range(n):
                text = options[k % len(options)]
                texts.append(text)
                lps.append(self.logprobs[p][k] if self.logprobs else [-0.5] * len(text.split()))
        return GenerationResult(texts=texts, token_ids=[[1] * len(lp) for lp in lps], logprobs=lps,
                                finish_reasons=["eos"] * len(texts),
                                prompt_indices=[p for p in range(len(prompts)) for _ in range(n)],
                                prompt_token_ids=[[0]] * len(prompts), n=n)


@pytest.fixture
def fake(monkeypatch):
    def install(*args):
        f = FakeGenerate(*args)
        monkeypatch.setattr(engine, "generate", f)
        return f
    return install


def test_self_consistency_is_one_batched_generation_and_votes(fake):
    f = fake([["so 4", "it is 5", "4.0 then", "no idea"], ["9", "8", "8", "9"]])
    sc = SelfConsistency(4, decoding=Decoding(temperature=0.8, max_new_tokens=32))
    out = sc.run(None, None, PROBLEMS, seed=3)
    assert len(f.calls) == 1 and f.calls[0]["n"] == 4 and len(f.calls[0]["prompts"]) == 2
    assert f.calls[0]["temperature"] == 0.8 and f.calls[0]["seed"] == 3 and f.calls[0]["max_new_tokens"] == 32
    assert out[0].answer == "4" and out[0].extra["support"] == 2 and out[0].extra["abstained"] == 1
    assert out[1].answer == "9" and out[1].extra["tie"]  # 2-2: the answer seen first wins
    assert out[0].tokens == sum(s.tokens for s in out[0].samples) and len(out[0].samples) == 4
    assert out[0].time_s == out[1].time_s > 0


def test_weighted_self_consistency_uses_the_sample_probabilities(fake):
    lps = [[[-0.1], [-3.0], [-3.0], [-3.0]], [[-1.0]] * 4]
    fake([["7", "4", "4", "4"], ["9"]], lps)
    out = SelfConsistency(4, vote="weighted").run(None, None, PROBLEMS[:1], seed=0)
    assert out[0].answer == "7"  # exp(-0.1) = 0.90 > 3 * exp(-3) = 0.15


def test_best_of_n_one_generation_and_each_selector(fake):
    lps = [[[-0.1] * 10, [-0.2] * 2, [-0.05] * 30]]
    f = fake([["long 5 " * 5, "short 4", "longest 6 " * 15]], lps)
    picks = {}
    for sel in ("logprob", "mean_logprob", "oracle"):
        out = BestOfN(3, selector=sel).run(None, None, PROBLEMS[:1], seed=0)
        picks[sel] = out[0].extra["selected"], out[0].answer
    assert picks == {"logprob": (1, "4"), "mean_logprob": (2, "6"), "oracle": (1, "4")}
    assert [c["n"] for c in f.calls] == [3, 3, 3]
    out = BestOfN(3, selector=RewardSelector(lambda q, c: len(c))).run(None, None, PROBLEMS[:1], seed=0)
    assert out[0].extra["selected"] == 2
    with pytest.raises(ValueError, match="index"):
        BestOfN(3, selector=lambda cands, problem: 7).run(None, None, PROBLEMS[:1], seed=0)


def test_sampling_passes_its_schedule(fake):
    f = fake([["4"]])
    sched = EntropyAdaptiveTemperature()
    out = Sampling(Decoding(temperature=0.5), schedule=sched).run(None, None, PROBLEMS, seed=0)
    assert f.calls[0]["schedule"] is sched and f.calls[0]["n"] == 1 and [r.answer for r in out] == ["4", "4"]
    assert Sampling(Decoding(temperature=0.0)).name == "greedy"


def test_sweep_runs_the_grid_in_batched_calls_with_per_prompt_params(fake, tmp_path):
    f = fake(lambda prompt: ["4"] if "2 + 2" in prompt else ["8"])  # a right, b wrong, at every point
    grid = {"temperature": [0.0, 0.5, 1.0], "top_p": [0.9, 1.0]}
    res = sweep(None, None, PROBLEMS, grid, n=2, batch_size=5, progress=False)
    assert len(f.calls) == 3  # 6 points * 2 problems = 12 prompts, 5 per call
    rows = [t for c in f.calls for t in zip(c["temperature"], c["top_p"])]
    assert rows == [(t, p) for t in (0.0, 0.5, 1.0) for p in (0.9, 1.0) for _ in PROBLEMS]
    assert all(c["n"] == 2 and c["top_k"] == [0] * len(c["prompts"]) for c in f.calls)
    assert [pt.accuracy for pt in res.points] == [0.5] * 6 and res.points[0].samples == 4
    assert res.axes == grid and "| 0.5 | 0.9 | 0 | 0 | 0.500 (2/4)" in res.table()
    assert res.plot(tmp_path / "s.png").stat().st_size > 0
    with pytest.raises(ValueError, match="not a sampling parameter"):
        sweep(None, None, PROBLEMS, {"temp": [1.0]})
    with pytest.raises(ValueError, match="top_p"):
        sweep(None, None, PROBLEMS, {"top_p": [0.0]})
    with pytest.raises(ValueError, match="non-empty list"):
        sweep(None, None, PROBLEMS, {"top_p": []})


def test_bad_technique_arguments():
    with pytest.raises(ValueError, match="n must"):
        SelfConsistency(0)
    with pytest.raises(ValueError, match="vote"):
        SelfConsistency(4, vote="plurality")
    with pytest.raises(ValueError, match="weighting"):
        SelfConsistency(4, vote="weighted", weighting="max")
    with pytest.raises(TypeError, match="selector"):
        BestOfN(2, selector=3)
    with pytest.raises(TypeError, match="BrakingConfig"):
        Braking({"max_thinking_tokens": 3})
    with pytest.raises(ValueError, match="max_new_tokens"):
        Decoding(max_new_tokens=0)


@pytest.mark.smollm2
def test_techniques_on_smollm2_and_braking_leaves_the_model_alone():
    from mta.models import load_smollm2

    model, tok = load_smollm2()
    problems = arithmetic_problems(2, seed=0)
    out = SelfConsistency(4, decoding=Decoding(max_new_tokens=12)).run(model, tok, problems, seed=0)
    assert [len(r.samples) for r in out] == [4, 4] and all(0 < r.tokens <= 48 for r in out)
    vocab, rows = len(tok), model.get_input_embeddings().weight.shape[0]
    tiny = tiny_random_model("llama", vocab_size=rows, seed=0)
    braking = Braking(decoding=Decoding(temperature=0.0, max_new_tokens=8))
    res = braking.run(tiny, tok, problems, seed=0)
    assert len(tok) == vocab and tiny.get_input_embeddings().weight.shape[0] == rows  # a private copy got the tags
    assert all(r.extra["thinking_tokens"] >= 1 and "braked" in r.extra for r in res)
    assert torch.equal(tiny.get_input_embeddings().weight, tiny_random_model("llama", vocab_size=rows,
                                                                             seed=0).get_input_embeddings().weight)
