"""Packed layout of ``mta::braking_step``'s arguments: the named columns, defined once.

The op takes a handful of tensors instead of one per field:

* ``counters`` ``[B, len(Counter)]`` int64 and ``flags`` ``[B, len(Flag)]`` bool: the
  per-row state (:class:`~mta_kernels.braking.BrakingState` exposes each column by name);
* ``config`` ``[B, len(Config)]`` float64: the triggers
  (:meth:`~mta_kernels.braking.BrakingConfig.normalised`);
* ``tables`` ``[N]`` uint8 with ``table_layout`` (``len(TableField)`` ints): the marker tables
  (:class:`~mta_kernels.braking.MarkerTables`), every table a typed view of the buffer.

``csrc/braking_row.h`` declares the same fields in the same order (``counter::kThinkingTokens``
is ``Counter.THINKING_TOKENS``); ``tests/test_braking.py`` compares the two.
"""

from __future__ import annotations

from enum import IntEnum

__all__ = ["Config", "Counter", "Flag", "TableField", "STATE_FIELDS", "state_column"]


class Counter(IntEnum):
    """Columns of the int64 ``counters``."""

    THINKING_TOKENS = 0
    MARKER_TOKENS = 1
    STEPS = 2
    BRAKE_REASON = 3
    AC_STATE = 4
    COUNTED_UNTIL = 5
    BRAKE_POS = 6
    DELIM_STATE = 7


class Flag(IntEnum):
    """Columns of the bool ``flags``."""

    IN_THINK = 0
    BRAKING = 1
    BRAKED = 2


class Config(IntEnum):
    """Columns of the float64 ``config``: integer triggers hold integers (negative: off),
    ``MARKER_RATIO`` and ``END_THINK_MARGIN`` their fp32 value (NaN: off)."""

    MAX_THINKING_TOKENS = 0
    MARKER_RATIO = 1
    MIN_THINKING_TOKENS = 2
    MAX_STEPS = 3
    END_THINK_MARGIN = 4


class TableField(IntEnum):
    """Entries of ``table_layout``: sizes, the end-of-thinking id, then the byte offset of
    each table in the ``tables`` buffer."""

    VOCAB = 0
    STATES = 1
    CLASSES = 2
    STEP_CLASSES = 3
    BRAKE_LEN = 4
    END_THINK_ID = 5
    TOKEN_CLASS_OFFSET = 6
    TRANSITIONS_OFFSET = 7
    MATCH_LEN_OFFSET = 8
    STEP_CLASS_OFFSET = 9
    STEP_TABLE_OFFSET = 10
    BRAKE_IDS_OFFSET = 11


#: The state fields in the order of :meth:`BrakingState.tensors` (and of the positional
#: ``BrakingState(...)`` constructor); each the lower-cased name of a Counter or Flag column.
STATE_FIELDS: tuple[str, ...] = (
    "thinking_tokens", "marker_tokens", "steps", "in_think", "braking", "braked", "brake_reason", "ac_state",
    "counted_until", "brake_pos", "delim_state",
)


def state_column(name: str) -> Counter | Flag:
    """The ``counters`` or ``flags`` column of the state field ``name``."""
    upper = name.upper()
    return Counter[upper] if upper in Counter.__members__ else Flag[upper]
