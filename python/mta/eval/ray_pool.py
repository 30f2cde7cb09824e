"""``mta eval --ray``: the evaluation's batches on Ray actors, one model replica each.

:func:`mta.eval.harness.run_eval` cuts the work into the same batches (same positions, same
seeds) as a local run and hands them to :meth:`RayEvalPool.batches`; each actor runs
:func:`mta.eval.harness.run_batch` (generation and answer checks) on its own device — a GPU,
or ``cpus_per_actor`` CPU slots — and the records come back to the driver as each batch
finishes, where the run's one :class:`~mta.eval.records.RecordLog` writes them. So a
distributed run writes the same records as a local one (in completion order), and it
resumes from the same files.

Faults are Ray's business: an actor whose process dies is restarted (``max_restarts``,
reloading its model) and the batch it was running is run again on it
(``max_task_retries``); a batch's records are written once, when its result arrives, so
nothing is lost or written twice. If an actor runs out of restarts the error reaches the
driver; what was written stays, and running the command again resumes.

Between nodes travel: the model loader (pickled, not the weights — each actor loads its
own), the technique, the batch's problems, and back the batch's records (answers, sample
texts, token counts).
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterator

from mta.eval.harness import run_batch

__all__ = ["EvalActor", "RayEvalPool"]


class EvalActor:
    """One model replica (a Ray actor): loads the model on the device Ray gave it, runs batches."""

    def __init__(self, spec):
        from mta.ray_cluster import worker_threads

        self.device, self.threads = worker_threads()
        model, tokenizer = spec() if callable(spec) else spec
        if self.device != "cpu" and hasattr(model, "to"):
            model = model.to(self.device)
        self.model, self.tokenizer = model, tokenizer

    def pid(self) -> int:
        return os.getpid()

    def run(self, model_name, technique, batch, todo, seed, check_timeout_s) -> tuple[int, list[dict]]:
        """``(this process's id, the batch's records)``."""
        return os.getpid(), run_batch(self.model, self.tokenizer, model_name, technique, batch, todo, seed,
                                      check_timeout_s)


class RayEvalPool:
    """Evaluation actors on a Ray cluster (connected by :func:`mta.ray_cluster.connect` first).

    Parameters
    ----------
    actors : int, optional
        Model replicas per model (default: one per GPU of the cluster, else one per CPU).
    cpus_per_actor : int
        CPU slots (and torch threads) of each actor on a CPU cluster.
    max_restarts : int
        Times Ray restarts an actor whose process died (and retries the batch it ran).
    on_result : callable, optional
        Called as ``on_result(pool)`` after each batch's records arrive (progress hooks, tests).
    """

    def __init__(self, actors: int | None = None, *, cpus_per_actor: int = 1, max_restarts: int = 3,
                 on_result: Callable | None = None):
        import ray

        from mta.ray_cluster import slots

        for name, value, lo in (("actors", actors, 1), ("cpus_per_actor", cpus_per_actor, 1),
                                ("max_restarts", max_restarts, 0)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < lo):
                raise ValueError(f"{name} must be an int >= {lo}, got {value!r}")
        if not ray.is_initialized():
            raise RuntimeError("RayEvalPool: connect to Ray first (mta.ray_cluster.connect)")
        default, self.on_gpu = slots()
        self.count = actors or (default if self.on_gpu else max(default // cpus_per_actor, 1))
        self.cpus_per_actor, self.max_restarts, self.on_result = cpus_per_actor, max_restarts, on_result
        self.actors: list = []
        self.pids: list[int] = []
        self.inflight: dict = {}  # ObjectRef -> (actor index, job)
        self.restarts_seen = 0  # results that came back from a new process of an actor
        self._model = self._spec_ref = None

    def start(self, model_name: str, spec) -> None:
        """Start the actors for ``model_name`` (each loads ``spec``) and wait until they are ready;
        :meth:`batches` does it itself (a benchmark calls it first to time only the work)."""
        import ray

        from mta.ray_cluster import actor_options

        if self._model == model_name:
            return
        self.close()
        cls = ray.remote(EvalActor).options(**actor_options(self.on_gpu, cpus=self.cpus_per_actor,
                                                            max_restarts=self.max_restarts))
        self._spec_ref = ray.put(spec)  # held: a restarted actor is constructed from it again
        self.actors = [cls.remote(self._spec_ref) for _ in range(self.count)]
        self.pids = ray.get([a.pid.remote() for a in self.actors])
        self._model = model_name

    def batches(self, spec, model_name, technique, jobs, seed, check_timeout_s) -> Iterator[tuple[list, list[dict]]]:
        """``(todo, records)`` of every job ``(batch, todo)``, as they finish (any order)."""
        import ray

        self.start(model_name, spec)
        technique_ref = ray.put(technique)
        queue, idle = deque(jobs), list(range(len(self.actors)))
        while queue or self.inflight:
            while queue and idle:
                k = idle.pop(0)
                batch, todo = job = queue.popleft()
                ref = self.actors[k].run.remote(model_name, technique_ref, batch, todo, seed, check_timeout_s)
                self.inflight[ref] = (k, job)
            (ref,), _ = ray.wait(list(self.inflight), num_returns=1)
            k, (_, todo) = self.inflight.pop(ref)
            pid, records = ray.get(ref)
            if pid != self.pids[k]:
                self.restarts_seen += 1
                self.pids[k] = pid
            idle.append(k)
            yield todo, records
            if self.on_result is not None:
                self.on_result(self)

    def close(self) -> None:
        """Stop the actors (the cluster stays)."""
        import ray

        for actor in self.actors:
            ray.kill(actor, no_restart=True)
        self.actors, self.pids, self.inflight, self._model, self._spec_ref = [], [], {}, None, None
