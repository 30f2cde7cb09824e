"""``mta eval``: one resumable harness over data set × technique × model.

:func:`run_eval` runs :class:`mta.inference.techniques.Technique` objects on
:class:`mta.data.Problem` lists and writes records, a summary table and plots;
:mod:`.registry` names techniques and models for the command line; :mod:`.demo` is the
methods table at the end of ``mta demo``.

The names below are imported on first use: ``mta`` builds its command line from
:mod:`mta.eval.cli`, and importing this package must not import torch for commands that
never evaluate anything (``mta sbt score``).
"""

from importlib import import_module

__all__ = ["MODELS", "TECHNIQUES", "EvalReport", "TechniqueSummary", "batch_seed", "load_model", "make_technique",
           "parse_spec", "run_eval"]

_HOME = {"batch_seed": "harness", "run_eval": "harness", "MODELS": "registry", "TECHNIQUES": "registry",
         "load_model": "registry", "make_technique": "registry", "parse_spec": "registry",
         "EvalReport": "report", "TechniqueSummary": "report"}


def __getattr__(name: str):
    if name not in _HOME:
        raise AttributeError(f"module 'mta.eval' has no attribute {name!r}")
    value = getattr(import_module(f"mta.eval.{_HOME[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
