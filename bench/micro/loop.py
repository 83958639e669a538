"""Online-loop benchmark: bookkeeping share of a round, UtilityStore throughput, top-k at 10M.

    python bench/micro/loop.py [--pool 20000] [--rounds 6] [--topk-n 10000000]

Measured in this one run, written to bench/results/loop.json (the last line printed):

1. Bookkeeping share: a real `lead-ray run` (tiny preset, 1 worker) on a synthetic clustered pool
   built from the repo's sample conversations. Bookkeeping = selection (bandit draw, ΔL̂′, stratified
   top-k, marking) + reads of the round's rows + utility pushes (incl. the end-of-round wait) +
   reward and per-cluster means, as a share of the rounds' timed wall (selection + training + finish);
   and, from the rounds' timestamps, everything that is not training as a share of a round's wall
   (the in-loop held-out NLL is evaluation and is reported apart).
2. UtilityStore update throughput: samples/s applied by one actor (1M-sample table) for batches of
   64 to 16384, pushed asynchronously from the driver and awaited at the end; and the same through
   the client over 4 shards.
3. Top-k latency over a 10M-sample cluster (8 task groups, ρ = 0.015, through the actor: counts +
   top-k + merge), one actor and 4 shards; selection state bytes per sample at 10M.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[2]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def sample_conversations() -> list[list[dict]]:
    """The conversations of the repo's sample data (data/sample), in every format it holds."""
    from lead_ray.data.formats import READERS, detect_format, normalise

    convs = []
    for path in sorted((ROOT / "data" / "sample").rglob("*.json*")):
        text = path.read_text()
        records = json.loads(text) if text.lstrip().startswith("[") else [json.loads(x) for x in text.splitlines() if x]
        for r in records:
            try:
                convs += [normalise(c, 4000)[0] for c in READERS[detect_format(r)](r)]
            except Exception:  # noqa: BLE001 - the bench only needs some valid conversations
                continue
    return convs


def synthetic_pool(work: Path, n: int, seed: int = 0) -> None:
    """A clustered pool of n rows: the sample's conversations, 7 arms x 4 task groups, IU₀ ~ 5."""
    from lead_ray.data.rows import write_pool_file

    convs = sample_conversations()
    rng = random.Random(seed)
    rows = [
        {
            "id": f"{i:09d}",
            "source": "sample",
            "file": "",
            "line": i + 1,
            "format": "messages",
            "messages": rng.choice(convs),
            "iu0": 5.0 + rng.random(),
            "ifd": rng.random(),
            "n_response_tokens": rng.randrange(1, 400),
            "difficulty_cluster": rng.randrange(7),
            "task_cluster": rng.randrange(4),
        }
        for i in range(n)
    ]
    (work / "clustered" / "pool").mkdir(parents=True)
    # the layout `lead-ray cluster` writes (by arm, then IU₀; GROUP-row groups; the narrow copy), which a round's
    # read is built for: pyarrow's default of one 20,000-row group made every round decode the whole pool
    write_pool_file(pa.Table.from_pylist(rows), work / "clustered" / "pool" / "part-0.parquet")


def bench_bookkeeping(n: int, rounds: int) -> dict:
    from lead_ray.config import load_config
    from lead_ray.online import run as run_module

    work = Path(tempfile.mkdtemp(prefix="lead-ray-bench-loop-"))
    synthetic_pool(work, n)
    cfg = load_config(
        None,
        [
            f"work_dir={work}",
            "model.max_length=512",
            "selection.budget_fraction=1.0",
            f"selection.max_rounds={rounds}",
            "selection.rho=0.05",
            "train.lr=0.001",
            "train.lora.enabled=false",
            f"train.checkpoint_every={rounds}",
        ],
    )
    stats = run_module.run(cfg)
    r = pq.read_table(work / "run" / "rounds.parquet").to_pandas()
    # timed parts: train_s holds read_s and push_s; finish_s (reward, counters, per-cluster mean U) excludes
    # the in-loop held-out NLL, which is evaluation and is reported apart (heldout_s)
    book = r["selection_s"] + r["read_s"] + r["push_s"] + r["finish_s"]
    wall = r["selection_s"] + r["train_s"] + r["finish_s"]
    # untimed parts too: from one round's record to the next, everything that is not training or held-out
    # eval (bandit update call, logging, the next selection) is bookkeeping; rounds 2..n, no checkpoint among them
    step = r["elapsed_s"].diff().iloc[1:]
    train_only = (r["train_s"] - r["read_s"] - r["push_s"]).iloc[1:]
    held = r["heldout_s"].iloc[1:]
    return {
        "pool": n,
        "rounds": len(r),
        "samples_per_round": float(r["size"].mean()),
        "selection_s": float(r["selection_s"].sum()),
        "read_s": float(r["read_s"].sum()),
        "push_s": float(r["push_s"].sum()),
        "finish_s": float(r["finish_s"].sum()),
        "heldout_s": float(r["heldout_s"].sum()),
        "heldout_samples_per_round": float(r["heldout_forward_samples"].mean()),
        "train_s": float(r["train_s"].sum()),
        "bookkeeping_share": float(book.sum() / wall.sum()),
        "bookkeeping_share_wall": float((step - train_only - held).sum() / (step - held).sum()),
        "heldout_share_wall": float(held.sum() / step.sum()),
        "fit_seconds": stats["fit_seconds"],
    }


