"""`lead-ray cluster`: difficulty clusters (bandit arms) × task groups, and near-duplicates (ALGORITHM.md §4.4).

1. Difficulty: k-means on the 1-D IFD score of the trainable samples, K = cluster.difficulty_k
   (LEAD: 7). Clusters are numbered by ascending centroid, so 0 is the easiest; the IFD = 0 samples
   (invalid or > 1, ALGORITHM.md §10 D14) usually form their own cluster.
2. Task groups inside each difficulty cluster (ALGORITHM.md §10 D6), by cluster.task_groups:
   * embedding (default; the paper's description): k-means on the prompt embeddings of up to
     cluster.fit_sample points of the cluster, then every point assigned to its nearest centroid
     (an exact argmin);
   * source or task: the input file, or the ground-truth label (the official code's choice).
3. Near-duplicates (neardup.py): an exact search (or, for big partitions, an hnswlib k-NN search) flags
   each sample whose cosine similarity to an *earlier* sample (pool order) is at least
   cluster.near_dup_threshold; over all prompt embeddings at once, or, past cluster.near_dup_partition_rows
   points, within k-means partitions of them, one Ray task each.
   They are counted, and dropped when cluster.drop_near_dups.

Output: clustered/pool/*.parquet (the scored rows, minus the embedding, plus difficulty_cluster,
task_cluster, near_dup_of; each file ordered by difficulty cluster then IU₀, in row groups a round reads
by row number: data/rows.py) and their narrow copies in clustered/pool.narrow/ (the same rows without
the conversations, for the run's driver), clustered/near_dups.parquet, and clusters.json. Counts add up:
scored rows = clustered rows + not trainable + dropped (near-duplicates, IFD > 1, iu0_end above
cluster.end_nll_above, iu0_end an outlier within its source group by cluster.end_z_above).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from lead_ray.config import ClusterConfig, Config
from lead_ray.core import bins
from lead_ray.core.gate import group_thresholds, keep_below
from lead_ray.data.rows import write_pool_file
from lead_ray.data.sources import collapsed_folders, source_group
from lead_ray.files import require
from lead_ray.offline.neardup import embeddings, find_near_duplicates, sample_rows, unit_flags
from lead_ray.presets import switches
from lead_ray.stages import run_units


class Steps:
    """Wall seconds of each named step, in the order they finish (clusters.json: step_seconds)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._last = time.perf_counter()

    def done(self, name: str) -> None:
        now = time.perf_counter()
        self.seconds[name] = round(now - self._last, 2)
        self._last = now


