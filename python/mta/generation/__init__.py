"""Helpers of :func:`mta.generate`: sampling parameters, decode samplers, stop strings, results.

Prompt encoding and padding live in :mod:`mta.prompts` (shared with :mod:`mta.mixing`)."""

from mta.generation.braking import BrakingReport, braking_reports
from mta.generation.params import SamplingParams, sampling_params
from mta.generation.result import FINISH_REASONS, GenerationResult
from mta.generation.stops import StopChecker, trim_text

__all__ = [
    "BrakingReport",
    "FINISH_REASONS",
    "GenerationResult",
    "SamplingParams",
    "StopChecker",
    "braking_reports",
    "sampling_params",
    "trim_text",
]
