"""Ingest throughput: the whole shared pool through `prepare`, Ray start-up included.

    python bench/micro/ingest.py [INPUT ...] [--scale K]

Prints rows/s (wall clock from before `ray.init` to the stats file written) and peak memory: the
largest sum of RSS over this process and every process it started (raylet, Ray workers), sampled
every 20 ms. Ray's start-up and each Ray Data job carry a fixed cost of several seconds here, so the
same pipeline also runs, in the same Ray session, on K physical copies of the input (K-1 copies are
exact duplicates, so they exercise parsing and de-duplication alike); the difference between the two
runs gives the marginal throughput that a large corpus sees. Ends with one JSON line, also written to
bench/results/ingest.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_INPUT = ROOT.parent / "shared" / "data" / "pool"


class PeakRss:
    """Background sampler of the RSS of this process tree."""

    def __init__(self, every_s: float = 0.02):
        self.peak_mb = self.driver_peak_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(every_s,), daemon=True)

    def _run(self, every_s):
        me = psutil.Process()
        while not self._stop.is_set():
            total = driver = me.memory_info().rss
            for child in me.children(recursive=True):
                try:
                    total += child.memory_info().rss
                except psutil.Error:
                    pass
            self.peak_mb = max(self.peak_mb, total / 2**20)
            self.driver_peak_mb = max(self.driver_peak_mb, driver / 2**20)
            time.sleep(every_s)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def scaled_run(cfg, args, work: Path, stats: dict) -> dict:
    """The marginal rate: both runs warm (Ray and its workers already up), 1x again, then `args.scale` copies
    of the input; the difference is the marginal rate."""
    from lead_ray.config import load_config
    from lead_ray.data.ingest import prepare

    copies = []
    for k in range(args.scale):
        for i, src in enumerate(args.inputs):
            dst = work / f"copy{k}" / f"{i}-{Path(src).name}"
            if k:
                dst.parent.mkdir(parents=True, exist_ok=True)  # a file input: copy's folder first
                (shutil.copytree if Path(src).is_dir() else shutil.copy)(src, dst)
            copies.append(str(dst) if k else src)
    t1 = time.perf_counter()
    prepare(cfg)
    t2 = time.perf_counter()
    big = load_config(None, ["ingest.inputs=" + json.dumps(copies), "ingest.out=" + json.dumps(str(work / "out-big"))])
    big_stats = prepare(big)
    t3 = time.perf_counter()
    extra_rows = big_stats["input_rows"] - stats["input_rows"]
    return {
        "copies": args.scale,
        "rows": big_stats["input_rows"],
        "seconds": round(t3 - t2, 2),
        "warm_1x_seconds": round(t2 - t1, 2),
        "rows_per_s": round(big_stats["input_rows"] / (t3 - t2)),
        "marginal_rows_per_s": round(extra_rows / ((t3 - t2) - (t2 - t1))),
    }


def print_summary(result: dict, wall: float) -> None:
    print(
        f"{result['rows']} rows ({result['input_mb']} MB) in {wall:.2f} s incl. Ray start "
        f"({result['seconds']['ray_init']} s): {result['rows_per_s']} rows/s; "
        f"{result['rows_per_s_after_ray_start']} rows/s after start; peak RSS {result['peak_rss_mb']} MB "
        f"(driver {result['driver_peak_rss_mb']} MB)",
        file=sys.stderr,
    )
    scaled = result["scaled"]
    if scaled:
        print(
            f"warm: x1 in {scaled['warm_1x_seconds']} s; x{scaled['copies']}: {scaled['rows']} rows in "
            f"{scaled['seconds']} s = {scaled['rows_per_s']} rows/s; "
            f"marginal {scaled['marginal_rows_per_s']} rows/s",
            file=sys.stderr,
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("inputs", nargs="*", default=[str(DEFAULT_INPUT)])
    ap.add_argument("--scale", type=int, default=4, help="copies of the input for the marginal-rate run (0: skip)")
    args = ap.parse_args()
    os.environ.setdefault("LEAD_RAY_PROGRESS", "0")

    t_import = time.perf_counter()
    import ray

    from lead_ray.config import load_config
    from lead_ray.data.ingest import prepare
    from lead_ray.runtime import init_ray

    work = Path(tempfile.mkdtemp(prefix="lead-ray-bench-ingest-"))
    cfg = load_config(None, ["ingest.inputs=" + json.dumps(args.inputs), "ingest.out=" + json.dumps(str(work / "out"))])
    with PeakRss() as mem:
        t0 = time.perf_counter()
        init_ray(cfg.ray)
        t_ray = time.perf_counter()
        stats = prepare(cfg)
        t_end = time.perf_counter()
    scaled = scaled_run(cfg, args, work, stats) if args.scale > 1 else None
    ray.shutdown()
    shutil.rmtree(work, ignore_errors=True)

    wall = t_end - t0
    result = {
        "rows": stats["input_rows"],
        "accepted": stats["accepted"],
        "rejected": stats["rejected"],
        "duplicates": stats["duplicates"],
        "input_mb": round(stats["input_bytes"] / 2**20, 1),
        "rows_per_s": round(stats["input_rows"] / wall),
        "rows_per_s_after_ray_start": round(stats["input_rows"] / (t_end - t_ray)),
        "seconds": {
            "imports": round(t0 - t_import, 2),
            "ray_init": round(t_ray - t0, 2),
            "parse_stage": stats["seconds"]["parse"],
            "prepare_total": stats["seconds"]["total"],
            "wall_incl_ray_start": round(wall, 2),
        },
        "peak_rss_mb": round(mem.peak_mb),
        "driver_peak_rss_mb": round(mem.driver_peak_mb),
        "cpus": os.cpu_count(),
        "chunks": stats["chunks"],
        "task_seconds": stats["task_seconds"],
        "scaled": scaled,
    }
    print_summary(result, wall)
    (ROOT / "bench" / "results").mkdir(parents=True, exist_ok=True)
    (ROOT / "bench" / "results" / "ingest.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
