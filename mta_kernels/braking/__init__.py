"""Fused braking decoding step (Self-Braking Tuning, arXiv 2505.14604).

One call per decode step, one launch for the batch, no host synchronisation: consume the
last sampled token (thinking-token, marker-coverage and step counters, a token-level
Aho–Corasick automaton over the marker phrases), evaluate the braking triggers (budget,
marker ratio, steps, end-of-thinking margin) and force the brake text on braking rows.

Three layers: the API (``step.py``: :func:`braking_step`, checks every call;
``controller.py``: :class:`BrakingController`, checks once per decode loop) with its kernels
declared in ``ops.py`` -> kernels (one row routine in ``csrc/braking_row.h``, used by
``csrc/cpu/braking.cpp`` and ``csrc/cuda/braking.cu``) -> the torch reference in
``reference.py``, which also states the exact semantics. ``layout.py`` names the columns of
the packed tensors the op takes.
"""

from __future__ import annotations

from mta_kernels.braking.controller import BrakingController
from mta_kernels.braking.reference import braking_step_reference
from mta_kernels.braking.state import BRAKE_REASONS, DELIM_START, BrakingConfig, BrakingState
from mta_kernels.braking.step import braking_step
from mta_kernels.braking.tables import DEFAULT_BRAKE_TEXT, SBT_MARKERS, MarkerTables

__all__ = [
    "BRAKE_REASONS",
    "DELIM_START",
    "DEFAULT_BRAKE_TEXT",
    "SBT_MARKERS",
    "BrakingConfig",
    "BrakingController",
    "BrakingState",
    "MarkerTables",
    "braking_step",
    "braking_step_reference",
]
