"""mta.rewards: the judged answers, every variant, the TRL and verl adapters, a real TRL run."""

import random

import pytest
import torch

import mta.rewards as rw
from mta.answers import AnswerCheckTimeout
from mta.rewards import Reward, compute_score, has_format, judge, majority_answer, make_reward

GROUP = ["so it is \\boxed{18}", "#### 17", "The answer is 18.", "I don't know", "\\boxed{\\frac{36}{2}}"]


def test_judge_extracts_checks_format_and_compares():
    j = [judge(c, "18", answer_format="boxed") for c in GROUP]
    assert [x.answer for x in j] == ["18", "17", "18", None, "\\frac{36}{2}"]
    assert [x.formatted for x in j] == [True, False, False, False, True]
    assert [x.correct for x in j] == [True, False, True, False, True]
    assert judge("#### 5", None).correct is None
    assert has_format("#### 5", "gsm8k") and has_format("\\boxed{5}", "boxed_or_gsm8k")
    assert not has_format("\\boxed{}", "boxed") and has_format("5", "any") and not has_format("none", "any")
    with pytest.raises(ValueError, match="answer_format"):
        has_format("x", "latex")
    with pytest.raises(TypeError, match="completion"):
        judge(5, "5")


def test_every_variant_on_one_group():
    def score(name, **kw):
        return make_reward(name, answer_format="boxed", seed=0, **kw)(GROUP, "18")

    assert score("ground_truth") == [1, 0, 1, 0, 1]
    assert score("incorrect") == [0, 0, 0, 0, 0]  # the only wrong answer (17) is not boxed
    assert make_reward("incorrect", answer_format="gsm8k")(GROUP, "18") == [0, 1, 0, 0, 0]
    assert score("format") == [1, 0, 0, 0, 1]
    coins = score("random")
    assert set(coins) <= {0.0, 1.0}
    gated = make_reward("random_format", answer_format="boxed", seed=0)(GROUP, "18")
    assert gated == [c if f else 0.0 for c, f in zip(coins, [1, 0, 0, 0, 1])]  # same coins, format-gated
    many = make_reward("random", seed=1)(["x"] * 4000)
    assert abs(sum(many) / 4000 - 0.5) < 0.03
    assert make_reward("random", p=0.0)(["x"] * 10) == [0.0] * 10
    # majority: 18 (three ways of writing it) beats 17; no answer gets 0; no gold needed
    assert make_reward("majority")(GROUP) == [1, 0, 1, 0, 1]
    assert make_reward("entropy")(["a", "b"], entropies=[[1.0, 3.0], []]) == [-2.0, 0.0]


def test_majority_answer_and_ties():
    assert majority_answer(["3", "4", "4", "3.0", "3"]) == "3"
    assert majority_answer(["4", "3"]) == "4"  # a tie: the first seen
    assert majority_answer([None, None]) is None


def test_bad_arguments_name_the_problem():
    with pytest.raises(ValueError, match="unknown reward 'rnd'"):
        make_reward("rnd")
    with pytest.raises(ValueError, match="needs the gold"):
        make_reward("ground_truth")(["1"])
    with pytest.raises(ValueError, match="entropies"):
        make_reward("entropy")(["1"])
    with pytest.raises(TypeError, match="list of str"):
        make_reward("format")("one string")
    with pytest.raises(ValueError, match="p must be"):
        Reward("random", p=1.5)


def test_unscorable_answers_are_counted_not_dropped(monkeypatch):
    def slow(gold, candidate, *, timeout_s):
        raise AnswerCheckTimeout("too slow")

    monkeypatch.setattr(rw, "answers_match", slow)
    reward = make_reward("ground_truth")
    judgements = reward.judge_group(["\\boxed{x^2}", "nothing"], "x^2")
    assert [j.unscorable for j in judgements] == [True, False]
    assert reward.score(judgements) == [0.0, 0.0]


