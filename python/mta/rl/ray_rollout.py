"""Rollouts on Ray for :class:`mta.rl.trainer.Trainer`: generation actors, weights through the object store.

``RayRollouts(trainer)`` plugs into the trainer's two hooks and changes nothing else: the
learner (this process) still draws the prompts, computes the old log-probs, the advantages
and the update; only :func:`mta.rl.rollout._generate_groups` — the same function the
single-process trainer calls — runs on the actors, each on a contiguous shard of the step's
prompts with seeds drawn from the trainer's generator (so a resumed run draws the same ones).

After each update the learner's weights are put in the object store once and every actor
loads them (``weights_bytes`` and ``weights_broadcast_s`` in the metrics); each rollout
carries the weight version that produced it (``weight_version``, and
``weight_staleness`` = updates the learner made since). Two modes:

* **on-policy** (default): the broadcast is awaited before the next rollout, and an actor
  refuses to generate with weights older than the version a call asks for — every step
  trains on samples of the current weights, as the single-process trainer does.
* **one step off-policy** (``overlap=True``, verl / OpenRLHF "async"): as soon as a step's
  rollouts are in, the actors start on the next step's prompts with the weights they hold
  while the learner trains; those rollouts are one update old (staleness 1) and the
  importance ratio against the recomputed old log-probs corrects for it as PPO does.

A restarted actor (Ray ``max_restarts``, after its process died) starts from the initial
weights; every generate call carries the current weights' reference and version, so it
loads them before generating, and Ray retries the call (``max_task_retries``).

Between nodes travel: the initial model and tokenizer once, the weights after every update
(one copy into the object store, fetched by each node), the prompts of each shard and back
the rewarded groups (token ids, texts, log-probs, judgements).
"""

from __future__ import annotations

import copy
import os
import random
import time

import torch

from mta.rl.rollout import RolloutStats, _generate_groups

__all__ = ["RayRollouts", "RolloutActor"]


class RolloutActor:
    """A generation replica: the model, the reward, and the weight version it holds."""

    def __init__(self, initial, cfg, reward):
        from mta.ray_cluster import worker_threads

        self.device, _ = worker_threads()
        model, self.tokenizer = initial
        self.model = model.to(self.device).eval()
        self.cfg, self.reward, self.version = cfg, reward, 0

    def pid(self) -> int:
        return os.getpid()

    def set_weights(self, weights: list, version: int) -> int:
        """Load ``weights`` (``[ObjectRef]`` of a state dict) as ``version``; returns the version held."""
        import ray

        if version > self.version:
            self.model.load_state_dict(ray.get(weights[0]))
            self.version = version
        return self.version

    def weights_sum(self) -> float:
        """The sum of every weight (a cheap fingerprint to compare with the learner's)."""
        return float(sum(p.detach().double().sum() for p in self.model.state_dict().values()))

    def generate(self, drawn, seed: int, reward_seed: int, weights: list | None, version: int):
        """``(groups, stats, version)`` of the prompts ``drawn``, with weights of ``version`` exactly."""
        if weights is not None:
            self.set_weights(weights, version)  # a restarted actor catches up here
        if self.version != version:
            raise RuntimeError(f"rollout actor holds weight version {self.version}, asked for {version}")
        stats = RolloutStats()
        generator = torch.Generator(self.device).manual_seed(seed)
        with torch.no_grad():
            groups = _generate_groups(self.model, self.tokenizer, drawn, self.reward, self.cfg, generator,
                                      random.Random(reward_seed), stats)
        return groups, stats, self.version


def _merge(into: RolloutStats, part: RolloutStats) -> None:
    """Add one shard's stats (counts summed; the shards ran at the same time, so times are the longest)."""
    for name in ("groups", "samples", "correct", "unscorable", "truncated", "reward_sum", "task_reward_sum",
                 "tokens"):
        setattr(into, name, getattr(into, name) + getattr(part, name))
    into.lengths += part.lengths
    into.generate_s = max(into.generate_s, part.generate_s)
    into.reward_s = max(into.reward_s, part.reward_s)


