"""The ``--ray`` paths on a real local Ray cluster with two worker slots (no mock).

One cluster serves the module (``ray.init(num_cpus=2)``: a GCS, a raylet and a worker
process per actor); the fixture shuts it down at the end and fails if any process it
started is still alive.

Part of the default run (Ray is in requirements-dev.txt): about 1.5 minutes on 2 idle cores
(each test starts fresh actor processes, each importing torch); ``make test-ray`` runs them
alone. The "how to install it" tests need no Ray.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from functools import partial

import pytest

from mta.data import arithmetic_problems
from mta.eval import make_technique, run_eval
from mta.inference.techniques import Decoding

PROBLEMS = arithmetic_problems(12, seed=3)


def _without_ray(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError


def test_eval_ray_without_ray_says_how_to_install(monkeypatch, tmp_path, capsys):
    from mta.cli import main

    _without_ray(monkeypatch)
    assert main(["eval", "--ray", "--model", "tiny", "--limit", "2", "--out", str(tmp_path / "r"),
                 "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "pip install 'mta_kernels[ray]'" in err and "mta eval --ray" in err
    assert not (tmp_path / "r" / "records.jsonl").exists()


# -- the cluster ---------------------------------------------------------------------------


def _descendants() -> set[int]:
    import psutil

    return {p.pid for p in psutil.Process().children(recursive=True)}


@pytest.fixture(scope="module")
def ray_cluster():
    """A local Ray cluster with 2 CPU slots; no process of it outlives the module."""
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'mta_kernels[ray]'; make setup installs it)")
    import psutil
    import ray

    from mta.ray_cluster import connect

    before = _descendants()
    connect(command="tests", num_cpus=2)
    started = ray._private.worker._global_node.all_processes  # gcs, raylet, ...: {name: [ProcessInfo]}
    ours = {info.process.pid for infos in started.values() for info in infos}
    try:
        yield ray
    finally:
        ours |= _descendants() - before  # workers too
        ray.shutdown()
        deadline = time.time() + 20
        alive = [pid for pid in ours if psutil.pid_exists(pid)]
        while alive and time.time() < deadline:
            time.sleep(0.5)
            alive = [pid for pid in alive if psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie"]
        for pid in alive:  # never leave them running, even when failing
            os.kill(pid, signal.SIGKILL)
        assert not alive, f"Ray processes outlived ray.shutdown(): {alive}"


def _loader():
    from mta.eval.registry import load_model

    return partial(load_model, "tiny", "cpu")


def _greedy():
    return make_technique("greedy", Decoding(max_new_tokens=6))


def _without_time(path) -> dict:
    out = {}
    for line in path.read_text().splitlines():
        r = json.loads(line)
        key = (r["model"], r["technique"], r["item"])
        assert key not in out, f"{key} recorded twice"
        r.pop("time_s")
        out[key] = r
    return out


@pytest.fixture(scope="module")
def local_records(tmp_path_factory):
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each actor runs
    try:
        out = tmp_path_factory.mktemp("local")
        run_eval(PROBLEMS, [_greedy()], out, models={"tiny": _loader()}, batch_size=2, progress=False)
    finally:
        torch.set_num_threads(threads)
    return _without_time(out / "records.jsonl")


@pytest.mark.ray
def test_greedy_eval_on_two_actors_equals_local(ray_cluster, local_records, tmp_path):
    from mta.eval.ray_pool import RayEvalPool

    pool = RayEvalPool(2)
    try:
        run_eval(PROBLEMS, [_greedy()], tmp_path, models={"tiny": _loader()}, batch_size=2, progress=False,
                 pool=pool)
        assert len(set(pool.pids)) == 2  # two replicas in two processes
    finally:
        pool.close()
    assert _without_time(tmp_path / "records.jsonl") == local_records
    assert (tmp_path / "summary.md").exists() and len((tmp_path / "samples.jsonl").read_text().splitlines()) == 12


@pytest.mark.ray
def test_eval_resume_local_run_on_ray(ray_cluster, local_records, tmp_path):
    """A local run killed halfway (its first batches written) is finished on Ray: same files."""
    from mta.eval.ray_pool import RayEvalPool
    from mta.eval.records import RecordLog

    lines = [json.dumps({**r, "time_s": 0.0}) for r in list(local_records.values())[:6]]
    (tmp_path / "records.jsonl").write_text("\n".join(lines[:5]) + "\n" + lines[5][:17])  # and a torn line
    pool = RayEvalPool(2)
    try:
        report = run_eval(PROBLEMS, [_greedy()], tmp_path, models={"tiny": _loader()}, batch_size=2,
                          progress=False, pool=pool)
    finally:
        pool.close()
    assert report.resumed_records == 5
    assert _without_time(tmp_path / "records.jsonl") == local_records
    assert len(RecordLog(tmp_path / "records.jsonl").records) == len(PROBLEMS)


@pytest.mark.ray
def test_actor_killed_mid_run_is_restarted_and_nothing_is_lost_or_duplicated(ray_cluster, local_records, tmp_path):
    from mta.eval.ray_pool import RayEvalPool

    killed = []

    def kill_a_busy_actor(pool):
        if killed or not pool.inflight:
            return
        k = next(iter(pool.inflight.values()))[0]  # an actor running a batch right now
        os.kill(pool.pids[k], signal.SIGKILL)
        killed.append((k, pool.pids[k]))

    pool = RayEvalPool(2, max_restarts=2, on_result=kill_a_busy_actor)
    try:
        run_eval(PROBLEMS, [_greedy()], tmp_path, models={"tiny": _loader()}, batch_size=2, progress=False,
                 pool=pool)
        pids, restarts = list(pool.pids), pool.restarts_seen
    finally:
        pool.close()
    assert killed, "no actor was busy after the first batch: nothing was killed"
    k, old_pid = killed[0]
    assert pids[k] != old_pid and restarts >= 1  # its batch came back from the restarted process
    lines = (tmp_path / "records.jsonl").read_text().splitlines()
    ids = [json.loads(line)["item"] for line in lines]
    assert sorted(ids) == sorted(p.id for p in PROBLEMS)  # every item exactly once
    assert _without_time(tmp_path / "records.jsonl") == local_records  # item by item


# -- mta sbt score --ray -------------------------------------------------------------------


def _traces_input(path):
    """The sample traces three times over (unique ids), plus the records a run must account for:
    a duplicate id, malformed JSON, a record without a trace, a blank line."""
    from mta.sbt import SAMPLE_TRACES

    rows = []
    for line in SAMPLE_TRACES.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:  # the sample file holds a malformed line on purpose
            continue
    lines = [json.dumps({**r, "id": f"{r.get('id')}-{k}"}) for k in range(3) for r in rows]
    lines[5:5] = [lines[2], "{not json", json.dumps({"id": "no-trace", "gold": "1"}), ""]
    path.write_text("\n".join(lines) + "\n")
    return len([line for line in lines if line.strip()])


def test_sbt_score_ray_without_ray_says_how_to_install(monkeypatch, tmp_path, capsys):
    from mta.cli import main

    _traces_input(tmp_path / "in.jsonl")
    _without_ray(monkeypatch)
    assert main(["sbt", "score", str(tmp_path / "in.jsonl"), "--out", str(tmp_path / "s.jsonl"), "--ray",
                 "--no-progress"]) == 2
    assert "pip install 'mta_kernels[ray]'" in capsys.readouterr().err
    assert not (tmp_path / "s.jsonl").exists()


@pytest.mark.ray
def test_sbt_score_on_ray_tasks_accounts_for_every_record_as_locally(ray_cluster, tmp_path, monkeypatch):
    from mta.sbt import pipeline
    from mta.sbt.pipeline import load_tokenizer, run_jsonl, skipped_path
    from mta.sbt.ray_scoring import RayScorer

    monkeypatch.setattr(pipeline, "SCORE_BATCH", 16)  # several tasks
    records = _traces_input(tmp_path / "in.jsonl")
    tok = load_tokenizer("smollm2", backend_only=True)
    local = run_jsonl(tmp_path / "in.jsonl", tmp_path / "local.jsonl", "score", tok, progress=False)
    scorer = RayScorer(tok, window=3)
    dist = run_jsonl(tmp_path / "in.jsonl", tmp_path / "ray.jsonl", "score", tok, progress=False, scorer=scorer)
    assert scorer.tasks >= 6
    assert dist.records == local.records == records and dist.kept == local.kept and dist.skipped == local.skipped
    assert dist.kept + sum(dist.skipped.values()) == records
    for name in ("local.jsonl", "ray.jsonl"):
        assert (tmp_path / name).stat().st_size > 0
    assert (tmp_path / "ray.jsonl").read_bytes() == (tmp_path / "local.jsonl").read_bytes()
    assert skipped_path(tmp_path / "ray.jsonl").read_bytes() == skipped_path(tmp_path / "local.jsonl").read_bytes()
    # resumed after a kill that left 20 scored lines and a torn one: the same files again
    lines = (tmp_path / "ray.jsonl").read_bytes().splitlines(keepends=True)
    (tmp_path / "ray.jsonl").write_bytes(b"".join(lines[:20]) + lines[20][:30])
    again = run_jsonl(tmp_path / "in.jsonl", tmp_path / "ray.jsonl", "score", tok, progress=False,
                      scorer=RayScorer(tok))
    assert again.resumed >= 20
    assert (tmp_path / "ray.jsonl").read_bytes() == (tmp_path / "local.jsonl").read_bytes()


# -- mta.rl rollouts on Ray ----------------------------------------------------------------


def _ray_trainer(ray, tmp_path, **changes):
    import rl_cases
    from rl_cases import DigitTokenizer, digit_config, digit_model, successor_problems

    from mta.rl import Trainer

    ray.cloudpickle.register_pickle_by_value(rl_cases)  # the test's tokenizer: the workers can't import it
    return Trainer(digit_config(tmp_path, **changes), model=digit_model(), tokenizer=DigitTokenizer(),
                   problems=successor_problems())


@pytest.mark.ray
def test_rl_on_policy_rollouts_on_two_actors_learn_with_broadcast_weights(ray_cluster, tmp_path):
    from mta.rl.ray_rollout import RayRollouts

    trainer = _ray_trainer(ray_cluster, tmp_path, steps=30)
    rollouts = RayRollouts(trainer, 2)
    try:
        rows = trainer.train()
        held = ray_cluster.get([a.set_weights.remote(rollouts.weights, rollouts.version) for a in rollouts.actors])
        sums = ray_cluster.get([a.weights_sum.remote() for a in rollouts.actors])
    finally:
        rollouts.close()
    assert held == [30, 30]
    learner = float(sum(p.detach().double().sum() for p in trainer.model.state_dict().values()))
    assert sums == [learner, learner]  # the actors hold the learner's weights exactly
    nbytes = sum(p.numel() * p.element_size() for p in trainer.model.state_dict().values())
    for r in rows:
        assert r["weight_version"] == r["step"] - 1 and r["weight_staleness"] == 0  # on-policy
        assert r["weights_bytes"] == nbytes and r["weights_broadcast_s"] > 0
        assert r["samples"] == 64 * r["gen_rounds"] and r["groups_generated"] == 8 * r["gen_rounds"]  # both shards
    rewards = [r["reward"] for r in rows]
    # the rollouts' reward rises only if the actors get the updated weights (they start from the random
    # model); measured 0.05 -> 0.18 over 30 steps here (0.06 -> 0.38 in-process: other seeds)
    assert sum(rewards[-5:]) / 5 > sum(rewards[:5]) / 5 + 0.08, rewards


@pytest.mark.ray
def test_rl_overlapped_rollouts_are_one_update_old(ray_cluster, tmp_path):
    from mta.rl.ray_rollout import RayRollouts

    trainer = _ray_trainer(ray_cluster, tmp_path, steps=4, dynamic_sampling=False)
    rollouts = RayRollouts(trainer, 2, overlap=True)
    try:
        rows = trainer.train()
    finally:
        rollouts.close()
    assert [r["weight_version"] for r in rows] == [0, 0, 1, 2]
    assert [r["weight_staleness"] for r in rows] == [0, 1, 1, 1]
    assert all(r["trained_sequences"] == 64 for r in rows)
