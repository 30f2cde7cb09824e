"""``mta eval``: one resumable harness over data set × technique × model.

For every model and technique, the problems run in batches of ``batch_size`` (a batch is
one :meth:`~mta.inference.techniques.Technique.run` call: one batched generation for a
sampling technique, ``batch_size * n`` rows for self-consistency). Each answer is checked
against the gold with :func:`mta.answers.answers_match` (exact for plain numbers,
math-verify otherwise, bounded in time), then the batch's records go to ``records.jsonl``
(:class:`~mta.eval.records.RecordLog`).

Resuming: the run directory's ``run.json`` holds the problems, the seed and each
technique's config; started again on the same directory, the harness checks they match,
skips every (model, technique, problem) already recorded and runs the rest. Batches are cut
from the problem list at fixed positions and each batch's seed is derived from (seed,
model, technique, batch position), so an uninterrupted batch draws the same samples
whether or not the run was resumed before it. At the end: ``samples.jsonl`` (one line per
problem and sample), ``summary.md`` / ``summary.json`` (accuracy, mean tokens, wall time per
technique) and ``accuracy_vs_tokens.png``.
"""

from __future__ import annotations

import json
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from functools import partial
from pathlib import Path

from mta.answers import AnswerCheckTimeout, answers_match
from mta.data import Problem
from mta.eval.records import RecordLog
from mta.eval.report import EvalReport, summarise, write_outputs
from mta.inference.techniques import ItemResult, Technique

__all__ = ["batch_seed", "run_batch", "run_eval"]

ModelSpec = tuple | Callable[[], tuple]  # (model, tokenizer), or a loader returning it


def batch_seed(seed: int, model: str, technique: str, batch: int) -> int:
    """The generation seed of one batch: stable across runs and resumes."""
    return (seed * 1_000_003 + zlib.crc32(f"{model}\x00{technique}\x00{batch}".encode())) % (2**62)


def _check_inputs(problems, techniques, models) -> None:
    if not problems:
        raise ValueError("problems is empty: nothing to evaluate")
    ids = [p.id for p in problems]
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})
        raise ValueError(f"problem ids must be unique; repeated: {dup[:5]}")
    if not techniques:
        raise ValueError("techniques is empty")
    for t in techniques:
        if not isinstance(t, Technique):
            raise TypeError(f"{t!r} is not a Technique (name, config(), run(...))")
    names = [t.name for t in techniques]
    if len(set(names)) != len(names):
        raise ValueError(f"technique names must be unique, got {names}")
    if not isinstance(models, Mapping) or not models:
        raise ValueError("models must be a non-empty dict: name -> (model, tokenizer) or a loader")


def _manifest(out_dir: Path, dataset: str, problems, techniques, models, seed: int, overwrite: bool) -> dict:
    """``run.json``: written on the first run, checked (and extended) on a resume."""
    path = out_dir / "run.json"
    fresh = {"dataset": dataset, "problems": [p.id for p in problems], "seed": seed,
             "models": list(models), "techniques": {t.name: t.config() for t in techniques}}
    fresh = json.loads(json.dumps(fresh, default=str))  # as it reads back
    if overwrite:
        for name in ("run.json", "records.jsonl", "samples.jsonl", "summary.md", "summary.json",
                     "accuracy_vs_tokens.png"):
            (out_dir / name).unlink(missing_ok=True)
    if path.exists():
        old = json.loads(path.read_text())
        hint = f"; use another output directory, or overwrite=True (--overwrite) to start {out_dir} again"
        if old.get("problems") != fresh["problems"]:
            raise ValueError(f"{out_dir} holds a run over other problems ({old.get('dataset')}, "
                             f"{len(old.get('problems', []))} problems){hint}")
        if old.get("seed") != seed:
            raise ValueError(f"{out_dir} holds a run with seed {old.get('seed')}, not {seed}{hint}")
        for name, config in fresh["techniques"].items():
            if name in old["techniques"] and old["techniques"][name] != config:
                raise ValueError(f"{out_dir}: technique {name!r} ran with another config "
                                 f"({old['techniques'][name]}){hint}")
        old["techniques"].update(fresh["techniques"])
        old["models"] = list(dict.fromkeys(old["models"] + fresh["models"]))
        fresh = old
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(fresh, indent=1) + "\n")
    tmp.replace(path)
    return fresh


