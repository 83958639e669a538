"""Plant broken instruction/response pairs into a prepared pool, the way web-scale sets contain them.

A fraction F of the pool's samples (default 0.15) gets its last response replaced, three kinds in
equal parts:

  swap          the response of another sample of the same source (a mismatched pair of the same task type)
  truncate      the response cut to its first tenth (at least one character)
  cross_source  the response of a sample from a different source

The hidden column `CORRUPT_COLUMN` holds the kind ("" for clean samples). It is for the benchmark's
analysis only: the run reads a fixed list of columns (online/run.py POOL_COLUMNS) and no module of
lead_ray names this column (tests/test_corrupt.py checks both).

    python bench/quality/corrupt.py PREPARED_POOL_DIR --fraction 0.15 --seed 0     # rewrites the pool in place
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

CORRUPT_COLUMN = "_planted_corruption"
KINDS = ("swap", "truncate", "cross_source")


def _last_answer(messages: list[dict]) -> int:
    return max(i for i, m in enumerate(messages) if m["role"] == "assistant")


def _donor(rng: np.random.Generator, candidates: np.ndarray, victim: int) -> int | None:
    candidates = candidates[candidates != victim]
    return int(rng.choice(candidates)) if len(candidates) else None


def plant(table: pa.Table, fraction: float, seed: int) -> tuple[pa.Table, dict]:
    """The table with `fraction` of its rows corrupted and CORRUPT_COLUMN added; counts per kind.
    Donor responses are read from the original table, so a corrupted sample never donates."""
    rng = np.random.default_rng([seed, 11])
    n = table.num_rows
    chosen = rng.choice(n, size=int(round(fraction * n)), replace=False)
    kinds = np.array([KINDS[i % 3] for i in range(len(chosen))])
    messages = table["messages"].to_pylist()
    original = [m[_last_answer(m)]["content"] for m in messages]
    sources = np.array(table["source"].to_pylist())
    label = np.full(n, "", dtype=object)
    for victim, kind in zip(chosen.tolist(), kinds):
        if kind == "truncate":
            text = original[victim][: max(1, len(original[victim]) // 10)]
        else:
            same = sources == sources[victim]
            donor = _donor(rng, np.flatnonzero(same if kind == "swap" else ~same), victim)
            if donor is None:  # a source alone in the pool (or the only one): cut it instead
                kind, text = "truncate", original[victim][: max(1, len(original[victim]) // 10)]
            else:
                text = original[donor]
        messages[victim][_last_answer(messages[victim])]["content"] = text
        label[victim] = kind
    out = table.set_column(
        table.schema.get_field_index("messages"), "messages", pa.array(messages, table["messages"].type)
    )
    out = out.append_column(CORRUPT_COLUMN, pa.array(label.tolist(), pa.string()))
    counts = {k: int((label == k).sum()) for k in KINDS}
    return out, {"rows": n, "planted": int(len(chosen)), "fraction": fraction, "by_kind": counts}


def plant_pool(pool_dir: Path, fraction: float, seed: int) -> dict:
    """Rewrite every Parquet file of a prepared pool folder with planted corruptions (once: a pool that
    already has the column is left as it is and its counts returned)."""
    from lead_ray.files import write_parquet_atomic

    files = sorted(Path(pool_dir).glob("*.parquet"))
    table = pa.concat_tables([pq.read_table(f) for f in files])
    if CORRUPT_COLUMN in table.column_names:
        label = np.array(table[CORRUPT_COLUMN].to_pylist())
        return {
            "rows": table.num_rows,
            "planted": int((label != "").sum()),
            "already_planted": True,
            "by_kind": {k: int((label == k).sum()) for k in KINDS},
        }
    planted, stats = plant(table, fraction, seed)
    start = 0
    for f in files:  # the same files, the same rows in each
        rows = pq.ParquetFile(f).metadata.num_rows
        write_parquet_atomic(planted.slice(start, rows), f)
        start += rows
    return stats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("pool_dir")
    ap.add_argument("--fraction", type=float, default=0.15)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    print(json.dumps(plant_pool(Path(args.pool_dir), args.fraction, args.seed), indent=2))


if __name__ == "__main__":
    main()
