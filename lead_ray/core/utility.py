"""Per-sample selection state in flat arrays (what the UtilityStore actor holds). Pure numpy; no Ray.

Samples are addressed by a dense index 0..N-1 assigned in ascending id order, so "ties broken by
id" is "ties broken by index". Per sample: U (float32), use count (uint8), last loss (float32),
last round (int32), difficulty cluster (int16), task group (int32): 19 bytes, plus 4 bytes of
int32 position in the (cluster, task group) index that selection reads.

With `selection.utility: reducible` the table also holds each sample's irreducible-loss floor (the warm-up
model's loss on its answer; 4 more bytes) and ranks by U − floor instead of U (ALGORITHM.md §12); U itself,
its updates and the reward are the same either way. With `selection.rank_by: total` or `saturating` it also
holds a weight per sample (4 bytes; `rank_weights`) and ranks by the key times it: the nats left to learn from
the sample, or a weight that saturates in its answer tokens, rather than a mean per token, which favours
short answers (docs/BENCHMARKS.md).

A table may hold one contiguous range of the index space (`offset`), so a pool too large for one
actor is split into shards by index range; shards answer in global indices.
"""

from __future__ import annotations

import io

import numpy as np

from lead_ray.core.idu import idu_update
from lead_ray.core.select import top_k_by_u

FIELDS = ("u", "use_count", "last_loss", "last_round", "cluster", "task")


def rank_weights(answer_tokens: np.ndarray, rank_by: str) -> np.ndarray | None:
    """What selection multiplies each sample's rank key by (`selection.rank_by`): nothing for 'mean' (the
    paper: a mean per answer token); n, the sample's supervised answer tokens, for 'total' (the nats left to
    learn from it); n / (n + m) for 'saturating', m the median n of the pool: a mean over a few tokens is noisy
    and weighs little, as under 'total', but no answer weighs more than twice one of median length."""
    n = np.asarray(answer_tokens, np.float64)
    if rank_by == "mean":
        return None
    if rank_by == "total":
        return n.astype(np.float32)
    if rank_by == "saturating":
        m = max(float(np.median(n)), 1.0) if len(n) else 1.0
        return (n / (n + m)).astype(np.float32)
    raise ValueError(f"rank_by must be mean, total or saturating, not {rank_by!r}")


