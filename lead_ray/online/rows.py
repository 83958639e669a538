"""Reading a round's rows straight from the clustered pool, without scanning it or copying it.

`lead-ray cluster` writes each pool file ordered by difficulty cluster, then by IU₀ (highest first), in
row groups of GROUP rows (`write_pool_file`). A round draws the top of one cluster, so its rows sit in
few, small row groups of each file, and the first rounds' rows at the head of their cluster's run.

Before training, the run writes `rows/positions.npy` (dense index → row of the pool, the pool's files
concatenated) and `rows/layout.json` (each pool file's path, row count and size, to notice a pool that
changed under a run). A worker maps an index to (file, row group) and decodes only those groups. Any
Parquet layout reads correctly (a pool clustered by an older lead-ray too); large row groups only make
each read decode more rows.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from lead_ray.files import atomic_path, write_text_atomic

GROUP = 64
READ_GROUPS = 256  # row groups a read decodes at once (16,384 rows at GROUP) before keeping the asked rows


def write_pool_file(table: pa.Table, path: Path) -> None:
    """One clustered pool file: rows ordered by (difficulty_cluster, -iu0), row groups of GROUP rows.
    Statistics off: at 64 rows a group they would make most of the footer, and no reader filters on them."""
    if {"difficulty_cluster", "iu0"} <= set(table.column_names) and table.num_rows:
        table = table.take(pc.sort_indices(table, [("difficulty_cluster", "ascending"), ("iu0", "descending")]))
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, row_group_size=GROUP, write_statistics=False)


def write_round_layout(files: list[Path], selectable_rows: np.ndarray, folder: Path) -> None:
    """rows/positions.npy (index → pool row) and rows/layout.json; positions.npy, written last, marks the
    folder complete."""
    folder.mkdir(parents=True, exist_ok=True)
    meta = [pq.ParquetFile(f).metadata for f in files]
    layout = {
        "files": [str(Path(f).resolve()) for f in files],
        "rows": [m.num_rows for m in meta],
        "bytes": [Path(f).stat().st_size for f in files],
    }
    write_text_atomic(folder / "layout.json", json.dumps(layout) + "\n")
    # int32 below 2³¹ rows: every worker holds this array (400 MB at 100M samples instead of 800)
    kind = np.int32 if sum(layout["rows"]) < 2**31 else np.int64
    with atomic_path(folder / "positions.npy") as tmp, open(tmp, "wb") as out:
        np.save(out, np.asarray(selectable_rows, kind))


class PoolRows:
    """Rows of a list of Parquet files by row number (the files concatenated), decoding only their groups."""

    def __init__(self, files: list[str], rows: list[int], sizes: list[int] | None = None):
        self.paths, self.sizes = [Path(f) for f in files], sizes
        self.starts = np.concatenate([[0], np.cumsum(rows, dtype=np.int64)])
        self.files: dict[int, tuple[pq.ParquetFile, np.ndarray]] = {}

    def _file(self, k: int) -> tuple[pq.ParquetFile, np.ndarray]:
        """The k-th file (pre_buffer=False: buffers only the row groups read) and its groups' first rows."""
        if k not in self.files:
            path = self.paths[k]
            if not path.exists():
                raise FileNotFoundError(
                    f"{path}: a file of the clustered pool this run reads is missing on this node; on a "
                    "multi-node cluster work_dir must be on storage every node mounts at the same path"
                )
            file = pq.ParquetFile(path, pre_buffer=False)
            expected = int(self.starts[k + 1] - self.starts[k])
            if file.metadata.num_rows != expected or (self.sizes and path.stat().st_size != self.sizes[k]):
                raise RuntimeError(
                    f"{path} changed since this run started ({file.metadata.num_rows} rows, {expected} expected): "
                    "the clustered pool was rewritten (`lead-ray cluster` again?); start the run afresh"
                )
            counts = [file.metadata.row_group(g).num_rows for g in range(file.metadata.num_row_groups)]
            self.files[k] = (file, np.concatenate([[0], np.cumsum(counts, dtype=np.int64)]))
        return self.files[k]

    def read(self, rows: np.ndarray, columns: list[str] | None = None) -> pa.Table:
        """The given rows, in that order (a row asked twice comes twice)."""
        rows = np.asarray(rows, np.int64)
        file_of = np.searchsorted(self.starts, rows, side="right") - 1
        parts, order = [], []
        for k in np.unique(file_of).tolist():
            file, group_starts = self._file(k)
            asked = np.flatnonzero(file_of == k)
            local = rows[asked] - self.starts[k]
            group_of = np.searchsorted(group_starts, local, side="right") - 1
            groups = np.unique(group_of)
            for start in range(0, len(groups), READ_GROUPS):  # a bounded slice of the file at a time
                chunk = groups[start : start + READ_GROUPS]
                in_chunk = np.isin(group_of, chunk)
                table = file.read_row_groups(chunk.tolist(), columns=columns)
                # a row's place in what was read: the rows of the chunk's earlier groups, then its offset
                before = np.concatenate([[0], np.cumsum(group_starts[chunk + 1] - group_starts[chunk])])
                group = group_of[in_chunk]
                slot = before[np.searchsorted(chunk, group)] + local[in_chunk] - group_starts[group]
                parts.append(table.take(pa.array(slot)))
                order.append(asked[in_chunk])
        if not parts:
            return pq.read_schema(self.paths[0]).empty_table().select(columns or pq.read_schema(self.paths[0]).names)
        table = pa.concat_tables(parts)
        return table.take(pa.array(np.argsort(np.concatenate(order), kind="stable")))


class RoundRows:
    """A run's rows by dense index: rows/positions.npy into the clustered pool's files (rows/layout.json)."""

    def __init__(self, folder: str | Path):
        folder = Path(folder)
        self.positions = np.load(folder / "positions.npy")
        layout = json.loads((folder / "layout.json").read_text())
        self.pool = PoolRows(layout["files"], layout["rows"], layout.get("bytes"))

    def read(self, index: np.ndarray, columns: list[str] | None = None) -> pa.Table:
        """The rows of the given indices, in that order (only the row groups holding them are read)."""
        return self.pool.read(self.positions[np.asarray(index, np.int64)], columns)

    def messages(self, index: np.ndarray) -> list[list[dict]]:
        """The conversations of the given indices, in that order."""
        return self.read(index, ["messages"])["messages"].to_pylist()
