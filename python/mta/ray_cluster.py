"""Joining a Ray cluster for the ``--ray`` paths (``mta eval``, ``mta sbt score``, ``mta rl train``).

The library never runs its own scheduler, RPC or worker pool: work goes to Ray actors and
tasks, and Ray's actor restarts and task retries recover from a lost worker. This module
only connects (or starts a local cluster), says how many slots there are, and gives the
actor options every ``--ray`` path shares.

Workers import ``mta`` / ``mta_kernels`` themselves: on a cluster, install the package on
every node (``pip install 'mta_kernels[ray]'``). The driver also puts the directories it
imports them from on the workers' ``PYTHONPATH`` (a source checkout on a local cluster, or
the same path on nodes that share it); a directory a node lacks is simply not searched.
"""

from __future__ import annotations

import os
from pathlib import Path

from mta.extras import require

__all__ = ["actor_options", "add_ray_arguments", "connect", "shutdown", "slots", "worker_threads"]


def _package_dirs() -> list[str]:
    import mta
    import mta_kernels

    dirs = [str(Path(m.__file__).resolve().parents[1]) for m in (mta, mta_kernels)]
    return list(dict.fromkeys(dirs))


def add_ray_arguments(parser, what: str, actors: str | None = None) -> None:
    """``--ray [ADDRESS]`` (and ``--ray-actors N`` when ``actors`` names what an actor holds)
    on a command's parser; ``what`` says what runs on Ray."""
    parser.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                        help=f"{what} on Ray: on the cluster at ADDRESS ('auto', 'host:6379', 'ray://host:10001'), "
                        "or without ADDRESS the one `ray start` runs here, else a new local one "
                        "(needs pip install 'mta_kernels[ray]')")
    if actors is not None:
        parser.add_argument("--ray-actors", type=int, default=None, metavar="N",
                            help=f"{actors} (default: one per GPU of the cluster, else one per CPU)")


def connect(address: str | None = None, *, command: str, num_cpus: int | None = None):
    """Ray, initialised: connected to ``address`` (``"auto"``, ``"ray://host:10001"``,
    ``"host:6379"``), or to the cluster ``ray start`` runs on this machine, or else a new
    local one (``num_cpus`` slots: default all cores). Already initialised: used as it is.

    Raises
    ------
    mta.extras.MissingExtraError
        Ray is not installed (the message says ``pip install 'mta_kernels[ray]'``).
    """
    require(command, "ray")
    import ray

    if address is not None and (not isinstance(address, str) or not address.strip()):
        raise ValueError(f"--ray: ADDRESS must be a cluster address such as 'auto' or 'host:6379', got {address!r}")
    if num_cpus is not None and (isinstance(num_cpus, bool) or not isinstance(num_cpus, int) or num_cpus < 1):
        raise ValueError(f"num_cpus must be an int >= 1, got {num_cpus!r}")
    if ray.is_initialized():
        return ray
    path = os.pathsep.join(_package_dirs() + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])
    ray.init(address=address, num_cpus=num_cpus if address is None else None, include_dashboard=False,
             runtime_env={"env_vars": {"PYTHONPATH": path}}, logging_level="WARNING")
    return ray


def shutdown() -> None:
    """Disconnect (and stop the local cluster this process started, if it did)."""
    import ray

    if ray.is_initialized():
        ray.shutdown()


def slots() -> tuple[int, bool]:
    """``(actors, on_gpu)``: one actor per GPU when the cluster has GPUs, else one per CPU."""
    import ray

    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0))
    return (gpus, True) if gpus else (max(int(resources.get("CPU", 1)), 1), False)


def actor_options(on_gpu: bool, *, cpus: float = 1, max_restarts: int = 3) -> dict:
    """Options of a model-holding actor: one GPU (or ``cpus`` CPU slots) each; restarted up to
    ``max_restarts`` times after its process dies, and a call it was running is then run again
    on the restarted actor (``max_task_retries``), so no work is lost."""
    return {"num_cpus": 0 if on_gpu else cpus, "num_gpus": 1 if on_gpu else 0, "max_restarts": max_restarts,
            "max_task_retries": max_restarts}


def worker_threads() -> tuple[str, int]:
    """Inside an actor: ``(device, torch threads)`` from the resources Ray gave it; sets the threads."""
    import ray
    import torch

    ctx = ray.get_runtime_context()
    gpus = ray.get_gpu_ids()
    cpus = ctx.get_assigned_resources().get("CPU", 1)
    threads = max(int(cpus), 1)
    torch.set_num_threads(threads)
    return ("cuda" if gpus else "cpu"), threads
