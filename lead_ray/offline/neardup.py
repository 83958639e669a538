"""Near-duplicate prompts, partitioned so that no process holds more than one partition.

A pool of N trainable points is split into P = ⌈N / cluster.near_dup_partition_rows⌉ partitions by
k-means on its prompt embeddings (fit on a seeded sample of cluster.fit_sample points; assignment is an
exact argmin over the P centroids), the way semantic de-duplication is done at scale. Each partition is
one Ray task, which flags each point whose cosine similarity to an *earlier* point (pool order) is at least
cluster.near_dup_threshold: exactly (blocked matrix products) or with an hnswlib k-NN search
(cluster.near_dup_search). Pairs that straddle two partitions are
missed; bench/scale/run.py measures how many against the single pass. With P = 1 (a pool at or under the
partition size) this is the single pass over all points.

Stages (each a set of Ray tasks over files): partition the scored units → de-duplicate each partition
→ results per unit, so the assignment of a unit reads only its own rows' flags.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from lead_ray.config import ClusterConfig
from lead_ray.files import write_parquet_atomic
from lead_ray.stages import run_units

NEIGHBOURS = 5  # nearest neighbours examined per point by the hnsw search
# 'auto' searches a partition exactly up to this many points: 20k points took 1.5 s exact against 2.3 s for
# hnswlib (M 16, ef 100) on this machine's 2 cores, and found the same pairs; exact grows with points²
EXACT_MAX_POINTS = 32_768
DUP_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("near_dup_of", pa.string()),
        ("similarity", pa.float32()),
        ("unit", pa.int32()),
        ("row", pa.int64()),
    ]
)


def embeddings(table: pa.Table) -> np.ndarray:
    column = table["embedding"].combine_chunks()
    return column.values.to_numpy().reshape(table.num_rows, -1) if table.num_rows else np.zeros((0, 1), np.float32)


def sample_rows(units: list[str], wanted: np.ndarray) -> dict[int, np.ndarray]:
    """Embeddings of the given pool positions (units concatenated), streaming the units."""
    sample, offset = {}, 0
    for u in units:
        n = pq.ParquetFile(u).metadata.num_rows
        local = wanted[(wanted >= offset) & (wanted < offset + n)] - offset
        if len(local):
            emb = embeddings(pq.read_table(u, columns=["embedding"]))
            sample.update(zip((local + offset).tolist(), emb[local]))
        offset += n
    return sample


def partition_centroids(units, trainable: np.ndarray, cluster_cfg: ClusterConfig, seed: int) -> np.ndarray | None:
    """P centroids of the prompt embeddings (None when one partition holds every point)."""
    from sklearn.cluster import KMeans

    points = np.flatnonzero(trainable)
    parts = math.ceil(len(points) / cluster_cfg.near_dup_partition_rows)
    if parts <= 1:
        return None
    rng = np.random.default_rng([seed, 11])
    wanted = np.sort(rng.choice(points, size=min(max(cluster_cfg.fit_sample, 20 * parts), len(points)), replace=False))
    sample = sample_rows(units, wanted)
    x = np.stack([sample[int(r)] for r in wanted]).astype(np.float32)
    return KMeans(n_clusters=parts, n_init=1, random_state=seed).fit(x).cluster_centers_.astype(np.float32)


def partition_unit(unit: str, unit_no: int, centroids: list | None, out_dir: str) -> dict:
    """Stage body: a unit's trainable points (id, pool key, embedding) into one file per partition."""
    from lead_ray.offline.cluster import nearest

    t = pq.read_table(unit, columns=["id", "embedding", "trainable"])
    t = t.append_column("row", pa.array(np.arange(t.num_rows, dtype=np.int64)))
    t = t.filter(t["trainable"]).drop_columns(["trainable"])
    t = t.append_column("unit", pa.array(np.full(t.num_rows, unit_no, np.int32)))
    part = np.zeros(t.num_rows, np.int32) if centroids is None else nearest(np.array(centroids), embeddings(t))
    for p in np.unique(part):
        folder = Path(out_dir) / f"p{int(p):05d}"
        folder.mkdir(parents=True, exist_ok=True)
        write_parquet_atomic(t.filter(pa.array(part == p)), folder / f"u{unit_no:05d}.parquet")
    return {"points": t.num_rows}


def dedup_partition(partition: str, cluster_cfg: ClusterConfig, out_dir: str) -> dict:
    """Stage body: the search within one partition; flags written per unit (out_dir/u<unit>/<partition>.parquet)."""
    t = pa.concat_tables([pq.read_table(f) for f in sorted(Path(partition).glob("*.parquet"))])
    t = t.sort_by([("unit", "ascending"), ("row", "ascending")])  # pool order: "earlier" means earlier here
    x = embeddings(t).astype(np.float32)
    method = search_method(cluster_cfg.near_dup_search, len(x))
    found = np.zeros(0, np.int64)
    if len(x) > 1 and method == "exact":
        found, of, sim = exact_earlier(x, cluster_cfg.near_dup_threshold)
    elif len(x) > 1:
        found, of, sim = hnsw_earlier(x, cluster_cfg)
    if len(found):
        flags = pa.table(
            {
                "id": t["id"].take(pa.array(found)),
                "near_dup_of": t["id"].take(pa.array(of)),
                "similarity": pa.array(sim, pa.float32()),
                "unit": t["unit"].take(pa.array(found)),
                "row": t["row"].take(pa.array(found)),
            }
        ).cast(DUP_SCHEMA)
        for u in np.unique(flags["unit"].to_numpy()):
            folder = Path(out_dir) / f"u{int(u):05d}"
            folder.mkdir(parents=True, exist_ok=True)
            write_parquet_atomic(flags.filter(pc.equal(flags["unit"], u)), folder / f"{Path(partition).name}.parquet")
    return {"points": len(x), "near_duplicates": int(len(found)), "search": method}


