"""The two actors of the online loop, thin wrappers around the pure core (this file: the UtilityStore and its
client; online/bandit_actor.py: the BanditActor).

* `UtilityStore`: one index range of the per-sample state (core.utility.UtilityTable). Training
  workers push (index, loss) batches to it asynchronously; it accumulates each round's sums for the
  reward. `UtilityClient` spreads the pool over several stores by index range and merges their
  answers, so callers never see the sharding.
* `BanditActor`: EXP3 (core.bandit), the stored update directions (core.idu.DirectionMemory) and the
  round RNG. (The round log belongs to the Train worker of rank 0, which checkpoints it.)

Both hold no CPU (`num_cpus=0`): they are bookkeeping, and must never starve Ray Data or Train of
the CPUs they need. Their state goes in and out as bytes (`state` / `load_state`), never through a
path: on a cluster they live on another node than the Train worker that checkpoints them, so the
caller writes the files (`UtilityClient.save`, `save_bandit`) on its own node.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import ray

from lead_ray.core.select import merge_top_k, quotas_for, skips_for
from lead_ray.core.utility import UtilityTable
from lead_ray.files import write_bytes_atomic, write_text_atomic


# Both actors restart after a crash (max_restarts) with their state lost. Calls in flight then fail,
# and so does every later call until the state is loaded again (`needs_state`): the Train worker that
# made the call fails, Ray Train restarts the workers from the last checkpoint, and rank 0 restores
# both actors from it. The rounds since that checkpoint are redone, never counted twice, and a round
# never runs against a store that silently went back to its initial state.
class StateLost(RuntimeError):
    """The actor was restarted after its process died; its state is back only after `load_state`."""


def needs_state(method):
    @functools.wraps(method)
    def guarded(self, *args, **kwargs):
        if self.state_lost:
            raise StateLost(
                f"{type(self).__name__} restarted after its process died: its state is lost until it is "
                f"restored from the last checkpoint (Ray Train restarts the workers, which do that)"
            )
        return method(self, *args, **kwargs)

    return guarded


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=0)
class UtilityStore:
    def __init__(
        self,
        iu0: np.ndarray,
        cluster: np.ndarray,
        task: np.ndarray,
        offset: int,
        floor: np.ndarray | None = None,
        weight: np.ndarray | None = None,
    ):
        self.table = UtilityTable(iu0, cluster, task, offset, floor, weight)
        self.state_lost = ray.get_runtime_context().was_current_actor_reconstructed
        self.rounds: dict[int, list[float]] = {}  # round → [Σ(U_before − U_after), Σ loss, n]: the reward's sums

    @needs_state
    def apply(self, index, losses, delta, b: float, round_: int) -> int:
        """`delta`: the round's ΔL̂′ or one per sample."""
        drop, n = self.table.apply(np.asarray(index), np.asarray(losses), delta, b, round_)
        losses = np.asarray(losses, np.float64)
        acc = self.rounds.setdefault(round_, [0.0, 0.0, 0])
        acc[0] += drop
        acc[1] += float(np.nansum(losses))
        acc[2] += n
        return n

    @needs_state
    def round_sums(self, round_: int) -> list[float]:
        return self.rounds.get(round_, [0.0, 0.0, 0])

    @needs_state
    def round_summary(self, round_: int) -> tuple[list[float], int, dict[int, tuple[float, int]]]:
        """What a round's end reads, in one call: its sums, the samples used so far, each cluster's U sum."""
        return self.round_sums(round_), self.used_count(), self.cluster_sums()

    @needs_state
    def set_u(self, index, losses) -> int:
        return self.table.set_u(np.asarray(index), np.asarray(losses))

    @needs_state
    def eligible_counts(self, cluster: int, cap: int) -> dict[int, int]:
        return self.table.eligible_counts(cluster, cap)

    @needs_state
    def eligible_counts_all(self, n_clusters: int, cap: int) -> list[dict[int, int]]:
        return [self.table.eligible_counts(k, cap) for k in range(n_clusters)]  # one call a round, not one an arm

    @needs_state
    def top_k(self, cluster: int, quotas: dict[int, int], cap: int):
        return self.table.top_k(cluster, quotas, cap)

    @needs_state
    def mark_used(self, index) -> None:
        self.table.mark_used(np.asarray(index))

    @needs_state
    def cluster_sums(self) -> dict[int, tuple[float, int]]:
        return self.table.cluster_sums()

    @needs_state
    def peek(self, index) -> tuple[np.ndarray, np.ndarray]:
        """(U, use count) of these global indices."""
        local = np.asarray(index, np.int64) - self.table.offset
        return self.table.u[local].copy(), self.table.use_count[local].copy()

    @needs_state
    def ranking(self, index) -> tuple[np.ndarray, np.ndarray]:
        """(rank key, use count) of these global indices; the key is U, or U − floor (`selection.utility:
        reducible`), times the answer tokens with `selection.rank_by: total`."""
        local = np.asarray(index, np.int64) - self.table.offset
        return self.table.rank_key(local), self.table.use_count[local].copy()

    @needs_state
    def used_count(self) -> int:
        return int((self.table.use_count > 0).sum())

    @needs_state
    def columns(self) -> dict[str, np.ndarray]:
        t = self.table
        return {"u": t.u, "use_count": t.use_count, "last_loss": t.last_loss, "last_round": t.last_round}

    @needs_state
    def state(self) -> dict:
        """This shard's whole state as bytes and text. The caller writes it wherever it likes: an actor
        never reads or writes a path, because on a cluster it runs on another node than its caller."""
        return {"table": self.table.to_bytes(), "sums": json.dumps({str(k): v for k, v in self.rounds.items()})}

    def load_state(self, state: dict) -> None:
        self.state_lost = False
        self.table = UtilityTable.from_bytes(state["table"])
        self.rounds = {int(k): v for k, v in json.loads(state["sums"]).items()}

    def nbytes(self) -> int:
        return self.table.nbytes()


