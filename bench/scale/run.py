"""Scale benchmark: the stages that used to hold the whole pool in one process, at growing pool sizes.

    python bench/scale/run.py [--run-sizes 1000000,3000000,10000000] [--cluster-sizes 300000,1000000,3000000]
                          [--neardup-sizes 100000] [--prepare-copies 26]

Each (stage, size) runs in a fresh subprocess, so its peak RSS (VmHWM) is its own; a sampler thread in
it polls every process of its Ray session for the largest one. Synthetic pools come from
bench/scale/data.py (cached by their settings). Results go to bench/results/scale.json, merged per stage and size.

run: the driver's work before the first round and per round, with the conversations on disk: index
  (ids and their held-out hashes read, id sort) and selection columns read, both from the pool files'
  narrow copies (`run_read` times these two reads both ways on the same pool, each in its own process),
  the round layout written (index → pool row; the pool files are in `lead-ray cluster`'s layout),
  UtilityStore shards and BanditActor started, then ROUNDS bandit rounds of the store side
  (allowed arms, the arm's stratified top-ρ, budget cut, mark used: `select_round_s`) and one worker's
  read of a round's conversations (`read_round_s`). Training itself does not depend on the pool size
  and is measured by bench/micro/loop.py.
neardup: the partitioned near-duplicate search (5 and 20 partitions, exact within each; and 5 searched by
  hnswlib) against the single exact search over the same points: recall = pairs found / pairs the single
  exact search finds.
cluster: `lead-ray cluster` end to end on synthetic scored units (384-d embeddings with 5% planted near
  copies, IFD, trainable), the default config (its near_dup_partition_rows decides the partitions).
prepare: bench/micro/ingest.py on K physical copies of the shared pool (its marginal rows/s, driver peak RSS).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
RESULT = ROOT / "bench" / "results" / "scale.json"
sys.path.insert(0, str(ROOT))
from bench.scale.data import make_run_pool, make_scored_units  # noqa: E402

ROUNDS = 5


def log(msg: str) -> None:
    print(f"[scale] {msg}", file=sys.stderr, flush=True)


def vm_hwm_mb(pid: str = "self") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class RaySampler(threading.Thread):
    """Largest RSS of any process below this one (raylet, GCS, workers, actors), polled."""

    def __init__(self, every: float = 0.2):
        super().__init__(daemon=True)
        self.every, self.peak_mb, self.peak_name, self.stop = every, 0.0, "", threading.Event()

    def run(self) -> None:
        import psutil

        me = psutil.Process()
        while not self.stop.is_set():
            for proc in me.children(recursive=True):
                try:
                    rss = proc.memory_info().rss / 2**20
                    if rss > self.peak_mb:
                        self.peak_mb, self.peak_name = rss, " ".join(proc.cmdline()[:1])[:60]
                except Exception:  # gone between listing and reading
                    pass
            self.stop.wait(self.every)


# ----------------------------------------------------------------------------- stages (in a subprocess)


def measure_cluster(n: int, seed: int) -> dict:
    from lead_ray.config import load_config
    from lead_ray.offline.cluster import cluster
    from lead_ray.runtime import init_ray

    work = make_scored_units(n, seed)
    cfg = load_config(ROOT / "configs" / "smollm2.yaml", [f"work_dir={work}"])
    init_ray(cfg.ray)
    sampler = RaySampler()
    sampler.start()
    base_mb = vm_hwm_mb()
    t0 = time.perf_counter()
    stats = cluster(cfg)
    seconds = time.perf_counter() - t0
    sampler.stop.set()
    return {
        "rows": n,
        "seconds": round(seconds, 1),
        "rows_per_s": round(n / seconds),
        "near_duplicates": stats["near_duplicates"],
        "near_dup_partitions": stats["near_dup_partitions"],
        "near_dup_largest_partition": stats["near_dup_largest_partition"],
        "difficulty_sizes": stats["difficulty_sizes"],
        "driver_baseline_rss_mb": round(base_mb, 1),
        "driver_peak_rss_mb": round(vm_hwm_mb(), 1),
        "max_process_rss_mb": round(sampler.peak_mb, 1),
        "max_process": sampler.peak_name,
        "step_seconds": stats["step_seconds"],
    }


def measure_neardup(n: int, seed: int) -> dict:
    """Recall of the partitioned search (default settings: exact within each partition; and hnswlib within
    each) against the single exact search over the same n points."""
    import pyarrow.parquet as pq

    from lead_ray.config import load_config
    from lead_ray.offline.neardup import find_near_duplicates
    from lead_ray.runtime import init_ray

    work = make_scored_units(n, seed)
    units = sorted(str(p) for p in (work / "scored" / "units").glob("*.parquet"))
    trainable = np.concatenate([pq.read_table(u, columns=["trainable"])["trainable"].to_numpy() for u in units])
    cfg = load_config(ROOT / "configs" / "smollm2.yaml", [f"work_dir={work}"])
    init_ray(cfg.ray)
    out, found = {"rows": n}, {}
    for name, parts, search in (("partitions_1", 1, "exact"), *PARTITIONED):
        cfg.cluster.near_dup_partition_rows = -(-int(trainable.sum()) // parts)
        cfg.cluster.near_dup_search = search
        t0 = time.perf_counter()
        stats = find_near_duplicates(units, trainable, cfg.cluster, seed, work / f"neardup-{name}")
        flags = pq.read_table(work / f"neardup-{name}" / "near_dups.parquet", columns=["id", "near_dup_of"])
        found[name] = set(zip(flags["id"].to_pylist(), flags["near_dup_of"].to_pylist()))
        reference = found["partitions_1"]
        out[name] = {
            **stats,
            "seconds": round(time.perf_counter() - t0, 1),
            "recall_vs_global": round(len(found[name] & reference) / max(len(reference), 1), 4),
            "flagged_ids_recall_vs_global": round(
                len({i for i, _ in found[name]} & {i for i, _ in reference}) / max(len(reference), 1), 4
            ),
        }
    return out


# the default search within each partition (exact at these sizes), and hnswlib's at the default partition size
PARTITIONED = (("partitions_5", 5, "auto"), ("partitions_20", 20, "auto"), ("partitions_5_hnsw", 5, "hnsw"))


def _read_round(folder: str, index: np.ndarray) -> float:
    from lead_ray.data.rows import RoundRows

    t0 = time.perf_counter()
    RoundRows(folder).messages(index)
    return time.perf_counter() - t0


def _answering(store):
    store.used_count()
    return store


def _store_rounds(cfg, store, n_arms: int, budget: int, run_dir: Path, seed: int):
    """ROUNDS bandit rounds of the store side with random arms and losses: each round's selection seconds, one
    worker's read seconds and the round's size."""
    import ray

    from lead_ray.online.plan import allowed_arms, pick_samples

    rng, workers = np.random.default_rng(seed), cfg.train.num_workers
    read_round = ray.remote(num_cpus=0)(_read_round)
    select_s, read_s, sizes, read_rows = [], [], [], []
    for _ in range(ROUNDS):
        t0 = time.perf_counter()
        allowed = allowed_arms(store, n_arms, cfg.selection)
        arm = int(rng.choice(np.flatnonzero(allowed)))
        index = pick_samples(store, arm, cfg.selection, budget - store.used_count())
        store.mark_used(index)
        select_s.append(time.perf_counter() - t0)
        # one worker's share, read where a worker would read it: in another process than the driver
        share = index[: max(1, len(index) // workers)]
        read_s.append(ray.get(read_round.remote(str(run_dir / "rows"), share)))
        sizes.append(len(index))
        read_rows.append(len(share))
        ray.get(store.apply_async(index, rng.gamma(2.0, 0.5, len(index)).astype(np.float32), 0.0, 0.1, 0))
    return select_s, read_s, sizes, read_rows


def measure_run(n: int, seed: int) -> dict:

    from lead_ray.config import load_config
    from lead_ray.data.rows import write_round_layout
    from lead_ray.online.actors import UtilityClient
    from lead_ray.online.pool import index_pool, read_selection
    from lead_ray.runtime import init_ray

    work = make_run_pool(n, seed)  # made by the parent: this process's peak RSS is the stage's own
    cfg = load_config(ROOT / "configs" / "smollm2.yaml", [f"work_dir={work}", "selection.store_shards=2"])
    init_ray(cfg.ray)
    sampler = RaySampler()
    sampler.start()
    base_mb = vm_hwm_mb()
    steps: dict[str, float] = {}
    peaks: dict[str, float] = {}

    def timed(name, fn):
        t0 = time.perf_counter()
        out = fn()
        steps[name] = round(time.perf_counter() - t0, 3)
        peaks[name.removesuffix("_s")] = round(vm_hwm_mb(), 1)  # the driver's peak so far, after this step
        return out

    pool = timed("index_s", lambda: index_pool(cfg))
    table = timed("read_selection_s", lambda: read_selection(cfg, pool))
    cluster = table["difficulty_cluster"].to_numpy()
    run_dir = work / "run"
    timed("write_layout_s", lambda: write_round_layout(pool, run_dir / "rows"))
    store = timed(
        "start_store_s",  # until the shards have built their group index and answer
        lambda: _answering(
            UtilityClient.create(
                table["iu0"].to_numpy().astype(np.float32),
                cluster.astype(np.int16),
                table["task_cluster"].to_numpy().astype(np.int32),
                cfg.selection.store_shards,
                name=f"scale-{n}",
            )
        ),
    )
    budget = int(np.ceil(cfg.selection.budget_fraction * pool.size))
    select_s, read_s, sizes, read_rows = _store_rounds(cfg, store, int(cluster.max()) + 1, budget, run_dir, seed)
    sampler.stop.set()
    return {
        "rows": n,
        "selectable": pool.size,
        **steps,
        "first_round_ready_s": round(sum(steps.values()), 2),
        "select_round_s": round(float(np.mean(select_s)), 3),
        "select_round_s_max": round(float(np.max(select_s)), 3),
        "read_round_s": round(float(np.mean(read_s)), 3),
        "round_sizes": sizes,
        "read_rows": read_rows,  # one worker's share of each round (train.num_workers)
        "store_shards": cfg.selection.store_shards,
        "state_mb": round(store.nbytes() / 2**20, 1),
        "layout_mb_on_disk": round(sum(f.stat().st_size for f in (run_dir / "rows").iterdir()) / 2**20, 1),
        "pool_mb_on_disk": round(sum(f.stat().st_size for f in pool.files) / 2**20, 1),
        "driver_baseline_rss_mb": round(base_mb, 1),
        "driver_peak_rss_mb": round(vm_hwm_mb(), 1),
        "max_process_rss_mb": round(sampler.peak_mb, 1),
        "max_process": sampler.peak_name,
        "driver_peak_rss_mb_after": peaks,
    }


def measure_prepare(copies: int, seed: int) -> dict:
    """`prepare` on `copies` physical copies of the shared pool (bench/micro/ingest.py; its marginal rate)."""
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "micro" / "ingest.py"), "--scale", str(copies)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    if out.returncode:
        raise SystemExit(f"bench/micro/ingest.py: exit {out.returncode}\n{out.stderr[-3000:]}")
    got = json.loads(out.stdout.strip().splitlines()[-1])
    return {
        "rows": got["scaled"]["rows"],
        "copies": copies,
        "rows_per_s": got["scaled"]["marginal_rows_per_s"],
        "rows_per_s_note": "marginal: (copies - 1) × pool rows over the time the copies took beyond one pool",
        "seconds": got["scaled"]["seconds"],
        "driver_peak_rss_mb": got["driver_peak_rss_mb"],
        "all_processes_peak_rss_mb": got["peak_rss_mb"],
    }


def measure_run_read(n: int, seed: int, narrow: bool) -> dict:
    """The driver's two reads before round 0 (index, selection columns), from the narrow copies or, with
    them ignored, from the pool files as before they existed. No Ray: its own subprocess, its own peak."""
    from lead_ray.config import load_config
    from lead_ray.online import pool as pool_module

    work = make_run_pool(n, seed)
    cfg = load_config(ROOT / "configs" / "smollm2.yaml", [f"work_dir={work}"])
    if not narrow:
        pool_module.narrow_copies = lambda files: None
    t0 = time.perf_counter()
    pool = pool_module.index_pool(cfg)
    t1 = time.perf_counter()
    table = pool_module.read_selection(cfg, pool)
    t2 = time.perf_counter()
    assert (pool.narrow is not None) == narrow
    return {
        "index_s": round(t1 - t0, 2),
        "read_selection_s": round(t2 - t1, 2),
        "driver_peak_rss_mb": round(vm_hwm_mb(), 1),
        "selectable": pool.size,
        "selection_sum_iu0": float(table["iu0"].to_numpy().sum()),  # equal both ways: the same rows
        "first_index_rows": pool.selectable_rows[:5].tolist(),
    }


STAGES = {
    "run": measure_run,
    "cluster": measure_cluster,
    "neardup": measure_neardup,
    "run_read_pool_files": lambda n, seed: measure_run_read(n, seed, narrow=False),
    "run_read_narrow": lambda n, seed: measure_run_read(n, seed, narrow=True),
}
MAKERS = {"run": make_run_pool, "cluster": make_scored_units, "neardup": make_scored_units}


# ----------------------------------------------------------------------------- driver


def in_subprocess(stage: str, n: int, seed: int) -> dict:
    cmd = [sys.executable, __file__, "--one", stage, str(n), str(seed)]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    if out.returncode:
        sys.stderr.write(out.stderr[-4000:])
        raise SystemExit(f"{stage} at {n}: exit {out.returncode}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run-sizes", default="1000000,3000000,10000000")
    ap.add_argument("--cluster-sizes", default="300000,1000000,3000000")
    ap.add_argument("--neardup-sizes", default="100000")
    ap.add_argument("--prepare-copies", type=int, default=26, help="copies of the shared pool for prepare (0: skip)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--one", nargs=3, metavar=("STAGE", "N", "SEED"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        stage, n, seed = args.one
        print(json.dumps(STAGES[stage](int(n), int(seed))))
        return
    result = json.loads(RESULT.read_text()) if RESULT.exists() else {}
    result["machine"] = (
        f"{os.cpu_count()} cores, {os.sysconf('SC_PHYS_PAGES') * os.sysconf('SC_PAGE_SIZE') / 2**30:.0f} GiB"
    )
    for stage, sizes in (("run", args.run_sizes), ("neardup", args.neardup_sizes), ("cluster", args.cluster_sizes)):
        for n in [int(s) for s in sizes.split(",") if s]:
            log(f"{stage} at {n:,}")
            t0 = time.perf_counter()
            MAKERS[stage](n, args.seed)  # cached: seconds only when made now
            made_s = round(time.perf_counter() - t0, 1)
            result.setdefault(stage, {})[str(n)] = {**in_subprocess(stage, n, args.seed), "make_data_s": made_s}
            log(json.dumps(result[stage][str(n)]))
            RESULT.write_text(json.dumps(result, indent=1) + "\n")
            if stage == "run":  # what the narrow copies change, side by side on the same pool
                reads = {way: in_subprocess(f"run_read_{way}", n, args.seed) for way in ("pool_files", "narrow")}
                result.setdefault("run_read", {})[str(n)] = reads
                log(json.dumps(reads))
                RESULT.write_text(json.dumps(result, indent=1) + "\n")
    at_100k = result.get("neardup", {}).get("100000")
    if at_100k:  # the default partition size (cluster.near_dup_partition_rows: 20,000) makes 5 partitions here
        result["neardup_recall_vs_global"] = at_100k["partitions_5"]["recall_vs_global"]
        RESULT.write_text(json.dumps(result, indent=1) + "\n")
    if args.prepare_copies:
        log(f"prepare on {args.prepare_copies} copies of the shared pool")
        result["prepare"] = measure_prepare(args.prepare_copies, args.seed)
        RESULT.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