def kmeans_1d(values: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Sorted centroids of a 1-D k-means (fewer when there are fewer distinct values)."""
    from sklearn.cluster import KMeans

    k = min(k, len(np.unique(values)))
    km = KMeans(n_clusters=k, n_init=10, random_state=seed).fit(values.reshape(-1, 1).astype(np.float64))
    return np.sort(km.cluster_centers_.ravel())


def difficulty_edges(ifd: np.ndarray, k: int, how: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(inner arm edges, each arm's centre) of the trainable samples' IFD: 1-D k-means (centre = centroid) or
    equal-count quantile bins (centre = the arm's mean IFD); core/bins.py."""
    if how == "kmeans":
        centroids = kmeans_1d(ifd, k, seed)
        return bins.kmeans_edges(centroids), centroids
    edges = bins.quantile_edges(ifd, k)
    arm = bins.assign(ifd, edges)
    return edges, np.array([float(ifd[arm == a].mean()) for a in range(len(edges) + 1)])


def nearest(centroids: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Index of each point's nearest centroid (L2; ties to the lower index): an exact argmin over a few dozen
    centroids, in blocks so memory stays at block × centroids. No ANN index is needed at this size."""
    centroids = np.asarray(centroids, np.float32)
    c_sq = (centroids * centroids).sum(1)
    out = np.empty(len(points), np.int32)
    for start in range(0, len(points), 65536):
        block = np.asarray(points[start : start + 65536], np.float32)
        d = c_sq[None, :] - 2.0 * block @ centroids.T  # ‖x‖² is the same for every centroid: left out
        out[start : start + len(block)] = d.argmin(1)
    return out


def assign_unit(
    unit: str,
    unit_no: int,
    out_dir: str,
    edges: list,
    drop_ifd_above_one: bool,
    end_nll_above: float | None,
    end_z: dict | None,
    task_mode: str,
    task_centroids: dict,
    label_index: dict,
    near_dups: str,  # the clustered folder: its near_dups/u<unit>/ hold this unit's flags
    drop: bool,
    cluster_cfg: ClusterConfig,
) -> dict:
    """Stage body: label one scored unit with its clusters and write it to clustered/pool."""
    t = pq.read_table(unit)
    n_in = t.num_rows
    t = t.append_column("near_dup_of", unit_flags(Path(near_dups), unit_no, n_in))
    t = t.filter(t["trainable"])
    not_trainable = n_in - t.num_rows
    t, dropped = _gate(t, drop_ifd_above_one, end_nll_above, end_z, drop)
    difficulty = bins.assign(t["ifd"].to_numpy(zero_copy_only=False), np.array(edges))
    task = task_groups(t, difficulty, task_mode, task_centroids, label_index)
    t = (
        t.drop_columns(["embedding", "trainable"])
        .append_column("difficulty_cluster", pa.array(difficulty, pa.int16()))
        .append_column("task_cluster", pa.array(task, pa.int32()))
    )
    write_pool_file(t, Path(out_dir) / Path(unit).name)  # ordered by arm, then IU₀: a round reads few groups
    return {
        "rows_in": n_in,
        "rows_out": t.num_rows,
        "not_trainable": not_trainable,
        **dropped,
        "pairs": _arm_pairs(t),
    }


def _gate(t: pa.Table, drop_ifd_above_one: bool, end_nll_above, end_z: dict | None, drop: bool):
    """The cluster stage's filters in order, and how many rows each dropped (with not_trainable and rows_out
    they add up to rows_in)."""
    counts = {"ifd_above_one_dropped": 0, "end_nll_dropped": 0, "end_z_dropped": 0, "near_dups_dropped": 0}

    def keep_only(t: pa.Table, name: str, keep) -> pa.Table:
        keep = pa.array(keep) if isinstance(keep, np.ndarray) else keep
        counts[name] = t.num_rows - int(pc.sum(keep.cast(pa.int64())).as_py() or 0)
        return t.filter(keep)

    if drop_ifd_above_one:  # cluster.ifd_above_one: drop (NaN = unknown IFD, kept)
        t = keep_only(t, "ifd_above_one_dropped", pc.invert(pc.fill_null(pc.greater(t["ifd_raw"], 1.0), False)))
    if end_nll_above is not None:  # cluster.end_nll_above (NaN = no end token supervised, kept)
        t = keep_only(t, "end_nll_dropped", pc.invert(pc.fill_null(pc.greater(t["iu0_end"], end_nll_above), False)))
    if end_z is not None:  # cluster.end_z_above: each source group against its own threshold
        names, codes = _group_codes(t["source"], set(end_z["collapsed"]))
        thresholds = np.array([end_z["thresholds"].get(n, np.inf) for n in names] or [np.inf])
        t = keep_only(t, "end_z_dropped", keep_below(t["iu0_end"].to_numpy(zero_copy_only=False), codes, thresholds))
    if drop:
        t = keep_only(t, "near_dups_dropped", pc.is_null(t["near_dup_of"]))
    return t, counts


def _arm_pairs(t: pa.Table) -> list:
    """How many rows each (difficulty cluster, task group) pair holds, as 'd:t' value counts."""
    if not t.num_rows:
        return []
    pair = pc.binary_join_element_wise(
        pc.cast(t["difficulty_cluster"], pa.string()), pc.cast(t["task_cluster"], pa.string()), ":"
    )
    return pc.value_counts(pair).to_pylist()


def task_groups(t: pa.Table, difficulty: np.ndarray, task_mode: str, task_centroids: dict, label_index: dict):
    """Each row's task group inside its difficulty cluster: the nearest of that cluster's embedding centroids,
    or the index of its source/task label."""
    if task_mode != "embedding":
        return np.array([label_index[str(v)] for v in t[task_mode].to_pylist()], np.int32)
    emb = embeddings(t)
    task = np.zeros(t.num_rows, np.int32)
    for k in np.unique(difficulty):
        rows = np.flatnonzero(difficulty == k)
        task[rows] = nearest(np.array(task_centroids[str(k)], dtype=np.float32), emb[rows])
    return task


def _fit_task_centroids(units, difficulty_all, trainable_all, k_diff, cluster_cfg: ClusterConfig, seed: int) -> dict:
    """k-means per difficulty cluster on a seeded sample of its prompt embeddings."""
    from sklearn.cluster import KMeans

    rng = np.random.default_rng(seed)
    trainable_pos = np.flatnonzero(trainable_all)
    chosen = {}
    for k in range(k_diff):
        members = trainable_pos[difficulty_all[trainable_pos] == k]
        if len(members):
            chosen[k] = np.sort(rng.choice(members, size=min(cluster_cfg.fit_sample, len(members)), replace=False))
    wanted = np.concatenate(list(chosen.values())) if chosen else np.zeros(0, np.int64)
    sample = sample_rows(units, wanted)  # streams the units, keeping only the sampled rows' embeddings
    centroids, inertia = {}, {}
    for k, rows in chosen.items():
        x = np.stack([sample[r] for r in rows]).astype(np.float64)
        m = min(cluster_cfg.task_k, len(np.unique(x, axis=0)))
        km = KMeans(n_clusters=m, n_init=3, random_state=seed).fit(x)
        centroids[str(k)] = km.cluster_centers_.astype(np.float32).tolist()
        inertia[str(k)] = float(km.inertia_)
    return {"centroids": centroids, "inertia": inertia, "fit_points": {str(k): len(v) for k, v in chosen.items()}}


def _group_codes(sources: pa.ChunkedArray, collapsed: set[str]) -> tuple[list[str], np.ndarray]:
    """(source group names, each row's index into them), through the column's dictionary: a row's string is
    never turned into a Python object."""
    encoded = pc.dictionary_encode(sources).combine_chunks()
    names = [source_group(s, collapsed) for s in encoded.dictionary.to_pylist()]
    unique = sorted(set(names))
    remap = np.array([unique.index(n) for n in names], np.int64)
    return unique, remap[encoded.indices.to_numpy(zero_copy_only=False)]


def _end_z_gate(units: list[str], end: np.ndarray, keep: np.ndarray, z: float) -> tuple[dict, np.ndarray]:
    """cluster.end_z_above: each source group's threshold from the pairs still kept (core/gate.py), and which
    rows it keeps. Reads one small column per unit; the driver holds one int per row."""
    collapsed = collapsed_folders(
        {s for u in units for s in pc.unique(pq.read_table(u, columns=["source"])["source"]).to_pylist()}
    )
    per_unit = [_group_codes(pq.read_table(u, columns=["source"])["source"], collapsed) for u in units]
    names = sorted({n for unit_names, _ in per_unit for n in unit_names})
    codes = np.concatenate([np.array([names.index(n) for n in un], np.int64)[c] for un, c in per_unit])
    scored = np.where(keep, end, np.nan)  # rows already out (untrainable, dropped) do not set a threshold
    thresholds = group_thresholds(scored, codes, len(names), z)
    gate = {"collapsed": sorted(collapsed), "thresholds": dict(zip(names, thresholds.tolist()))}
    return gate, keep_below(end, codes, thresholds)


def _read_scores(
    units: list[str], drop_above_one: bool, end_nll_above: float | None, end_z_above: float | None, difficulty_k: int
):
    """(IFD, near-dup points = trainable, clustered = trainable and not dropped for IFD > 1 or iu0_end, the
    relative end-token gate or None) of every row."""
    switch_columns = {"ifd_raw": "cluster.ifd_above_one=keep", "iu0_end": "cluster.end_nll_above=null"}
    ends = end_nll_above is not None or end_z_above is not None
    wanted = (["ifd_raw"] if drop_above_one else []) + (["iu0_end"] if ends else [])
    missing = [c for c in wanted if c not in pq.read_schema(units[0]).names]
    if missing:
        raise ValueError(
            f"{units[0]} has no column {missing[0]}: it was scored by an older lead-ray; run `lead-ray score` "
            f"again (or --set {switch_columns[missing[0]]})"
        )
    small = pa.concat_tables([pq.read_table(u, columns=["ifd", "trainable", *wanted]) for u in units])
    ifd = small["ifd"].to_numpy(zero_copy_only=False)
    trainable = points = small["trainable"].to_numpy(zero_copy_only=False)
    # the rows a switch drops are left out of the fit as they are left out of the pool (NaN: kept)
    if drop_above_one:
        trainable = trainable & ~(np.nan_to_num(small["ifd_raw"].to_numpy(zero_copy_only=False), nan=0.0) > 1)
    if end_nll_above is not None:
        end = small["iu0_end"].to_numpy(zero_copy_only=False)
        trainable = trainable & ~(np.nan_to_num(end, nan=-np.inf) > end_nll_above)
    end_z = None
    if end_z_above is not None:
        end_z, kept = _end_z_gate(units, small["iu0_end"].to_numpy(zero_copy_only=False), trainable, end_z_above)
        trainable = trainable & kept
    if not trainable.any():
        raise ValueError("no trainable sample in the scored pool (every prompt fills model.max_length?)")
    if difficulty_k > int(trainable.sum()):
        from lead_ray.config import ConfigError

        raise ConfigError(
            f"'cluster.difficulty_k' = {difficulty_k} is larger than the pool's {int(trainable.sum())} "
            "trainable samples: lower it (or add data)"
        )
    return ifd, points, trainable, end_z


def _task_labels(units: list[str], column: str) -> dict[str, int]:
    """Task group of each distinct label (`cluster.task_groups: source | task`), in sorted order."""
    labels = sorted({str(v) for u in units for v in pq.read_table(u, columns=[column])[column].to_pylist()})
    return {v: i for i, v in enumerate(labels)}


ROW_COUNTS = (
    "rows_in",
    "rows_out",
    "not_trainable",
    "near_dups_dropped",
    "ifd_above_one_dropped",
    "end_nll_dropped",
    "end_z_dropped",
)


def _add_up(results: list[dict]) -> tuple[dict, dict]:
    """(row counts summed over units, which must add up; samples per difficulty cluster and task group)."""
    sizes: dict[str, dict[str, int]] = {}
    for r in results:
        for pair in r["pairs"]:
            k, j = pair["values"].split(":")
            sizes.setdefault(k, {}).setdefault(j, 0)
            sizes[k][j] += pair["counts"]
    totals = {key: sum(r[key] for r in results) for key in ROW_COUNTS}
    assert totals["rows_in"] == sum(v for k, v in totals.items() if k != "rows_in")
    by_number = sorted(sizes.items(), key=lambda kv: int(kv[0]))
    return totals, {k: dict(sorted(v.items(), key=lambda kv: int(kv[0]))) for k, v in by_number}


def cluster(cfg: Config) -> dict:
    """Cluster the scored pool; write clustered/pool, near_dups.parquet and clusters.json."""
    t0 = time.perf_counter()
    cluster_cfg = cfg.cluster
    units_dir = require(cfg.stage_dir("scored") / "units", "*.parquet", "scored units", "score")
    units = sorted(str(p) for p in units_dir.glob("*.parquet"))
    out = _emptied_output(cfg)
    chosen = switches(cfg)
    drop_above_one = chosen.ifd_above_one == "drop"
    step = Steps()
    ifd, points, trainable, end_z = _read_scores(
        units, drop_above_one, cluster_cfg.end_nll_above, cluster_cfg.end_z_above, cluster_cfg.difficulty_k
    )
    step.done("read_scores")
    edges, centroids = difficulty_edges(ifd[trainable], cluster_cfg.difficulty_k, chosen.difficulty_bins, cfg.seed)
    difficulty_all = bins.assign(ifd, edges)
    step.done("difficulty_bins")
    label_index, task_fit = {}, {}
    if cluster_cfg.task_groups == "embedding":
        task_fit = _fit_task_centroids(units, difficulty_all, trainable, len(centroids), cluster_cfg, cfg.seed)
    else:
        label_index = _task_labels(units, cluster_cfg.task_groups)
    step.done("task_groups_fit")
    dup_stats = find_near_duplicates(units, points, cluster_cfg, cfg.seed, out, step)
    results = run_units(
        [{"unit": u, "unit_no": k} for k, u in enumerate(units)],
        assign_unit,
        {
            "out_dir": str(out / "pool"),
            "edges": edges.tolist(),
            "drop_ifd_above_one": drop_above_one,
            "end_nll_above": cluster_cfg.end_nll_above,
            "end_z": end_z,
            "task_mode": cluster_cfg.task_groups,
            "task_centroids": task_fit.get("centroids", {}),
            "label_index": label_index,
            "near_dups": str(out),
            "drop": cluster_cfg.drop_near_dups,
            "cluster_cfg": cluster_cfg,
        },
        "AssignClusters",
    )
    step.done("assign")
    totals, sizes = _add_up(results)
    stats = {
        **totals,
        **_summary(cluster_cfg, chosen, (edges, centroids), end_z, (task_fit, label_index), sizes, dup_stats),
        "seconds": round(time.perf_counter() - t0, 2),
        "step_seconds": step.seconds,
    }
    (out / "clusters.json").write_text(json.dumps(stats, indent=2) + "\n")
    return stats


def _emptied_output(cfg: Config) -> Path:
    """clustered/, emptied of an earlier clustering's pool files (a reader would take them as part of this pool)."""
    out = cfg.stage_dir("clustered")
    (out / "pool").mkdir(parents=True, exist_ok=True)
    for old in [*(out / "pool").glob("*.parquet"), *(out / "pool.narrow").glob("*.parquet")]:
        old.unlink()
    return out


def _summary(cluster_cfg: ClusterConfig, chosen, difficulty, end_z, task, sizes: dict, dup_stats: dict) -> dict:
    """clusters.json's record of how the pool was clustered: a run checks its switches against it."""
    edges, centroids = difficulty
    task_fit, label_index = task
    return {
        "difficulty_k": len(centroids),
        "difficulty_k_requested": cluster_cfg.difficulty_k,
        "difficulty_bins": chosen.difficulty_bins,
        "difficulty_centroids": centroids.tolist(),
        "difficulty_edges": edges.tolist(),
        "ifd_above_one": chosen.ifd_above_one,
        "end_nll_above": cluster_cfg.end_nll_above,
        "end_z_above": cluster_cfg.end_z_above,
        "end_z_thresholds": end_z["thresholds"] if end_z else None,
        "difficulty_sizes": {k: sum(v.values()) for k, v in sizes.items()},
        "task_groups": cluster_cfg.task_groups,
        "task_sizes": sizes,
        "task_kmeans_inertia": task_fit.get("inertia"),
        "task_fit_points": task_fit.get("fit_points"),
        "task_labels": label_index or None,
        "near_duplicates": dup_stats["near_duplicates"],
        "near_dup_partitions": dup_stats["near_dup_partitions"],
        "near_dup_largest_partition": dup_stats["near_dup_largest_partition"],
        "near_dup_search": dup_stats["near_dup_search"],
        "near_dup_threshold": cluster_cfg.near_dup_threshold,
    }