class UtilityClient:
    """The pool's utility state as one object, over `len(handles)` stores split by index range."""

    def __init__(self, handles: list, bounds: list[int]):
        self.handles, self.bounds = handles, bounds  # shard s holds [bounds[s], bounds[s+1])

    @classmethod
    def create(
        cls,
        iu0: np.ndarray,
        cluster: np.ndarray,
        task: np.ndarray,
        shards: int,
        name: str | None = None,
        floor: np.ndarray | None = None,
        resources: dict | None = None,
        weight: np.ndarray | None = None,
    ) -> UtilityClient:
        """`name`: the stores are named actors `{name}-{shard}` (findable with ray.get_actor, e.g. by operators).
        `floor`: the irreducible-loss floor per sample (`selection.utility: reducible`), or None.
        `weight`: the supervised answer tokens per sample (`selection.rank_by: total`), or None.
        `resources`: custom resources every shard requests (`train.placement_resources`)."""
        bounds = np.linspace(0, len(iu0), shards + 1).astype(int).tolist()
        handles = [
            UtilityStore.options(name=f"{name}-{s}" if name else None, resources=resources or {}).remote(
                iu0[a:b],
                cluster[a:b],
                task[a:b],
                a,
                None if floor is None else floor[a:b],
                None if weight is None else weight[a:b],
            )
            for s, (a, b) in enumerate(zip(bounds[:-1], bounds[1:]))
        ]
        return cls(handles, bounds)

    def _split(self, index: np.ndarray, *arrays):
        shard = np.searchsorted(self.bounds, index, side="right") - 1
        for s, h in enumerate(self.handles):
            mine = shard == s
            if mine.any():
                yield h, index[mine], [a[mine] for a in arrays]

    def apply_async(self, index: np.ndarray, losses: np.ndarray, delta, b: float, round_: int) -> list:
        """Fire-and-forget pushes (one per shard touched); the caller waits on the refs before the round ends.
        `delta`: the round's ΔL̂′ (a float) or one per sample (an array, split with the samples)."""
        if np.ndim(delta):
            split = self._split(np.asarray(index), np.asarray(losses), np.asarray(delta))
            return [
                h.apply.remote(part, part_losses, part_delta, b, round_) for h, part, (part_losses, part_delta) in split
            ]
        return [
            h.apply.remote(part, part_losses, delta, b, round_)
            for h, part, (part_losses,) in self._split(np.asarray(index), np.asarray(losses))
        ]

    def set_u_async(self, index: np.ndarray, losses: np.ndarray) -> list:
        split = self._split(np.asarray(index), np.asarray(losses))
        return [h.set_u.remote(part, part_losses) for h, part, (part_losses,) in split]

    def round_sums(self, round_: int) -> tuple[float, float, int]:
        parts = ray.get([h.round_sums.remote(round_) for h in self.handles])
        return sum(p[0] for p in parts), sum(p[1] for p in parts), int(sum(p[2] for p in parts))

    def eligible_counts(self, cluster: int, cap: int) -> dict[int, int]:
        """Per task group of a cluster, summed over shards: samples below the use cap."""
        counts: dict[int, int] = {}
        for part in ray.get([h.eligible_counts.remote(cluster, cap) for h in self.handles]):
            for g, c in part.items():
                counts[g] = counts.get(g, 0) + c
        return counts

    def eligible_counts_all(self, n_clusters: int, cap: int) -> list[dict[int, int]]:
        """eligible_counts of every cluster, in one call to each shard."""
        counts: list[dict[int, int]] = [{} for _ in range(n_clusters)]
        for part in ray.get([h.eligible_counts_all.remote(n_clusters, cap) for h in self.handles]):
            for k, groups in enumerate(part):
                for g, c in groups.items():
                    counts[k][g] = counts[k].get(g, 0) + c
        return counts

    def select(
        self, cluster: int, rho: float, cap: int, min_per_group: int, trim_top: float = 0.0, counts: dict | None = None
    ) -> np.ndarray:
        """Stratified top-k of one cluster: quotas and skips (`trim_top`) from all shards' counts (`counts` when the
        caller has them), then a merge."""
        counts = counts if counts is not None else self.eligible_counts(cluster, cap)
        quotas = quotas_for(counts, rho, min_per_group)
        if not quotas:
            return np.zeros(0, np.int64)
        skips = skips_for(counts, quotas, trim_top)
        depth = {g: k + skips[g] for g, k in quotas.items()}
        return merge_top_k(ray.get([h.top_k.remote(cluster, depth, cap) for h in self.handles]), quotas, skips)

    def mark_used(self, index: np.ndarray) -> None:
        ray.get([h.mark_used.remote(i) for h, i, _ in self._split(np.asarray(index))])

    def round_summary(self, round_: int) -> tuple[tuple[float, float, int], int, list[float]]:
        """A round's sums (round_sums), the samples used so far and each cluster's mean U: one call per shard."""
        parts = ray.get([h.round_summary.remote(round_) for h in self.handles])
        sums = [p[0] for p in parts]
        totals = (sum(p[0] for p in sums), sum(p[1] for p in sums), int(sum(p[2] for p in sums)))
        return totals, int(sum(p[1] for p in parts)), self._means([p[2] for p in parts])

    @staticmethod
    def _means(parts: list[dict[int, tuple[float, int]]]) -> list[float]:
        """Mean U of every difficulty cluster (index = cluster) from each shard's (sum, count) per cluster."""
        total: dict[int, list[float]] = {}
        for part in parts:
            for k, (s, n) in part.items():
                acc = total.setdefault(k, [0.0, 0])
                acc[0] += s
                acc[1] += n
        return [
            total[k][0] / max(total[k][1], 1) if k in total else float("nan") for k in range(max(total, default=-1) + 1)
        ]

    def peek(self, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(U, use count) of these global indices, in their order."""
        return self._per_sample("peek", index)

    def ranking(self, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(rank key, use count) of these global indices, in their order."""
        return self._per_sample("ranking", index)

    def _per_sample(self, method: str, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A shard method's (float32, uint8) answer per index: one call per shard touched, in the indices' order."""
        index = np.asarray(index, np.int64)
        values, used = np.zeros(len(index), np.float32), np.zeros(len(index), np.uint8)
        shard = np.searchsorted(self.bounds, index, side="right") - 1
        for s, h in enumerate(self.handles):
            mine = np.flatnonzero(shard == s)
            if len(mine):
                values[mine], used[mine] = ray.get(getattr(h, method).remote(index[mine]))
        return values, used

    def used_count(self) -> int:
        return sum(ray.get([h.used_count.remote() for h in self.handles]))

    def columns(self) -> dict[str, np.ndarray]:
        parts = ray.get([h.columns.remote() for h in self.handles])
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    def states(self) -> list[dict]:
        return ray.get([h.state.remote() for h in self.handles])

    def load_states(self, states: list) -> None:
        """`states`: one per shard, as `states()` gave them (or object refs to them)."""
        ray.get([h.load_state.remote(st) for h, st in zip(self.handles, states)])

    def save(self, folder: Path) -> None:
        """Write every shard's state into `folder`, from this (the caller's) process."""
        for s, st in enumerate(self.states()):
            write_bytes_atomic(Path(folder) / f"utility-{s:03d}.npz", st["table"])
            write_text_atomic(Path(folder) / f"utility-{s:03d}.npz.rounds.json", st["sums"])

    def restore(self, folder: Path) -> None:
        """Read every shard's state from `folder` in this process and send it to the shards."""
        folder = Path(folder)
        self.load_states(
            [
                {
                    "table": (folder / f"utility-{s:03d}.npz").read_bytes(),
                    "sums": (folder / f"utility-{s:03d}.npz.rounds.json").read_text(),
                }
                for s in range(len(self.handles))
            ]
        )

    def nbytes(self) -> int:
        return sum(ray.get([h.nbytes.remote() for h in self.handles]))