def bench_updates(n: int, batches: list[int], shards: int, calls: int = 200) -> dict:
    import ray

    from lead_ray.online.actors import UtilityClient

    rng = np.random.default_rng(0)
    client = UtilityClient.create(
        rng.random(n, dtype=np.float32) * 5, rng.integers(0, 7, n), rng.integers(0, 8, n), shards
    )
    out = {}
    for b in batches:
        idx = [rng.choice(n, size=b, replace=False) for _ in range(8)]
        losses = rng.random(b, dtype=np.float32) * 5
        ray.get(client.apply_async(idx[0], losses, -0.001, 0.1, 0))  # warm-up
        t = time.perf_counter()
        refs = []
        for c in range(calls):
            refs += client.apply_async(idx[c % 8], losses, -0.001, 0.1, c)
        ray.get(refs)
        out[str(b)] = b * calls / (time.perf_counter() - t)
    for h in client.handles:
        ray.kill(h)
    return out


def bench_topk(n: int, shards: int, rho: float = 0.015, repeats: int = 3) -> dict:
    import ray

    from lead_ray.online.actors import UtilityClient

    rng = np.random.default_rng(1)
    client = UtilityClient.create(rng.random(n, dtype=np.float32), np.zeros(n, np.int16), rng.integers(0, 8, n), shards)
    client.select(0, rho, 4, 0)  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        picked = client.select(0, rho, 4, 0)
        times.append(time.perf_counter() - t)
    result = {
        "n": n,
        "shards": shards,
        "selected": int(len(picked)),
        "seconds": float(np.median(times)),
        "state_bytes_per_sample": client.nbytes() / n,
    }
    for h in client.handles:
        ray.kill(h)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pool", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--topk-n", type=int, default=10_000_000)
    args = ap.parse_args()
    os.environ.setdefault("LEAD_RAY_PROGRESS", "0")
    from lead_ray.config import RayConfig
    from lead_ray.runtime import init_ray

    init_ray(RayConfig())
    result = {"machine": f"{os.cpu_count()} CPUs"}
    log("1. bookkeeping share of round time")
    result["bookkeeping"] = bench_bookkeeping(args.pool, args.rounds)
    log(f"  {result['bookkeeping']}")
    log("2. UtilityStore update throughput")
    result["updates_one_actor"] = bench_updates(1_000_000, [64, 256, 1024, 4096, 16384], 1)
    result["updates_sharded4"] = bench_updates(1_000_000, [64, 256, 1024, 4096, 16384], 4)
    log(f"  one actor: {result['updates_one_actor']}\n  4 shards: {result['updates_sharded4']}")
    log("3. top-k over a 10M-sample cluster")
    result["topk_one_actor"] = bench_topk(args.topk_n, 1)
    result["topk_sharded4"] = bench_topk(args.topk_n, 4)
    log(f"  one actor: {result['topk_one_actor']}\n  4 shards: {result['topk_sharded4']}")
    result.update(
        bookkeeping_share=result["bookkeeping"]["bookkeeping_share"],
        utility_updates_per_s=max(result["updates_one_actor"].values()),
        sharded4_updates_per_s=max(result["updates_sharded4"].values()),
        topk_10m_s=result["topk_one_actor"]["seconds"],
        state_bytes_per_sample=result["topk_one_actor"]["state_bytes_per_sample"],
    )
    (ROOT / "bench" / "results").mkdir(parents=True, exist_ok=True)
    (ROOT / "bench" / "results" / "loop.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
