"""mta.tfpi: the ThinkFree transform on every template family and input form, staged RLVR
(growth checked, one metrics log, exact resume at a stage boundary), ThinkFree-vs-thinking eval."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from mta.data import arithmetic_problems
from mta.models import add_think_tokens, tiny_random_model
from mta.sbt.pipeline import load_tokenizer
from mta.tfpi import EMPTY_THINK, think_free, thinking_prompt
from mta.tfpi.stages import load_tfpi_config, run_stages

# Templates that behave like the families (written here, not downloaded).
QWEN3 = ("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
         "{% if add_generation_prompt %}<|im_start|>assistant\n"
         "{% if enable_thinking is defined and enable_thinking is false %}<think>\n\n</think>\n\n{% endif %}{% endif %}")
R1 = ("{% if messages[0].role == 'system' %}{{ messages[0].content }}{% endif %}"
      "{% for m in messages %}{% if m.role == 'user' %}<|User|>{{ m.content }}{% elif m.role == 'assistant' %}"
      "<|Assistant|>{{ m.content }}<|end|>{% endif %}{% endfor %}"
      "{% if add_generation_prompt %}<|Assistant|><think>\n{% endif %}")
NO_GEN = "{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}"
USER = [{"role": "user", "content": "What is 2 + 3?"}]
SYSTEM = [{"role": "system", "content": "Be brief."}] + USER


@pytest.fixture
def tok():
    return load_tokenizer("smollm2")


def _with_template(tok, template):
    tok = copy.deepcopy(tok)
    tok.chat_template = template
    return tok


@pytest.mark.parametrize("messages", [USER, SYSTEM], ids=["no-system", "system"])
def test_qwen3_style_template_writes_the_block_itself(tok, messages):
    t = _with_template(tok, QWEN3)
    free = think_free(messages, t)
    assert free.endswith("<|im_start|>assistant\n" + EMPTY_THINK) and free.count("<think>") == 1
    assert think_free(free) == free  # idempotent
    assert ("Be brief." in free) == (messages is SYSTEM)
    thinking = thinking_prompt(messages, t)
    assert thinking.endswith("<|im_start|>assistant\n<think>\n") and "</think>" not in thinking


@pytest.mark.parametrize("messages", [USER, SYSTEM], ids=["no-system", "system"])
def test_r1_style_template_that_opens_think_gets_it_closed_empty(tok, messages):
    t = _with_template(tok, R1)
    free = think_free(messages, t)
    assert free.endswith("<|Assistant|>" + EMPTY_THINK) and free.count("<think>") == 1
    assert think_free(free) == free
    assert think_free(free[: -len(EMPTY_THINK)] + "<think>\n") == free  # the string form too
    assert thinking_prompt(messages, t).endswith("<|Assistant|><think>\n")


def test_smollm2_with_think_tokens_strings_messages_and_ids(tok):
    model = tiny_random_model("llama", vocab_size=49152)
    open_id, close_id = add_think_tokens(model, tok)
    free = think_free(USER, tok)
    assert free.endswith("<|im_start|>assistant\n" + EMPTY_THINK)
    assert think_free(SYSTEM, tok).count("Be brief.") == 1
    plain = tok.apply_chat_template(USER, add_generation_prompt=True, tokenize=False)
    assert think_free(plain) == free and think_free(free) == free
    ids = tok.encode(plain, add_special_tokens=False)
    free_ids = think_free(ids, tok)
    assert free_ids == tok.encode(free, add_special_tokens=False)
    assert free_ids.count(open_id) == 1 and free_ids.count(close_id) == 1
    assert think_free(free_ids, tok) == free_ids
    assert think_free(torch.tensor(ids), tok) == free_ids
    opened = tok.encode(plain + "<think>\n", add_special_tokens=False)
    assert think_free(opened, tok) == free_ids
    custom = think_free("Q: 2+3?\nA:", empty_think="<think></think>")
    assert custom == "Q: 2+3?\nA:<think></think>" and think_free(custom, empty_think="<think></think>") == custom


def test_bad_inputs_name_the_field(tok):
    with pytest.raises(ValueError, match="chat_template"):
        think_free(USER, _with_template(tok, NO_GEN))
    with pytest.raises(ValueError, match="messages"):
        think_free(USER + [{"role": "assistant", "content": "5"}], tok)
    with pytest.raises(ValueError, match="tokenizer"):
        think_free([1, 2, 3])
    with pytest.raises(ValueError, match="empty_think"):
        think_free("x", empty_think="no tags")
    with pytest.raises(TypeError, match="prompt"):
        think_free(3.5)


STAGES = [{"max_new_tokens": 4, "steps": 1}, {"max_new_tokens": 8, "steps": 1}]


def _cfg(run_dir, stages=STAGES):
    return load_tfpi_config(None, {"model": "tiny-llama", "reward": "random", "prompts_per_step": 2, "group_size": 2,
                                   "micro_batch_size": 4, "dynamic_sampling": False, "lr": 1e-3,
                                   "run_dir": str(run_dir), "progress": False}, stages=stages)


def test_stages_that_do_not_grow_are_an_error_naming_the_field():
    with pytest.raises(ValueError, match=r"stages\[1\]\.max_new_tokens \(4\) must be greater than stages\[0\]"):
        _cfg("x", [{"max_new_tokens": 4, "steps": 1}, {"max_new_tokens": 4, "steps": 1}])
    with pytest.raises(ValueError, match=r"stages\[0\]\.steps"):
        _cfg("x", [{"max_new_tokens": 4}])
    with pytest.raises(ValueError, match="stages"):
        _cfg("x", [])


def _run(cfg, tok, **kw):
    model = tiny_random_model("llama", vocab_size=49152, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    problems = arithmetic_problems(8, seed=0)
    return model, run_stages(cfg, model=model, tokenizer=tok, problems=problems, **kw)


def _strip(rows):
    return [{k: v for k, v in r.items() if not (k.endswith("_s") or k.endswith("tokens_per_s"))} for r in rows]


def test_staged_run_logs_every_stage_and_resumes_at_a_stage_boundary(tmp_path):
    full_model, full = _run(_cfg(tmp_path / "full"), load_tokenizer("smollm2"))
    assert [r["stage"] for r in full] == [1, 2] and [r["global_step"] for r in full] == [1, 2]
    assert max(r["response_length_max"] for r in full if r["stage"] == 1) <= 4
    logged = [json.loads(line) for line in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
    assert _strip(logged) == _strip(full)
    assert (tmp_path / "full" / "metrics.png").is_file() and (tmp_path / "full" / "model" / "config.json").is_file()
    # killed at the boundary: stage 1 done, stage 2 not begun; the rerun continues from stage 1's checkpoint
    _, first = _run(_cfg(tmp_path / "cut"), load_tokenizer("smollm2"), until_stage=1)
    assert [r["stage"] for r in first] == [1]
    resumed_model, resumed = _run(_cfg(tmp_path / "cut"), load_tokenizer("smollm2"))
    assert _strip(resumed) == _strip(full)
    full_state, resumed_state = full_model.state_dict(), resumed_model.state_dict()
    assert all(torch.equal(full_state[k], resumed_state[k]) for k in full_state)


def test_eval_compares_both_modes_on_the_same_problems(tmp_path):
    from mta.tfpi.evaluate import compare_modes, write_report

    tok = load_tokenizer("smollm2")
    model = tiny_random_model("llama", vocab_size=49152, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    problems = arithmetic_problems(3, seed=0)
    results = compare_modes(model, tok, problems, max_new_tokens=5, batch_size=2, progress=False)
    assert [r.mode for r in results] == ["thinking", "thinkfree"]
    for r in results:
        assert [p["id"] for p in r.per_problem] == [p.id for p in problems]
        assert 0 < r.mean_tokens <= r.p90_tokens <= 5 and r.wall_s > 0
    table = write_report(results, tmp_path)
    assert "| thinkfree | 3 |" in table and (tmp_path / "plot.png").is_file()
    with pytest.raises(ValueError, match="prompt_template"):
        compare_modes(model, tok, problems, prompt_template="no placeholder")
