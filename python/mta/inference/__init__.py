"""Inference-time techniques (arXiv 2502.07191, "Bag of Tricks for Inference-time
Computation of LLM Reasoning"), each reporting tokens and wall time beside accuracy.

* :mod:`.sweep` — grids of temperature / top-p / top-k / min-p in batched generations,
  a table and heat maps of accuracy and tokens;
* :mod:`.votes` — self-consistency by majority and probability-weighted vote;
* :mod:`.selectors` — best-of-N by sequence logprob, length-normalised logprob, a user
  reward function, or an oracle verifier against the gold (upper bound);
* :mod:`.schedules` — per-step parameters inside the fused sampler (entropy-adaptive
  temperature, annealing, per-row switches): ``mta.generate(schedule=...)``;
* :mod:`.techniques` — the :class:`Technique` interface the evaluation harness
  (:mod:`mta.eval`) runs: sampling, self-consistency, best-of-N, braking.
"""

from mta.inference.schedules import Annealing, Compose, EntropyAdaptiveTemperature, Piecewise, SwitchOnToken
from mta.inference.selectors import (SELECTORS, Candidate, MeanLogprob, OracleVerifier, RewardSelector,
                                     SequenceLogprob, make_selector)
from mta.inference.sweep import SweepPoint, SweepResult, sweep
from mta.inference.techniques import (BestOfN, Braking, Decoding, ItemResult, SampleRecord, Sampling,
                                      SelfConsistency, Technique)
from mta.inference.votes import AnswerGroup, Vote, group_answers, majority_vote, sample_weights, weighted_vote

__all__ = [
    "Annealing", "AnswerGroup", "BestOfN", "Braking", "Candidate", "Compose", "Decoding",
    "EntropyAdaptiveTemperature", "ItemResult", "MeanLogprob", "OracleVerifier", "Piecewise", "RewardSelector",
    "SELECTORS", "SampleRecord", "Sampling", "SelfConsistency", "SequenceLogprob", "SweepPoint", "SweepResult",
    "SwitchOnToken", "Technique", "Vote", "group_answers", "majority_vote", "make_selector", "sample_weights",
    "sweep", "weighted_vote",
]
