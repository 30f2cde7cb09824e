"""mta.alignment: pass@k curves of a model on a data set, the verdict, the paper's experiments."""

import json

import pytest

from mta.alignment import EXPERIMENTS, PassAtK, alignment_verdict, pass_at_k_curve, plot_pass_at_k, write_report
from mta.cli import main
from mta.rl import RLConfig
from rl_cases import DigitTokenizer, digit_model, successor_problems


def test_pass_at_k_curve_of_a_model_on_a_data_set(tmp_path):
    problems = successor_problems()
    result = pass_at_k_curve(digit_model(), DigitTokenizer(), problems, n=8, max_new_tokens=2, chat_template=False,
                             batch_prompts=4, progress=False)
    assert result.n == 8 and len(result.correct) == 10 and len(result.curve) == 8
    assert all(0 <= c <= 8 for c in result.correct) and sum(result.correct) > 0
    assert result.at(1) == pytest.approx(sum(result.correct) / 80)  # pass@1 = mean success rate
    assert result.at(8) == pytest.approx(sum(c > 0 for c in result.correct) / 10)  # pass@n: any sample right
    assert all(a <= b + 1e-12 for a, b in zip(result.curve, result.curve[1:]))  # non-decreasing in k
    again = pass_at_k_curve(digit_model(), DigitTokenizer(), problems, n=8, max_new_tokens=2, chat_template=False,
                            batch_prompts=4, progress=False)
    assert again.correct == result.correct  # seeded
    md = write_report(result, tmp_path, label="digit model")
    assert "| 1 |" in md and "| 8 |" in md and "Verdict" in md
    saved = json.loads((tmp_path / "passk.json").read_text())
    assert saved["curve"] == result.curve and saved["verdict"] in ("strong", "weak")
    assert (tmp_path / "passk.png").stat().st_size > 1000


def test_verdict_reads_pass_at_n():
    strong = PassAtK(n=4, curve=[0.2, 0.4, 0.55, 0.6], correct=[1], problem_ids=["a"], unscorable=0,
                     mean_response_tokens=3.0)
    weak = PassAtK(n=4, curve=[0.01, 0.02, 0.03, 0.05], correct=[0], problem_ids=["a"], unscorable=0,
                   mean_response_tokens=3.0)
    assert alignment_verdict(strong)[0] == "strong" and "pass@4 = 0.600" in alignment_verdict(strong)[1]
    assert alignment_verdict(weak)[0] == "weak" and "ground-truth" in alignment_verdict(weak)[1]
    assert alignment_verdict(strong, threshold=0.9)[0] == "weak"
    with pytest.raises(ValueError, match="threshold"):
        alignment_verdict(strong, threshold=0)
    with pytest.raises(ValueError, match="k must be in"):
        strong.at(5)
    assert "| 4 | 0.600 |" in strong.table()


def test_bad_arguments():
    with pytest.raises(ValueError, match="temperature must be > 0"):
        pass_at_k_curve(digit_model(), DigitTokenizer(), successor_problems(), temperature=0.0)
    with pytest.raises(ValueError, match="n must be"):
        pass_at_k_curve(digit_model(), DigitTokenizer(), successor_problems(), n=0)
    with pytest.raises(ValueError, match="empty"):
        pass_at_k_curve(digit_model(), DigitTokenizer(), [])


def test_every_experiment_is_a_valid_trainer_config(tmp_path):
    for name, changes in EXPERIMENTS.items():
        RLConfig(**changes).validate()
    assert {"random", "incorrect", "format", "entropy", "majority", "one_shot", "psr", "nsr", "weighted"} <= set(EXPERIMENTS)
    plot_pass_at_k({"a": PassAtK(2, [0.1, 0.2], [0], ["x"], 0, 1.0)}, tmp_path / "p.png")
    assert (tmp_path / "p.png").stat().st_size > 1000


@pytest.mark.smollm2
def test_cli_passk(tmp_path, capsys):
    status = main(["align", "passk", "--model", "tiny-llama", "--data", "arithmetic", "--n", "2", "--limit", "2",
                   "--max-new-tokens", "4", "--out", str(tmp_path), "--no-progress"])
    assert status == 0
    out = capsys.readouterr().out
    assert "pass@k" in out and "Verdict" in out
    assert json.loads((tmp_path / "passk.json").read_text())["n"] == 2
    assert main(["align", "passk", "--data", "nope.csv", "--model", "tiny-llama"]) == 2
    assert "unknown data set" in capsys.readouterr().err