def search_method(setting: str, points: int) -> str:
    """cluster.near_dup_search for a partition of this many points ('auto': exact while it costs little)."""
    return setting if setting != "auto" else ("exact" if points <= EXACT_MAX_POINTS else "hnsw")


def exact_earlier(x: np.ndarray, threshold: float, block: int = 1024):
    """(point, the earlier point it duplicates, similarity) for every point whose most similar earlier point
    reaches the threshold; ties to the earliest. x: unit rows in pool order. Each block of rows is multiplied
    with every row up to the block's end (the diagonal block masked to the strictly earlier ones), so memory
    stays at block × points floats."""
    later = np.triu(np.ones((block, block), bool))  # inside the diagonal block: the same or a later point
    found, of, sim = [], [], []
    for start in range(0, len(x), block):
        end = min(start + block, len(x))
        dots = x[start:end] @ x[:end].T
        dots[:, start:end][later[: end - start, : end - start]] = -np.inf
        best = dots.argmax(1)  # the first maximum: ties go to the earliest point
        top = dots[np.arange(end - start), best]
        hit = np.flatnonzero(top >= threshold)
        found.append(start + hit)
        of.append(best[hit])
        sim.append(top[hit])
    return np.concatenate(found), np.concatenate(of), np.concatenate(sim)


def hnsw_earlier(x: np.ndarray, cluster_cfg: ClusterConfig):
    """exact_earlier's result, approximately: only the NEIGHBOURS nearest points are examined, by hnswlib."""
    import hnswlib

    index = hnswlib.Index(space="ip", dim=x.shape[1])
    index.init_index(max_elements=len(x), M=cluster_cfg.hnsw_m, ef_construction=cluster_cfg.hnsw_ef, random_seed=0)
    index.add_items(x, np.arange(len(x)))
    index.set_ef(max(cluster_cfg.hnsw_ef, NEIGHBOURS + 1))
    labels, dist = index.knn_query(x, k=min(NEIGHBOURS + 1, len(x)))
    return earlier_matches(labels.astype(np.int64), 1.0 - dist, cluster_cfg.near_dup_threshold)


def earlier_matches(labels: np.ndarray, sim: np.ndarray, threshold: float):
    """(point, the earlier point it duplicates, similarity) for every point with an earlier neighbour at or above
    the threshold; the most similar one, ties to the earliest. labels/sim: k-NN (n, k); 'ip' distance = 1 − dot."""
    me = np.arange(len(labels))[:, None]
    ok = (labels < me) & (sim >= threshold)
    score = np.where(ok, sim, -np.inf)
    best = np.lexsort((labels, -score), axis=-1)[:, 0]  # highest similarity, then the smallest label
    rows = np.flatnonzero(ok.any(1))
    return rows, labels[rows, best[rows]], score[rows, best[rows]]


def find_near_duplicates(
    units: list[str], trainable: np.ndarray, cluster_cfg: ClusterConfig, seed: int, out: Path, step=None
):
    """Write out/near_dups.parquet (id, near_dup_of, similarity, unit, row) and out/near_dups/u<unit>/ per unit.
    step: a cluster.Steps that records each step's seconds, or None."""
    done = step.done if step else lambda name: None
    work, flags = out / "near_dup_partitions", out / "near_dups"
    for folder in (work, flags):
        shutil.rmtree(folder, ignore_errors=True)
    centroids = partition_centroids(units, trainable, cluster_cfg, seed)
    done("near_dup_partition_fit")
    run_units(
        [{"unit": u, "unit_no": k} for k, u in enumerate(units)],
        partition_unit,
        {"centroids": None if centroids is None else centroids.tolist(), "out_dir": str(work)},
        "PartitionForNearDups",
    )
    done("near_dup_partition_write")
    partitions = sorted(str(p) for p in work.glob("p*"))
    results = run_units(
        [{"partition": p} for p in partitions],
        dedup_partition,
        {"cluster_cfg": cluster_cfg, "out_dir": str(flags)},
        "NearDuplicates",
    )
    done("near_dup_search")
    shutil.rmtree(work, ignore_errors=True)
    with pq.ParquetWriter(out / "near_dups.parquet", DUP_SCHEMA) as writer:  # one unit's flags at a time
        for f in sorted(flags.glob("u*/*.parquet")):
            writer.write_table(pq.read_table(f).cast(DUP_SCHEMA))
    done("near_dup_collect")
    sizes = [r["points"] for r in results]
    return {
        "points": int(sum(sizes)),
        "near_duplicates": int(sum(r["near_duplicates"] for r in results)),
        "near_dup_partitions": len(partitions),
        "near_dup_largest_partition": max(sizes, default=0),
        "near_dup_search": sorted({r["search"] for r in results}),
    }


def unit_flags(out: Path, unit_no: int, n_rows: int) -> pa.ChunkedArray:
    """near_dup_of for every row of one unit (null where none), read from that unit's flag files only."""
    files = sorted((out / "near_dups" / f"u{unit_no:05d}").glob("*.parquet"))
    which = np.full(n_rows, -1, np.int64)
    if not files:
        return pa.chunked_array([pa.nulls(n_rows, pa.string())])
    flags = pa.concat_tables([pq.read_table(f, columns=["near_dup_of", "row"]) for f in files])
    which[flags["row"].to_numpy()] = np.arange(flags.num_rows)
    return flags["near_dup_of"].take(pa.array(which, mask=which < 0))
