"""Fake (meta) implementations of the C++ ops, so they trace under torch.compile.

The schemas are declared once, in csrc/torch_bindings.cpp; this module only adds the shape
functions, and only when the extension is loaded.
"""

from __future__ import annotations

import functools

import torch


@functools.lru_cache(maxsize=None)
def register_fakes() -> None:
    """Called once, by the extension loader, right after the library is loaded."""

    @torch.library.register_fake("mta::filter_logits")
    def _filter_logits_fake(logits, temperature, top_k, top_p, min_p):
        return logits.new_empty(logits.shape, dtype=torch.float32)

    @torch.library.register_fake("mta::sample")
    def _sample_fake(logits, temperature, top_k, top_p, min_p, uniform):
        B = logits.shape[0]
        return logits.new_empty((B,), dtype=torch.int64), logits.new_empty((B,), dtype=torch.float32)

    @torch.library.register_fake("mta::mix_and_sample")
    def _mix_and_sample_fake(logits, weights, temperature, plausibility, top_k, top_p, min_p, uniform):
        B = logits[0].shape[0]
        return logits[0].new_empty((B,), dtype=torch.int64), logits[0].new_empty((B,), dtype=torch.float32)

    @torch.library.register_fake("mta::braking_step")
    def _braking_step_fake(logits, last_tokens, counters, flags, tables, table_layout, config):
        return None  # mutates logits, counters and flags in place, returns nothing
