"""``mta eval``: one resumable harness over data set × technique × model.

:func:`run_eval` runs :class:`mta.inference.techniques.Technique` objects on
:class:`mta.data.Problem` lists and writes records, a summary table and plots;
:mod:`.registry` names techniques and models for the command line; :mod:`.demo` is the
methods table at the end of ``mta demo``.
"""

from mta.eval.harness import batch_seed, run_eval
from mta.eval.registry import MODELS, TECHNIQUES, load_model, make_technique, parse_spec
from mta.eval.report import EvalReport, TechniqueSummary

__all__ = ["MODELS", "TECHNIQUES", "EvalReport", "TechniqueSummary", "batch_seed", "load_model", "make_technique",
           "parse_spec", "run_eval"]