class RayRollouts:
    """Attach Ray generation actors to ``trainer`` (connect first: :func:`mta.ray_cluster.connect`).

    Parameters
    ----------
    trainer : mta.rl.trainer.Trainer
    actors : int, optional
        Generation replicas (default: one per GPU of the cluster, else one per CPU slot).
    overlap : bool
        One step off-policy: generate the next step while the learner trains (see the module).
    max_restarts : int
        Times Ray restarts an actor whose process died (its call is retried).
    """

    def __init__(self, trainer, actors: int | None = None, *, overlap: bool = False, max_restarts: int = 3):
        import ray

        from mta.ray_cluster import actor_options, slots

        if actors is not None and (isinstance(actors, bool) or not isinstance(actors, int) or actors < 1):
            raise ValueError(f"actors must be an int >= 1, got {actors!r}")
        if not ray.is_initialized():
            raise RuntimeError("RayRollouts: connect to Ray first (mta.ray_cluster.connect)")
        default, on_gpu = slots()
        self.count = actors or default
        self.trainer, self.overlap = trainer, overlap
        self.version = 0  # updates the learner has made since the actors were created
        self.weights: list | None = None  # [ObjectRef] of the latest weights
        # held: a restarted actor is constructed from it again (then catches up on the weights)
        self._initial = ray.put((copy.deepcopy(trainer.model).to("cpu"), trainer.tokenizer))
        cls = ray.remote(RolloutActor).options(**actor_options(on_gpu, max_restarts=max_restarts))
        self.actors = [cls.remote(self._initial, trainer.cfg, trainer.reward) for _ in range(self.count)]
        self.pids = ray.get([a.pid.remote() for a in self.actors])
        self._prefetch = None  # (prompt indices, stream state after them, refs, version)
        self._versions: list[int] = []  # versions of this step's rollouts
        self._broadcast: dict = {}
        trainer.generate_groups = self.generate_groups
        trainer.after_update = self.after_update

    # -- generation ------------------------------------------------------------------------

    def _submit(self, drawn, generator: torch.Generator, rng: random.Random):
        shards = [drawn[k::self.count] for k in range(self.count)]  # round-robin: every actor gets a share
        refs = []
        for actor, shard in zip(self.actors, shards):
            if shard:
                seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device))
                refs.append((actor.generate.remote(shard, seed, rng.getrandbits(62), self.weights, self.version),
                             len(shard)))
        return refs, self.version

    def generate_groups(self, model, tokenizer, drawn, reward, cfg, generator, rng, stats) -> list:
        """The trainer's ``generate_groups`` hook: ``drawn`` generated on the actors."""
        import ray

        key = [i for i, _ in drawn]
        state = self.trainer.stream.state_dict()
        if self._prefetch is not None and self._prefetch[0] == key and self._prefetch[1] == state:
            refs, version = self._prefetch[2], self._prefetch[3]
        else:  # nothing prefetched for these prompts (on-policy, the first step, or after a resume)
            refs, version = self._submit(drawn, generator, rng)
        self._prefetch = None
        parts = ray.get([ref for ref, _ in refs])
        shards: list[list] = []
        for groups, part, held in parts:
            if held != version:
                raise RuntimeError(f"a rollout came from weight version {held}, expected {version}")
            shards.append(groups)
            _merge(stats, part)
        # back to the order of `drawn` (shard k holds drawn[k::count])
        ordered = [None] * len(drawn)
        for k, groups in enumerate(shards):
            for j, g in enumerate(groups):
                ordered[k + j * self.count] = g
        self._versions.append(version)
        if self.overlap:  # the next prompts, on the weights the actors hold, while the learner trains
            stream = self.trainer.stream
            nxt = stream.next(cfg.prompts_per_step)
            after = stream.state_dict()
            stream.load_state_dict(state)
            refs, v = self._submit(nxt, generator, rng)
            self._prefetch = ([i for i, _ in nxt], after, refs, v)
        return ordered

    # -- after the update --------------------------------------------------------------------

    def after_update(self, row: dict) -> None:
        """The trainer's ``after_update`` hook: broadcast the new weights, log versions and transfer."""
        import ray

        versions, self._versions = self._versions, []
        row.update({"weight_version": min(versions) if versions else None,
                    "weight_staleness": self.version - min(versions) if versions else None})
        if row.get("skipped"):  # no update: the actors hold the current weights already
            return
        t0 = time.perf_counter()
        state = {k: v.detach().to("cpu") for k, v in self.trainer.model.state_dict().items()}
        nbytes = sum(v.numel() * v.element_size() for v in state.values())
        self.version += 1
        self.weights = [ray.put(state)]
        acks = [a.set_weights.remote(self.weights, self.version) for a in self.actors]
        if not self.overlap:  # on-policy: the next rollout waits for the current weights everywhere
            ray.get(acks)
        row.update({"weights_bytes": nbytes, "weights_broadcast_s": time.perf_counter() - t0})

    def close(self) -> None:
        """Stop the actors and detach from the trainer (it generates in-process again)."""
        import ray

        for actor in self.actors:
            ray.kill(actor, no_restart=True)
        self.actors, self._prefetch = [], None
        self.trainer.generate_groups = None
        self.trainer.after_update = None
