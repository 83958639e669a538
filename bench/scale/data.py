"""Synthetic pools for bench/scale/run.py, made from Arrow buffers (no Python object per row), reproducibly from
the seed, and cached in bench/work/scale/ by (size, seed, MAKER_VERSION or RUN_MAKER_VERSION)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
WORK = ROOT / "bench" / "work" / "scale"
MAKER_VERSION = 2
RUN_MAKER_VERSION = 4  # 4: pool files in `lead-ray cluster`'s layout (rows.write_pool_file, 256-row groups)
NARROW_VERSION = 1  # the pool files' narrow copies (rows.write_narrow_copy), added to a v4 pool once
FILE_ROWS = 1_000_000
SOURCES = ["gsm8k", "code", "roleplay", "toolformer", "self_instruct", "t0"]


def _strings(rng: np.random.Generator, lengths: np.ndarray):
    """A StringArray of random lowercase text with these lengths, built from one buffer."""
    import pyarrow as pa

    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    alphabet = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz      ", np.uint8)  # 6 of 32: words of ~4 letters
    data = alphabet[rng.integers(0, 32, int(offsets[-1]), dtype=np.uint8)]
    return pa.LargeStringArray.from_buffers(len(lengths), pa.py_buffer(offsets), pa.py_buffer(data.tobytes()))


def _messages(rng: np.random.Generator, n: int):
    """[user, assistant] per row; prompt and response lengths log-normal (medians ~180 and ~420 chars)."""
    import pyarrow as pa

    prompt = np.clip(rng.lognormal(np.log(180), 0.8, n), 8, 4000).astype(np.int64)
    response = np.clip(rng.lognormal(np.log(420), 0.9, n), 4, 8000).astype(np.int64)
    content = _strings(rng, np.stack([prompt, response], 1).ravel())
    role = pa.DictionaryArray.from_arrays(pa.array(np.tile([0, 1], n), pa.int8()), pa.array(["user", "assistant"]))
    turns = pa.StructArray.from_arrays([role.cast(pa.string()), content.cast(pa.string())], ["role", "content"])
    return pa.ListArray.from_arrays(pa.array(np.arange(0, 2 * n + 1, 2, dtype=np.int32)), turns)


def make_run_pool(n: int, seed: int) -> Path:
    """A clustered pool of n rows (POOL_COLUMNS), FILE_ROWS a file, ids in shuffled order across files,
    each file written the way `lead-ray cluster` writes it."""
    import pyarrow as pa

    from lead_ray.data.rows import write_pool_file

    work, rng = WORK / f"run-{n}-s{seed}-v{RUN_MAKER_VERSION}", np.random.default_rng(seed)
    if (work / "DONE").exists():  # made before, with these settings
        return add_narrow_copies(work)
    pool = work / "clustered" / "pool"
    pool.mkdir(parents=True, exist_ok=True)
    order = rng.permutation(n)
    for k, start in enumerate(range(0, n, FILE_ROWS)):
        ids = order[start : start + FILE_ROWS]
        m = len(ids)
        table = pa.table(
            {
                "id": pa.array(np.char.add("syn-", np.char.zfill(ids.astype(str), 9)).astype(object), pa.string()),
                "source": pa.array(np.array(SOURCES, dtype=object)[rng.integers(0, len(SOURCES), m)], pa.string()),
                "file": pa.array(["synthetic.jsonl"] * m, pa.string()),
                "line": pa.array(ids + 1),
                "format": pa.array(["messages"] * m, pa.string()),
                "messages": _messages(rng, m),
                "iu0": pa.array(rng.gamma(2.0, 0.7, m)),
                "ifd": pa.array(np.clip(rng.normal(0.7, 0.2, m), 0, None)),
                "n_response_tokens": pa.array(rng.integers(4, 1024, m)),
                "difficulty_cluster": pa.array(rng.integers(0, 5, m)),
                "task_cluster": pa.array(rng.integers(0, 8, m)),
            }
        )
        write_pool_file(table, pool / f"part-{k:05d}.parquet")
    (work / "DONE").write_text("")
    return add_narrow_copies(work)


def add_narrow_copies(work: Path) -> Path:
    """The narrow copies `lead-ray cluster` now writes beside each pool file, for a pool made before they
    existed (the pool files are the same either way): its files read back without the conversations."""
    import pyarrow.parquet as pq

    from lead_ray.data.rows import NOT_NARROW, write_narrow_copy

    marker = work / f"NARROW-v{NARROW_VERSION}"
    if not marker.exists():
        for path in sorted((work / "clustered" / "pool").glob("*.parquet")):
            columns = [c for c in pq.read_schema(path).names if c not in NOT_NARROW]
            write_narrow_copy(pq.read_table(path, columns=columns), path)
        marker.write_text("")
    return work


def _embeddings(rng: np.random.Generator, n: int, dim: int = 384, dup_share: float = 0.05) -> np.ndarray:
    """Unit vectors around 64 topic centres; dup_share of them near copies of an earlier one."""
    centres = rng.normal(size=(64, dim)).astype(np.float32)
    x = centres[rng.integers(0, 64, n)] + 1.2 * rng.normal(size=(n, dim)).astype(np.float32)
    dups = np.flatnonzero(rng.random(n) < dup_share)
    dups = dups[dups > 0]
    # noise 0.3 per dimension: cosine to the original ~0.98, just above cluster.near_dup_threshold (0.97), so
    # a pair can straddle a partition boundary (real paraphrases sit in tighter topic clusters than these)
    x[dups] = x[(rng.random(len(dups)) * dups).astype(np.int64)] + 0.3 * rng.normal(size=(len(dups), dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def make_scored_units(n: int, seed: int, unit_rows: int = 50_000) -> Path:
    """What `lead-ray score` leaves for n samples (scored/units/*.parquet), without the conversations."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    work, rng = WORK / f"cluster-{n}-s{seed}-v{MAKER_VERSION}", np.random.default_rng(seed)
    if (work / "DONE").exists():
        return work
    units = work / "scored" / "units"
    units.mkdir(parents=True, exist_ok=True)
    for k, start in enumerate(range(0, n, unit_rows)):
        m = min(unit_rows, n - start)
        ifd_raw = np.clip(rng.normal(0.75, 0.25, m), 0.05, None)
        table = pa.table(
            {
                "id": pa.array([f"syn-{i:09d}" for i in range(start, start + m)]),
                "source": pa.array(np.array(SOURCES, dtype=object)[rng.integers(0, len(SOURCES), m)], pa.string()),
                "iu0": pa.array(rng.gamma(2.0, 0.7, m)),
                "ifd_raw": pa.array(ifd_raw),
                "ifd": pa.array(np.where(ifd_raw > 1, 0.0, ifd_raw)),
                "warm_loss": pa.array(rng.gamma(2.0, 0.5, m)),
                "n_response_tokens": pa.array(rng.integers(4, 1024, m)),
                "trainable": pa.array(rng.random(m) > 0.01),
                "embedding": pa.FixedSizeListArray.from_arrays(pa.array(_embeddings(rng, m).ravel()), 384),
            }
        )
        pq.write_table(table, units / f"unit-{k:05d}.parquet", row_group_size=8192)
    (work / "DONE").write_text("")
    return work
