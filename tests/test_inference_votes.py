"""Self-consistency votes and best-of-N selectors on constructed answer sets."""

import math

import pytest

from mta.data import Problem
from mta.inference import (Candidate, MeanLogprob, OracleVerifier, RewardSelector, SequenceLogprob,
                           group_answers, majority_vote, make_selector, sample_weights, weighted_vote)

PROBLEM = Problem("p", "What is 6 * 3?", "18", "test")


# ---- grouping -------------------------------------------------------------------------

def test_groups_by_meaning_not_spelling():
    groups = group_answers(["18", "$18", "18.0", "1,8", "\\frac{36}{2}", "17", None, "", " 17 "])
    assert [g.answer for g in groups] == ["18", "1,8", "17"]  # "1,8" is not a number in any locale we read
    assert groups[0].members == [0, 1, 2, 4] and groups[2].members == [5, 8]


def test_non_numbers_grouped_by_math_verify():
    groups = group_answers(["x^2 + 1", "1 + x^2", "\\sqrt{2}", "2^{1/2}", "x+2"])
    assert [g.members for g in groups] == [[0, 1], [2, 3], [4]]


def test_grouping_does_not_depend_on_which_spelling_comes_first():
    """A plain number arriving after a closed form of the same value joins its group."""
    for answers in (["\\sqrt{4}", "2", "3"], ["2", "\\sqrt{4}", "3"], ["\\frac{1}{2}", "0.5", "3"]):
        groups = group_answers(answers)
        assert [g.members for g in groups] == [[0, 1], [2]], answers
    assert majority_vote(["\\sqrt{4}", "3", "2"]).answer == "\\sqrt{4}"


# ---- majority vote --------------------------------------------------------------------

def test_majority_picks_the_most_common_meaning():
    vote = majority_vote(["17", "18", "18.0", "$18$", "17", None])
    assert vote.answer == "18" and vote.support == 3 and vote.total == 5 and vote.abstained == 1
    assert not vote.tie and vote.winner_members == [1, 2, 3]


def test_majority_tie_goes_to_the_earliest_first_sample():
    assert majority_vote(["4", "3", "3", "4"]).answer == "4"  # both 2 votes; "4" appeared first
    vote = majority_vote([None, "3", "4", "4", "3"])
    assert vote.answer == "3" and vote.tie
    assert [g.answer for g in vote.groups] == ["3", "4"]


def test_unparseable_answers_do_not_vote():
    vote = majority_vote([None, None, "5", None])
    assert vote.answer == "5" and vote.support == 1 and vote.abstained == 3
    empty = majority_vote([None, None])
    assert empty.answer is None and empty.groups == [] and empty.abstained == 2 and not empty.tie
    assert majority_vote([]).answer is None


# ---- weighted vote --------------------------------------------------------------------

def test_weighted_vote_can_overturn_the_majority():
    answers = ["3", "4", "4.0", None]
    assert majority_vote(answers).answer == "4"
    vote = weighted_vote(answers, [0.9, 0.2, 0.3, 5.0])  # the abstaining sample's weight counts for nothing
    assert vote.answer == "3" and vote.support == pytest.approx(0.9) and vote.total == pytest.approx(1.4)


def test_weighted_tie_rule_and_zero_weights():
    assert weighted_vote(["a", "b"], [0.5, 0.5]).answer == "a"
    vote = weighted_vote(["b", "a", "a"], [0.5, 0.25, 0.25])
    assert vote.answer == "b" and vote.tie
    assert weighted_vote(["1", "2"], [0.0, 0.0]).answer == "1"


def test_sample_weights():
    lps = [[-0.1, -0.1], [-1.0], [], [-0.5, -0.5, -0.5]]
    mean = sample_weights(lps, "mean")
    assert mean == pytest.approx([math.exp(-0.1), math.exp(-1.0), 0.0, math.exp(-0.5)])
    total = sample_weights(lps, "sum")
    assert sum(total) == pytest.approx(1.0)
    raw = [math.exp(-0.2), math.exp(-1.0), 1.0, math.exp(-1.5)]
    assert total == pytest.approx([r / sum(raw) for r in raw])
    assert sample_weights([[-1e4], [-1e4 - 1]], "sum") == pytest.approx([1 / (1 + math.exp(-1)),
                                                                         math.exp(-1) / (1 + math.exp(-1))])


def test_vote_bad_input():
    with pytest.raises(TypeError, match="answers"):
        majority_vote("18")
    with pytest.raises(TypeError, match=r"answers\[1\]"):
        majority_vote(["1", 2])
    with pytest.raises(ValueError, match="weights"):
        weighted_vote(["1", "2"], [1.0])
    with pytest.raises(ValueError, match=r"weights\[1\]"):
        weighted_vote(["1", "2"], [1.0, float("nan")])
    with pytest.raises(ValueError, match=r"weights\[0\]"):
        weighted_vote(["1"], [-1.0])
    with pytest.raises(ValueError, match="kind"):
        sample_weights([[0.0]], "max")


# ---- selectors ------------------------------------------------------------------------

CANDS = [
    Candidate("long and sure: 17", "17", [-0.05] * 20),     # sum -1.0, mean -0.05
    Candidate("short: 18", "18", [-0.3, -0.3]),              # sum -0.6, mean -0.3
    Candidate("no answer", None, [-2.0]),                    # sum -2.0, mean -2.0
    Candidate("18 again", "18.0", [-0.05] * 20),            # ties candidate 0 on both scores
]


def test_sequence_and_mean_logprob():
    assert SequenceLogprob()(CANDS) == 1
    assert MeanLogprob()(CANDS) == 0  # tie with candidate 3: the earlier wins
    assert MeanLogprob()([Candidate("", None, []), Candidate("x", "1", [-9.0])]) == 1  # empty says nothing
    assert SequenceLogprob()([Candidate("a", "1", [float("nan")]), Candidate("b", "2", [-5.0])]) == 1


def test_reward_selector_gets_question_and_text():
    seen = []

    def reward(question, completion):
        seen.append(question)
        return -len(completion) if "18" in completion else -100  # the shortest that says 18

    assert RewardSelector(reward)(CANDS, PROBLEM) == 3
    assert seen == [PROBLEM.question] * 4
    with pytest.raises(TypeError, match="candidate 0"):
        RewardSelector(lambda q, c: "high")(CANDS, PROBLEM)
    with pytest.raises(TypeError, match="callable"):
        RewardSelector(3)


def test_oracle_verifier_is_the_pass_at_n_upper_bound():
    assert OracleVerifier()(CANDS, PROBLEM) == 1
    assert OracleVerifier()(CANDS, Problem("q", "?", "\\frac{34}{2}", "t")) == 0  # 17 by math
    none = Problem("q", "?", "99", "t")
    assert OracleVerifier()(CANDS, none) == 0
    assert OracleVerifier(fallback=SequenceLogprob())(CANDS, none) == 1
    with pytest.raises(ValueError, match="gold"):
        OracleVerifier()(CANDS)


def test_selector_names_and_empty_candidates():
    assert make_selector("logprob").name == "logprob" and make_selector("oracle").name == "oracle"
    with pytest.raises(ValueError, match="selector"):
        make_selector("shortest")
    for selector in (SequenceLogprob(), MeanLogprob(), RewardSelector(lambda q, c: 0.0), OracleVerifier()):
        with pytest.raises(ValueError, match="non-empty"):
            selector([], PROBLEM)
