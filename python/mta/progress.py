"""The one way the package shows progress: a tqdm bar that turns itself off in logs.

A bar redraws itself many times a second; written to a file or a CI log instead of a
terminal, every redraw becomes a line and floods the log. So a bar shows only when

* the caller did not turn it off (``progress=False``, ``--no-progress``), and
* ``MTA_PROGRESS`` is not ``0`` (``0``/``false``/``off``/``no`` turn every bar off; ``1``/
  ``true``/``on``/``yes`` turn them on even when the output is not a terminal), and
* without ``MTA_PROGRESS``: stderr (where tqdm writes) is a terminal or a Jupyter kernel's
  stream (the notebook shows a widget, not lines).

Every tqdm in ``mta`` and ``benchmarks`` goes through :func:`progress_bar`.
"""

from __future__ import annotations

import os
import sys

__all__ = ["ENV", "progress_enabled", "progress_bar"]

ENV = "MTA_PROGRESS"
_OFF = {"0", "false", "off", "no"}
_ON = {"1", "true", "on", "yes"}


def _interactive(stream) -> bool:
    """A terminal, or a Jupyter kernel's output stream (not a TTY, but not a log either)."""
    if type(stream).__module__.startswith("ipykernel"):
        return True
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):  # no isatty, or a closed stream
        return False


def progress_enabled(requested: bool | None = True, stream=None) -> bool:
    """Whether a progress bar should show.

    Parameters
    ----------
    requested : bool or None
        The caller's wish (``progress=`` of an API, ``not --no-progress``): False always
        wins; True / None leave it to ``MTA_PROGRESS`` and the terminal.
    stream : file, optional
        Where the bar would write (default ``sys.stderr``).

    Raises
    ------
    ValueError
        ``MTA_PROGRESS`` holds something other than the words above.
    """
    if requested is False:
        return False
    value = os.environ.get(ENV, "").strip().lower()
    if value in _OFF:
        return False
    if value in _ON:
        return True
    if value:
        raise ValueError(f"{ENV} must be one of {sorted(_OFF | _ON)} or unset, got {os.environ[ENV]!r}")
    return _interactive(sys.stderr if stream is None else stream)


def progress_bar(iterable=None, *, enabled: bool | None = True, **kwargs):
    """``tqdm(iterable, **kwargs)``, disabled unless :func:`progress_enabled` (``enabled``).

    A disabled tqdm costs next to nothing per item and keeps ``update``/``set_postfix``/
    ``close`` working, so callers never branch on it. Notebooks get ``tqdm.auto``'s widget.
    """
    from tqdm.auto import tqdm

    return tqdm(iterable, disable=not progress_enabled(enabled, kwargs.get("file")), **kwargs)
