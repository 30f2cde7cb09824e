"""``mta sbt score --ray``: the scoring batches of :func:`mta.sbt.pipeline.run_jsonl` as Ray tasks.

The driver reads the input, accounts for every record (resume counts, duplicate ids,
malformed lines) and writes both output files exactly as a local run does; only the
scoring of each batch of ``SCORE_BATCH`` records runs as a Ray task, up to ``window``
batches at a time, and the results are written in input order. A task whose worker dies
is run again by Ray (``max_retries``); its batch is written once, when its result arrives.

Between nodes travel: the tokenizer (once, through the object store; each worker process
keeps it), the batch's input records, and back per record its scores or its skip reason.
"""

from __future__ import annotations

__all__ = ["RayScorer"]

_TOKENIZERS: dict[str, object] = {}  # in a worker process: object-store id -> tokenizer, loaded once


def _score_records(tokenizer_ref: list, recs: list, opts: dict) -> list:
    """In a Ray worker: ``_score_batch`` with the failures as :class:`~mta.sbt.pipeline.Skipped`."""
    import ray

    from mta.sbt.pipeline import Skipped, _reason, _score_batch

    (ref,) = tokenizer_ref  # wrapped in a list so Ray passes the reference, not a fresh copy per task
    key = ref.hex()
    if key not in _TOKENIZERS:
        _TOKENIZERS.clear()
        _TOKENIZERS[key] = ray.get(ref)
    return [Skipped(*_reason(r)) if isinstance(r, Exception) else r
            for r in _score_batch(recs, _TOKENIZERS[key], opts)]


class RayScorer:
    """Scores batches of trace records as Ray tasks (connect first: :func:`mta.ray_cluster.connect`).

    Parameters
    ----------
    tokenizer : tokenizers.Tokenizer or fast tokenizer
        Sent to the cluster once.
    window : int, optional
        Batches in flight at most (default: twice the cluster's CPUs).
    max_retries : int
        Times Ray runs a task again after its worker process died.
    """

    def __init__(self, tokenizer, *, window: int | None = None, max_retries: int = 3):
        import ray

        if not ray.is_initialized():
            raise RuntimeError("RayScorer: connect to Ray first (mta.ray_cluster.connect)")
        for name, value, lo in (("window", window, 1), ("max_retries", max_retries, 0)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < lo):
                raise ValueError(f"{name} must be an int >= {lo}, got {value!r}")
        self.window = window or 2 * max(int(ray.cluster_resources().get("CPU", 1)), 1)
        self._tokenizer = ray.put(tokenizer)
        self._task = ray.remote(num_cpus=1, max_retries=max_retries)(_score_records)
        self.tasks = 0

    def submit(self, recs: list, opts: dict):
        """Start scoring ``recs``; returns the handle :meth:`result` takes."""
        self.tasks += 1
        return self._task.remote([self._tokenizer], recs, {k: v for k, v in opts.items()})

    def result(self, handle) -> list:
        """The batch's results, in its order (waits for them)."""
        import ray

        return ray.get(handle)