class UtilityTable:
    def __init__(
        self,
        iu0: np.ndarray,
        cluster: np.ndarray,
        task: np.ndarray,
        offset: int = 0,
        floor: np.ndarray | None = None,
        weight: np.ndarray | None = None,
    ):
        self.offset = offset
        self.floor = None if floor is None else np.nan_to_num(np.asarray(floor, np.float32), nan=0.0)
        self.weight = None if weight is None else np.asarray(weight, np.float32).copy()
        self.u = np.asarray(iu0, np.float32).copy()
        self.use_count = np.zeros(len(self.u), np.uint8)
        self.last_loss = np.full(len(self.u), np.nan, np.float32)
        self.last_round = np.full(len(self.u), -1, np.int32)
        self.cluster = np.asarray(cluster, np.int16)
        self.task = np.asarray(task, np.int32)
        self._index_groups()

    def _index_groups(self) -> None:
        """Positions of every (cluster, task group), int32: a round touches only its cluster's groups."""
        order = np.lexsort((self.task, self.cluster)).astype(np.int32)
        keys = np.stack([self.cluster[order].astype(np.int64), self.task[order].astype(np.int64)], 1)
        cuts = np.flatnonzero(np.any(np.diff(keys, axis=0) != 0, axis=1)) + 1
        self._groups: dict[int, dict[int, np.ndarray]] = {}
        for part in np.split(order, cuts) if len(order) else []:
            self._groups.setdefault(int(self.cluster[part[0]]), {})[int(self.task[part[0]])] = part

    def __len__(self) -> int:
        return len(self.u)

    def nbytes(self) -> int:
        """Memory of the selection state: the per-sample arrays and the group index."""
        extra = sum(a.nbytes for a in (self.floor, self.weight) if a is not None)
        return (
            sum(getattr(self, f).nbytes for f in FIELDS)
            + extra
            + sum(p.nbytes for groups in self._groups.values() for p in groups.values())
        )

    def rank_key(self, local: np.ndarray) -> np.ndarray:
        """What selection ranks, at these local positions: U, or U − floor (the reducible part) when the
        table has a floor, times the answer tokens when it has weights. Computed for the positions asked
        only: a round touches one cluster."""
        key = self.u[local] if self.floor is None else self.u[local] - self.floor[local]
        return key if self.weight is None else key * self.weight[local]

    # ------------------------------------------------------------------ updates

    def apply(
        self, index: np.ndarray, losses: np.ndarray, delta: float | np.ndarray, b: float, round_: int
    ) -> tuple[float, int]:
        """IDU update of trained samples; returns (Σ (U_before − U_after), count) for the reward.
        `delta`: the round's ΔL̂′, or one per sample (`selection.delta: sample`)."""
        local = np.asarray(index, np.int64) - self.offset
        losses = np.asarray(losses, np.float32)
        ok = np.isfinite(losses)  # a sample with no supervised token keeps its U
        local, losses = local[ok], losses[ok]
        if np.ndim(delta):
            delta = np.asarray(delta, np.float32)[ok]
        before = self.u[local].copy()
        self.u[local] = idu_update(before, losses, delta, b)
        self.last_loss[local] = losses
        self.last_round[local] = round_
        return float((before - self.u[local]).sum()), int(len(local))

    def set_u(self, index: np.ndarray, losses: np.ndarray) -> int:
        """U ← the loss just measured (the `rescore` baseline's fresh pool-wide scoring); NaN keeps U."""
        local = np.asarray(index, np.int64) - self.offset
        losses = np.asarray(losses, np.float32)
        ok = np.isfinite(losses)
        self.u[local[ok]] = losses[ok]
        return int(ok.sum())

    def mark_used(self, index: np.ndarray) -> None:
        local = np.asarray(index, np.int64) - self.offset
        self.use_count[local] = np.minimum(self.use_count[local].astype(np.int32) + 1, 255).astype(np.uint8)

    # ------------------------------------------------------------------ selection

    def eligible_counts(self, cluster: int, cap: int) -> dict[int, int]:
        """Per task group of a cluster: how many samples are below the use cap."""
        out = {}
        for group, pos in self._groups.get(int(cluster), {}).items():
            n = int(np.count_nonzero(self.use_count[pos] < cap))
            if n:
                out[group] = n
        return out

    def top_k(self, cluster: int, quotas: dict[int, int], cap: int) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """Per task group: (global indices, U) of its top quota eligible samples, best first."""
        out = {}
        groups = self._groups.get(int(cluster), {})
        for group, k in quotas.items():
            pos = groups.get(int(group), np.zeros(0, np.int32))
            candidates = pos[self.use_count[pos] < cap].astype(np.int64)  # ascending: ties go to the smaller index
            key = self.rank_key(candidates)
            best = top_k_by_u(key, np.arange(len(candidates)), k)
            out[int(group)] = (candidates[best] + self.offset, key[best])
        return out

    def cluster_sums(self) -> dict[int, tuple[float, int]]:
        """Per difficulty cluster: (Σ U, count), so shards merge exactly into per-cluster means."""
        return {
            k: (
                float(sum(self.u[p].astype(np.float64).sum() for p in groups.values())),
                int(sum(len(p) for p in groups.values())),
            )
            for k, groups in self._groups.items()
        }

    # ------------------------------------------------------------------ persistence

    def to_bytes(self) -> bytes:
        """The whole table as one .npz in memory: state crosses processes and nodes as bytes, never as a path."""
        buf = io.BytesIO()
        extra = {name: a for name, a in (("floor", self.floor), ("weight", self.weight)) if a is not None}
        np.savez(buf, offset=self.offset, **{f: getattr(self, f) for f in FIELDS}, **extra)
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> UtilityTable:
        z = np.load(io.BytesIO(data), allow_pickle=False)
        optional = {name: z[name] if name in z.files else None for name in ("floor", "weight")}
        t = cls(z["u"], z["cluster"], z["task"], int(z["offset"]), **optional)
        for f in FIELDS:
            setattr(t, f, z[f].copy())
        t._index_groups()
        return t