def test_trl_reward_function_signature_and_grouping():
    reward = make_reward("majority")
    func = reward.trl()
    assert func.__name__ == "mta_majority"
    prompts = ["p1"] * 3 + ["p2"] * 3
    completions = ["#### 3", "#### 3", "#### 4", "#### 7", "#### 8", "#### 8"]
    assert func(prompts=prompts, completions=completions) == [1, 1, 0, 0, 1, 1]
    conversational = [[{"role": "assistant", "content": c}] for c in completions]
    gt = make_reward("ground_truth").trl(gold_key="solution")
    assert gt(prompts=prompts, completions=conversational, solution=["3"] * 3 + ["8"] * 3) == [1, 1, 0, 0, 1, 1]
    with pytest.raises(ValueError, match="'answer' column"):
        make_reward("ground_truth").trl()(prompts=prompts, completions=completions)
    with pytest.raises(ValueError, match="TRL"):
        make_reward("entropy").trl()


def test_verl_compute_score():
    assert compute_score("gsm8k", "so #### 42", "42") == 1.0
    assert compute_score("gsm8k", "so #### 41", "42") == 0.0
    assert compute_score("math", "\\boxed{41}", "42", {"reward": "incorrect", "answer_format": "boxed"}) == 1.0
    assert compute_score("math", "41", "42", {"reward": "format", "answer_format": "boxed"}) == 0.0
    assert compute_score("x", "#### 5", "5.0", {"reward": "majority"}) == 1.0  # ground_truth = pseudo-label
    assert compute_score("x", "abc", None, {"reward": "entropy", "entropies": [0.5, 1.5]}) == -1.0
    random.seed(0)
    assert compute_score("x", "abc", None, {"reward": "random"}) in (0.0, 1.0)
    with pytest.raises(ValueError, match="extra_info"):
        compute_score("x", "abc", None, {"reward": "entropy"})


@pytest.mark.smollm2
def test_a_few_real_trl_grpo_steps_with_our_rewards(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    datasets = pytest.importorskip("datasets", reason="TRL's data sets (requirements-dev.txt installs trl)")
    trl = pytest.importorskip("trl", reason="requirements-dev.txt installs trl")
    from mta.models import load_smollm2, tiny_random_model

    _, tok = load_smollm2()
    model = tiny_random_model("llama", vocab_size=len(tok), seed=0, eos_token_id=tok.eos_token_id,
                              pad_token_id=tok.pad_token_id)
    before = [p.detach().clone() for p in model.parameters()]
    data = datasets.Dataset.from_list([{"prompt": f"What is {a} + {b}?", "answer": str(a + b)}
                                       for a, b in [(1, 2), (3, 4), (5, 6), (7, 8)]])
    calls = []
    random_reward, truth = make_reward("random", seed=0).trl(), make_reward("ground_truth").trl()

    def spy(prompts, completions, **kwargs):
        calls.append((list(prompts), list(completions), list(kwargs["answer"])))
        return random_reward(prompts, completions, **kwargs)

    spy.__name__ = random_reward.__name__
    args = trl.GRPOConfig(output_dir=str(tmp_path), per_device_train_batch_size=4, num_generations=4,
                          max_completion_length=8, max_steps=2, learning_rate=1e-3, report_to="none",
                          logging_steps=1, use_cpu=True, save_strategy="no", bf16=False, seed=0)
    trainer = trl.GRPOTrainer(model=model, reward_funcs=[spy, truth], args=args, train_dataset=data,
                              processing_class=tok)
    trainer.train()
    logs = [h for h in trainer.state.log_history if "reward" in h]
    assert len(logs) == 2 and all("rewards/mta_random/mean" in h and "rewards/mta_ground_truth/mean" in h
                                  for h in logs)
    assert len(calls) == 2 and all(len(c[1]) == 4 and len(set(c[0])) == 1 for c in calls)  # one group of 4
    assert all(str(eval(c[0][0].split("is ")[1].rstrip("?"))) == c[2][0] for c in calls)  # golds travel along
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))  # random rewards: it learned
