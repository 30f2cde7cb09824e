"""Helpers of :func:`mta.generate`: prompt encoding, sampling parameters, stop strings, results."""

from mta.generation.braking import BrakingReport, braking_reports
from mta.generation.params import SamplingParams, sampling_params
from mta.generation.prompts import EncodedPrompts, encode_prompts, left_pad
from mta.generation.result import FINISH_REASONS, GenerationResult
from mta.generation.stops import StopChecker, trim_text

__all__ = [
    "BrakingReport",
    "FINISH_REASONS",
    "EncodedPrompts",
    "GenerationResult",
    "SamplingParams",
    "StopChecker",
    "braking_reports",
    "encode_prompts",
    "left_pad",
    "sampling_params",
    "trim_text",
]
