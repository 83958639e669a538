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

from lead_ray.data.split import holdout_uniform_column
from lead_ray.files import atomic_path, write_text_atomic

# Rows a row group. Smaller groups decode fewer unwanted rows a pick, but every group costs ~12 KB of
# parsed footer in memory (at 13 leaf columns) each time a file is opened: 256 rows is ~45 B a sample,
# and a scattered read of 3,000 rows from a 1M-row file took 0.32 s here against 0.15 s at 64 rows a
# group, whose footer took 181 MB of RSS to open (docs/SCALING.md).
GROUP = 256
READ_GROUPS = 64  # row groups a read decodes at once (16,384 rows at GROUP) before keeping the asked rows
# Left out of a pool file's narrow copy: what only a round's read needs
NOT_NARROW = ("messages", "file", "line", "format")
NARROW_BYTES_KEY = b"lead_ray.pool_file_bytes"  # the pool file the narrow copy was written with, by its size


def write_pool_file(table: pa.Table, path: Path, sort: bool = True) -> None:
    """One clustered pool file: rows ordered by (difficulty_cluster, -iu0) (sort=False: as given), row groups
    of GROUP rows. Statistics off: with small groups they would make much of the footer, and no reader filters
    on them. Then its narrow copy (write_narrow_copy)."""
    if sort and {"difficulty_cluster", "iu0"} <= set(table.column_names) and table.num_rows:
        table = table.take(pc.sort_indices(table, [("difficulty_cluster", "ascending"), ("iu0", "descending")]))
    narrow_path(path).unlink(missing_ok=True)  # a crash before the new copy leaves none, never a stale one
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, row_group_size=GROUP, write_statistics=False)
    write_narrow_copy(table, path)


def write_narrow_copy(table: pa.Table, path: Path) -> None:
    """The pool file at `path` (whose rows, in order, `table` holds) without its conversations, in one row
    group, plus `holdout_u` (the id's held-out hash): a run reads its ids and selection columns from it
    without walking thousands of small groups, and without hashing every id in the driver."""
    narrow = table.drop_columns([c for c in NOT_NARROW if c in table.column_names])
    narrow = narrow.append_column("holdout_u", pa.array(holdout_uniform_column(table["id"])))
    narrow = narrow.replace_schema_metadata({NARROW_BYTES_KEY: str(Path(path).stat().st_size)})
    narrow_path(path).parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(narrow_path(path)) as tmp:
        pq.write_table(narrow, tmp, row_group_size=max(1, narrow.num_rows))


def narrow_path(path: Path) -> Path:
    """Where a pool file's narrow copy lives: clustered/pool/part.parquet → clustered/pool.narrow/part.parquet."""
    path = Path(path)
    return path.parent.with_name(path.parent.name + ".narrow") / path.name


def narrow_copies(files: list[Path]) -> list[Path] | None:
    """The pool files' narrow copies, or None when one is missing or was written with another version of its
    pool file (a pool written by an older lead-ray, or rewritten since): the caller then reads the pool files."""
    copies = [narrow_path(f) for f in files]
    for pool_file, copy in zip(files, copies):
        if not copy.exists():
            return None
        written_with = (pq.read_schema(copy).metadata or {}).get(NARROW_BYTES_KEY)
        if written_with != str(Path(pool_file).stat().st_size).encode():
            return None
    return copies


def write_round_layout(pool, folder: Path) -> None:
    """rows/positions.npy (index → pool row: pool.selectable_rows) and rows/layout.json (pool.files, their
    rows and sizes); positions.npy, written last, marks the folder complete. pool: a pool.PoolIndex."""
    folder.mkdir(parents=True, exist_ok=True)
    layout = {
        "files": [str(Path(f).resolve()) for f in pool.files],
        "rows": [int(n) for n in pool.file_rows],
        "bytes": [Path(f).stat().st_size for f in pool.files],
    }
    write_text_atomic(folder / "layout.json", json.dumps(layout) + "\n")
    with atomic_path(folder / "positions.npy") as tmp, open(tmp, "wb") as out:
        np.save(out, pool.selectable_rows)


class PoolRows:
    """Rows of a list of Parquet files by row number (the files concatenated), decoding only their groups.
    A file is opened for a read and closed after it: only its groups' first rows are kept, not its parsed
    footer, so what a reader holds does not grow with the pool."""

    def __init__(self, files: list[str], rows: list[int], sizes: list[int] | None = None):
        self.paths, self.sizes = [Path(f) for f in files], sizes
        self.starts = np.concatenate([[0], np.cumsum(rows, dtype=np.int64)])
        self.group_starts: dict[int, np.ndarray] = {}

    def _open(self, k: int) -> tuple[pq.ParquetFile, np.ndarray]:
        """The k-th file (pre_buffer=False: buffers only the row groups read), checked against the rows and
        size it had when the run started, and its groups' first rows."""
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
        if k not in self.group_starts:
            counts = [file.metadata.row_group(g).num_rows for g in range(file.metadata.num_row_groups)]
            self.group_starts[k] = np.concatenate([[0], np.cumsum(counts, dtype=np.int64)])
        return file, self.group_starts[k]

    def read(self, rows: np.ndarray, columns: list[str] | None = None) -> pa.Table:
        """The given rows, in that order (a row asked twice comes twice). One file at a time: reading four at once
        in threads was 12% faster at 10M rows and took 400 MB more (docs/SCALING.md)."""
        rows = np.asarray(rows, np.int64)
        file_of = np.searchsorted(self.starts, rows, side="right") - 1
        files = np.unique(file_of).tolist()
        asked = [np.flatnonzero(file_of == k) for k in files]
        done = [self._read_file(k, rows[a] - self.starts[k], columns) for k, a in zip(files, asked)]
        parts = [t for tables, _ in done for t in tables]
        order = [a[slots] for a, (_, positions) in zip(asked, done) for slots in positions]
        if not parts:
            schema = pq.read_schema(self.paths[0])
            return schema.empty_table().select(columns or schema.names)
        table = pa.concat_tables(parts)
        return table.take(pa.array(np.argsort(np.concatenate(order), kind="stable")))

    def _read_file(self, k: int, local: np.ndarray, columns: list[str] | None) -> tuple[list, list]:
        """Rows `local` (row numbers within the k-th file) decoded READ_GROUPS groups at a time: the tables, and
        for each which of `local` it holds, in its row order."""
        file, group_starts = self._open(k)
        group_of = np.searchsorted(group_starts, local, side="right") - 1
        groups, tables, positions = np.unique(group_of), [], []
        for start in range(0, len(groups), READ_GROUPS):  # a bounded slice of the file at a time
            chunk = groups[start : start + READ_GROUPS]
            in_chunk = np.flatnonzero(np.isin(group_of, chunk))
            table = file.read_row_groups(chunk.tolist(), columns=columns)
            # a row's place in what was read: the rows of the chunk's earlier groups, then its offset
            before = np.concatenate([[0], np.cumsum(group_starts[chunk + 1] - group_starts[chunk])])
            group = group_of[in_chunk]
            slot = before[np.searchsorted(chunk, group)] + local[in_chunk] - group_starts[group]
            tables.append(table.take(pa.array(slot)))
            positions.append(in_chunk)
        return tables, positions


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