def _record(model: str, technique: str, index: int, batch: int, problem: Problem, result: ItemResult,
            timeout_s: float) -> dict:
    correct, timed_out = False, False
    if result.answer is not None:
        try:
            correct = answers_match(problem.answer, result.answer, timeout_s=timeout_s)
        except AnswerCheckTimeout:
            timed_out = True
    return {
        "model": model, "technique": technique, "item": problem.id, "index": index, "batch": batch,
        "gold": problem.answer, "answer": result.answer, "correct": bool(correct), "check_timeout": timed_out,
        "tokens": int(result.tokens), "time_s": float(result.time_s),
        "samples": [asdict(s) for s in result.samples], "extra": result.extra,
    }


def run_batch(model, tokenizer, model_name: str, technique: Technique, batch: int, todo: list[tuple[int, Problem]],
              seed: int, check_timeout_s: float) -> list[dict]:
    """The records of one batch (``todo``: ``(index, problem)`` pairs): run, check, record.
    The local loop and the Ray actors (:mod:`mta.eval.ray_pool`) both call it."""
    batch_problems = [p for _, p in todo]
    results = technique.run(model, tokenizer, batch_problems,
                            seed=batch_seed(seed, model_name, technique.name, batch), progress=False)
    if len(results) != len(batch_problems):
        raise RuntimeError(f"technique {technique.name!r} returned {len(results)} results for "
                           f"{len(batch_problems)} problems")
    return [_record(model_name, technique.name, i, batch, p, r, check_timeout_s) for (i, p), r in zip(todo, results)]


def _local_batches(loaded: dict, spec, model_name, technique, jobs, seed, check_timeout_s):
    """``(todo, records)`` of each job in order, in this process (the model loaded once, kept in ``loaded``)."""
    if model_name not in loaded:
        loaded[model_name] = spec() if callable(spec) else spec
    model, tokenizer = loaded[model_name]
    for batch, todo in jobs:
        yield todo, run_batch(model, tokenizer, model_name, technique, batch, todo, seed, check_timeout_s)


def run_eval(
    problems: Sequence[Problem],
    techniques: Sequence[Technique],
    out_dir: str | Path,
    *,
    models: Mapping[str, ModelSpec],
    dataset: str = "custom",
    batch_size: int = 8,
    seed: int = 0,
    check_timeout_s: float = 5.0,
    progress: bool = True,
    overwrite: bool = False,
    pool=None,
) -> EvalReport:
    """Evaluate every technique with every model on ``problems``; resumable.

    Parameters
    ----------
    problems : list of mta.data.Problem
        Unique ids (the resume key).
    techniques : list of Technique
        E.g. from :func:`mta.eval.registry.make_technique`; unique names.
    out_dir : path
        The run directory (created). Started again, the run continues where it stopped.
    models : dict
        Name -> ``(model, tokenizer)`` or a zero-argument loader returning it (called only
        if that model has work left).
    batch_size : int
        Problems per ``Technique.run`` call.
    overwrite : bool
        Delete this directory's previous results first instead of resuming.
    pool : mta.eval.ray_pool.RayEvalPool, optional
        Run the batches on Ray actors (one model replica each) instead of in this process;
        their records come back as each batch finishes and go through the same record log.

    Returns
    -------
    EvalReport
        Per (model, technique): accuracy, mean tokens, wall time; ``.markdown()``.
    """
    from mta.progress import progress_bar
    from mta_kernels._validation import check_int

    batch_size = check_int(batch_size, "batch_size", lo=1)
    seed = check_int(seed, "seed", lo=0)
    problems = list(problems)
    _check_inputs(problems, techniques, models)
    out_dir = Path(out_dir)
    manifest = _manifest(out_dir, dataset, problems, techniques, models, seed, overwrite)
    log = RecordLog(out_dir / "records.jsonl")
    resumed = len(log.records)
    started = time.perf_counter()
    loaded: dict = {}
    for model_name, spec in models.items():
        for technique in techniques:
            done = log.done(model_name, technique.name)
            todo_batches = []
            for b0 in range(0, len(problems), batch_size):
                todo = [(i, p) for i, p in enumerate(problems[b0:b0 + batch_size], start=b0) if p.id not in done]
                if todo:
                    todo_batches.append((b0 // batch_size, todo))
            if not todo_batches:
                continue
            bar = progress_bar(total=len(problems), initial=len(problems) - sum(len(t) for _, t in todo_batches),
                               desc=f"{model_name} / {technique.name}", unit="item", enabled=progress)
            runner = pool.batches if pool is not None else partial(_local_batches, loaded)
            for todo, records in runner(spec, model_name, technique, todo_batches, seed, check_timeout_s):
                log.append(records)
                bar.update(len(todo))
            bar.close()
    report = summarise(log.records, manifest, problems)
    report.resumed_records = resumed
    report.elapsed_s = time.perf_counter() - started
    write_outputs(out_dir, log.records, report)
    return report
