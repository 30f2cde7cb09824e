"""mta.rl config: TOML / YAML, command-line overrides, and bad configs refused before any compute."""

import json

import pytest

from mta.cli import main
from mta.rl import RLConfig, Trainer, load_config
from mta.rl.config import parse_value
from rl_cases import DigitTokenizer, digit_config, digit_model, successor_problems


def test_toml_and_yaml_with_tables_and_overrides(tmp_path):
    toml = tmp_path / "run.toml"
    toml.write_text('[rollout]\ngroup_size = 4\nprompts_per_step = 2\n[objective]\nobjective = "nsr"\n'
                    'dual_clip = 3.0\n[optimisation]\nlr = 1e-5\nmicro_batch_size = 4\nadam_betas = [0.9, 0.95]\n')
    cfg = load_config(toml, {"lr": "2e-5", "dual_clip": "none", "bf16": "false", "reward": "majority"})
    assert (cfg.group_size, cfg.prompts_per_step, cfg.objective, cfg.lr) == (4, 2, "nsr", 2e-5)
    assert cfg.dual_clip is None and cfg.bf16 is False and cfg.reward == "majority"
    assert cfg.adam_betas == (0.9, 0.95) and cfg.batch_size == 8
    yaml = tmp_path / "run.yaml"
    yaml.write_text("group_size: 16\nreward: random_format\nkl_coef: 0.01\n")
    cfg = load_config(yaml)
    assert (cfg.group_size, cfg.reward, cfg.kl_coef) == (16, "random_format", 0.01)
    assert load_config(None) == RLConfig()


@pytest.mark.parametrize("changes, message", [
    ({"reward": "rnd"}, "reward must be one of"),
    ({"group_size": 1}, "group_size must be >= 2"),
    ({"micro_batch_size": 5}, "micro_batch_size \\(5\\) must divide the mini-batch"),
    ({"mini_batch_size": 24}, "mini_batch_size \\(24\\) must divide the batch"),
    ({"temperature": 0.0}, "temperature must be > 0"),
    ({"old_logprobs": "rollout", "top_p": 0.9}, "would mix two distributions"),
    ({"objective": "psr-only"}, "objective must be one of"),
    ({"overlong_buffer": 128}, "overlong_buffer"),
    ({"clip_low": 1.5}, "clip_low must be in"),
    ({"dual_clip": 1.0}, "dual_clip must be > 1"),
    ({"prompt_template": "no slot"}, "prompt_template must contain"),
    ({"kl_estimator": "k2"}, "kl_estimator must be one of"),
])
def test_bad_fields_are_named(changes, message):
    with pytest.raises(ValueError, match=message):
        RLConfig(**changes).validate()


def test_bad_files_and_names(tmp_path):
    with pytest.raises(ValueError, match="unknown config field 'group_szie' \\(did you mean 'group_size'"):
        load_config(None, {"group_szie": 4})
    with pytest.raises(ValueError, match="steps: .*expected int"):
        load_config(None, {"steps": "many"})
    with pytest.raises(ValueError, match="not a boolean"):
        parse_value("dynamic_sampling", "maybe")
    bad = tmp_path / "run.json"
    bad.write_text("{}")
    with pytest.raises(ValueError, match=".toml, .yaml or .yml"):
        load_config(bad)
    with pytest.raises(FileNotFoundError):
        load_config(tmp_path / "missing.toml")


def test_errors_before_any_compute(tmp_path, monkeypatch):
    import mta.rl.trainer as trainer_module

    def no_compute(*args, **kwargs):
        raise AssertionError("compute started")

    monkeypatch.setattr(trainer_module, "rollout", no_compute)
    monkeypatch.setattr(trainer_module, "load_model", no_compute)
    # a data file with a record without a gold answer: the error names its line
    data = tmp_path / "data.jsonl"
    data.write_text(json.dumps({"question": "1+1?", "answer": "2"}) + "\n" + json.dumps({"question": "2+2?"}) + "\n")
    with pytest.raises(ValueError, match="data.jsonl:2: no gold answer"):
        Trainer(digit_config(tmp_path, data=str(data)))
    # a tokenizer without the chat template the run asks for
    with pytest.raises(ValueError, match="no chat template"):
        Trainer(digit_config(tmp_path, chat_template=True), model=digit_model(), tokenizer=DigitTokenizer(),
                problems=successor_problems())
    with pytest.raises(ValueError, match="one_shot=10 but the data set has 10 problems"):
        Trainer(digit_config(tmp_path, one_shot=10), model=digit_model(), tokenizer=DigitTokenizer(),
                problems=successor_problems())
    with pytest.raises(ValueError, match="unknown data set"):
        Trainer(digit_config(tmp_path, data="gsm9k"))


def test_one_shot_trains_on_one_problem(tmp_path):
    trainer = Trainer(digit_config(tmp_path, one_shot=3, steps=1), model=digit_model(), tokenizer=DigitTokenizer(),
                      problems=successor_problems())
    assert [p.id for p in trainer.stream.problems] == ["d3"]
    assert {i for i, _ in trainer.stream.next(20)} == {0}


def test_cli_reports_bad_configs_with_exit_status_2(tmp_path, capsys):
    assert main(["rl", "train", "--group-size", "1", "--run-dir", str(tmp_path)]) == 2
    assert "group_size must be >= 2" in capsys.readouterr().err
    assert main(["rl", "train", "--reward", "nope", "--experiment", "nsr"]) == 2
    assert "reward must be one of" in capsys.readouterr().err
    assert main(["rl", "plot", str(tmp_path / "nothing")]) == 2
    assert "no metrics" in capsys.readouterr().err


@pytest.mark.smollm2
def test_cli_train_and_plot_end_to_end(tmp_path, capsys):
    run = tmp_path / "run"
    status = main(["rl", "train", "--model", "tiny-llama", "--steps", "2", "--prompts-per-step", "2", "--group-size",
                   "2", "--micro-batch-size", "2", "--max-new-tokens", "4", "--reward", "random", "--run-dir",
                   str(run), "--progress", "false", "--save-every", "1"])
    assert status == 0
    out = capsys.readouterr().out
    assert "2 steps" in out and "reward" in out
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
    assert main(["rl", "plot", str(run), "--out", str(tmp_path / "p.png")]) == 0
    assert (tmp_path / "p.png").stat().st_size > 1000


def test_every_field_is_documented_and_a_command_line_flag():
    """Each RLConfig field has help text and a ``mta rl train --field`` flag whose string form
    round-trips to the field's value (so any field can be overridden from the command line)."""
    import dataclasses

    from mta.cli import _parser
    from mta.rl.config import FIELDS

    def text(value):
        if value is None:
            return "none"
        if isinstance(value, tuple):
            return ",".join(map(str, value))
        return str(value).lower() if isinstance(value, bool) else str(value)

    changed = {"group_size": 4, "bf16": True, "dual_clip": 2.5, "adam_betas": (0.8, 0.9), "reward": "entropy",
               "data_limit": 7, "grad_clip": None, "top_p": 0.5, "old_logprobs": "recompute"}
    argv = ["rl", "train"]
    for name, f in FIELDS.items():
        assert len(f.metadata.get("help", "")) > 10, f"{name} has no help text"
        argv += [f"--{name.replace('_', '-')}", text(changed.get(name, f.default))]
    args = _parser().parse_args(argv)
    overrides = {name: getattr(args, name) for name in FIELDS}
    assert all(isinstance(v, str) for v in overrides.values())
    assert load_config(None, overrides) == dataclasses.replace(RLConfig(), **changed)
