"""``mta eval``: one resumable harness over data set × technique × model.

:func:`run_eval` runs :class:`mta.inference.techniques.Technique` objects on
:class:`mta.data.Problem` lists and writes records, a summary table and plots;
:mod:`.registry` names techniques and models for the command line; :mod:`.demo` is the
methods table at the end of ``mta demo``.

The names below are imported on first use: ``mta`` builds its command line from
:mod:`mta.eval.cli`, and importing this package must not import torch for commands that
never evaluate anything (``mta sbt score``).
"""

from mta.lazy_exports import lazy_exports

__all__ = ["MODELS", "TECHNIQUES", "EvalReport", "TechniqueSummary", "batch_seed", "load_model", "make_technique",
           "parse_spec", "run_eval"]

_HOME = {"batch_seed": "harness", "run_eval": "harness", "MODELS": "registry", "TECHNIQUES": "registry",
         "load_model": "registry", "make_technique": "registry", "parse_spec": "registry",
         "EvalReport": "report", "TechniqueSummary": "report"}


__getattr__, __dir__ = lazy_exports("mta.eval", _HOME, globals())
