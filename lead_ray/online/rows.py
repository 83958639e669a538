"""Reading a round's rows without scanning the pool.

Before training, the run writes the clustered pool once, ordered by (difficulty cluster, index), in
Parquet row groups of GROUP rows, plus `positions.npy` (index → position in that order). A round
draws from one cluster, so a worker reads only row groups of that cluster that hold its samples.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from lead_ray.files import write_parquet_atomic

GROUP = 64
FILE_ROWS = GROUP * 1024


def write_round_rows(table: pa.Table, folder: Path) -> None:
    """`table` has an `index` column (dense, id order) and `difficulty_cluster`."""
    folder.mkdir(parents=True, exist_ok=True)
    order = np.lexsort((table["index"].to_numpy(), table["difficulty_cluster"].to_numpy()))
    ordered = table.take(pa.array(order)).select(["index", "messages"])
    positions = np.empty(len(order), np.int64)
    positions[ordered["index"].to_numpy()] = np.arange(len(order))
    for k, start in enumerate(range(0, max(len(order), 1), FILE_ROWS)):
        write_parquet_atomic(ordered.slice(start, FILE_ROWS), folder / f"rows-{k:05d}.parquet", rows_per_group=GROUP)
    np.save(folder / "positions.npy", positions)


class RoundRows:
    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.positions = np.load(self.folder / "positions.npy")
        self.files: dict[int, pq.ParquetFile] = {}

    def _file(self, k: int) -> pq.ParquetFile:
        if k not in self.files:
            self.files[k] = pq.ParquetFile(self.folder / f"rows-{k:05d}.parquet")
        return self.files[k]

    def messages(self, index: np.ndarray) -> list[list[dict]]:
        """The conversations of the given indices, in that order (one read per file touched)."""
        index = np.asarray(index, np.int64)
        pos = self.positions[index]
        groups = np.unique(pos // GROUP)
        found: dict[int, list[dict]] = {}
        for k in np.unique(groups * GROUP // FILE_ROWS):
            mine = groups[groups * GROUP // FILE_ROWS == k]
            t = self._file(int(k)).read_row_groups([int(g * GROUP % FILE_ROWS // GROUP) for g in mine])
            t = t.filter(pc.is_in(t["index"], pa.array(index)))  # only the wanted rows become Python objects
            found.update(zip(t["index"].to_pylist(), t["messages"].to_pylist()))
        return [found[int(i)] for i in index]
