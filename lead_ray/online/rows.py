"""Reading a round's rows without scanning the pool, and without any process holding it.

Before training, the run streams the clustered pool's ROW_COLUMNS (pool.py) into files of one
difficulty cluster each, one Ray task per pool file (`rows-<cluster>-<pool file>.parquet`, row groups of
exactly GROUP rows but a file's last), then writes `positions.npy` (index → position in the (cluster,
pool file) order) and `layout.json` (each file's first position). A round draws from one cluster, so a
worker reads only row groups of that cluster that hold its samples. A task holds one batch and fewer
than GROUP rows per cluster at a time; the driver holds the positions and one file's `index` column.
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
BATCH_ROWS = 8192
READ_GROUPS = 256  # row groups a read decodes at once (16,384 rows) before keeping only the asked ones


class _ClusterWriter:
    """One cluster's rows from one pool file: rows arrive in any batch sizes, leave in row groups of GROUP."""

    def __init__(self, path: Path, schema: pa.Schema):
        self.writer = pq.ParquetWriter(path, schema, write_statistics=False)
        self.pending: list[pa.Table] = []
        self.buffered = 0

    def add(self, part: pa.Table) -> None:
        self.pending.append(part)
        self.buffered += part.num_rows
        if self.buffered >= GROUP:
            self._flush(self.buffered // GROUP * GROUP)

    def _flush(self, n: int) -> None:
        rows = pa.concat_tables(self.pending)
        self.writer.write_table(rows.slice(0, n), row_group_size=GROUP)
        rest = rows.slice(n)
        self.pending, self.buffered = ([rest] if rest.num_rows else []), rest.num_rows

    def finish(self) -> None:
        if self.buffered:
            self._flush(self.buffered)
        self.writer.close()


def stream_pool_file(path: str, part: int, row0: int, folder: str) -> dict:
    """Stage body: one pool file's selectable rows into per-cluster files (rows-<cluster>-<part>.parquet).
    row0: the file's first row in the pool's row numbering (folder/row_index.npy maps it to an index)."""
    from lead_ray.online.pool import ROW_COLUMNS

    folder = Path(folder)
    index_of_row = np.load(folder / "row_index.npy", mmap_mode="r")
    cluster = np.load(folder / "index_cluster.npy", mmap_mode="r")
    writers: dict[int, _ClusterWriter] = {}
    # pre_buffer=False: pyarrow would otherwise buffer every column chunk of the file at once
    for batch in pq.ParquetFile(path, pre_buffer=False).iter_batches(batch_size=BATCH_ROWS, columns=ROW_COLUMNS):
        index = np.asarray(index_of_row[row0 : row0 + batch.num_rows])
        row0 += batch.num_rows
        keep = index >= 0
        rows = pa.Table.from_batches([batch]).filter(pa.array(keep))
        rows = rows.append_column("index", pa.array(index[keep]))
        of = np.asarray(cluster[index[keep]])
        for k in np.unique(of).tolist():
            if k not in writers:
                writers[k] = _ClusterWriter(folder / f"rows-{k:04d}-{part:05d}.parquet", rows.schema)
            writers[k].add(rows.filter(pa.array(of == k)))
    for writer in writers.values():
        writer.finish()
    return {"clusters": sorted(writers)}


def write_round_rows(
    files: list[Path], index_of_row: np.ndarray, cluster: np.ndarray, folder: Path, tasks: bool = True
) -> None:
    """Stream the pool files' rows into per-cluster files, one Ray task per pool file (tasks=False: in this
    process). index_of_row: per row of `files` (concatenated), its dense index or -1 (not selectable);
    cluster: the difficulty cluster of each index."""
    from lead_ray.stages import run_units

    folder.mkdir(parents=True, exist_ok=True)
    for old in [*folder.glob("rows-*.parquet"), *folder.glob("*.npy"), *folder.glob("layout.json")]:
        old.unlink()  # positions.npy, written last, marks the folder complete
    np.save(folder / "row_index.npy", np.asarray(index_of_row, np.int64))
    np.save(folder / "index_cluster.npy", np.asarray(cluster, np.int32))
    row0 = np.concatenate([[0], np.cumsum([pq.ParquetFile(f).metadata.num_rows for f in files])])
    items = [{"path": str(f), "part": j, "row0": int(row0[j])} for j, f in enumerate(files)]
    if tasks:
        run_units(items, stream_pool_file, {"folder": str(folder)}, "WriteRoundRows")
    else:
        for item in items:
            stream_pool_file(**item, folder=str(folder))
    _write_positions(folder, len(cluster))
    for scratch in ("row_index.npy", "index_cluster.npy"):
        (folder / scratch).unlink()


def _write_positions(folder: Path, n: int) -> None:
    """positions.npy (index → position) and layout.json (file names and first positions), in (cluster, part)
    order, from each written file's `index` column."""
    # int32 below 2³¹ samples: every worker holds this array (400 MB at 100M samples instead of 800)
    positions = np.full(n, -1, np.int32 if n < 2**31 else np.int64)
    names, starts, start = [], [], 0
    for path in sorted(folder.glob("rows-*.parquet")):
        index = pq.read_table(path, columns=["index"])["index"].to_numpy()
        positions[index] = start + np.arange(len(index))
        names.append(path.name)
        starts.append(start)
        start += len(index)
    assert (positions >= 0).all(), "a selectable index never came by in the pool files"
    write_text_atomic(folder / "layout.json", json.dumps({"files": names, "starts": starts}) + "\n")
    with atomic_path(folder / "positions.npy") as tmp, open(tmp, "wb") as out:
        np.save(out, positions)


class RoundRows:
    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.positions = np.load(self.folder / "positions.npy")
        layout = json.loads((self.folder / "layout.json").read_text())
        self.names, self.starts = layout["files"], np.asarray(layout["starts"], np.int64)
        self.files: dict[int, pq.ParquetFile] = {}

    def _file(self, k: int) -> pq.ParquetFile:
        if k not in self.files:  # pre_buffer=False: buffers only the row groups read
            self.files[k] = pq.ParquetFile(self.folder / self.names[k], pre_buffer=False)
        return self.files[k]

    def read(self, index: np.ndarray, columns: list[str] | None = None) -> pa.Table:
        """The rows of the given indices, in that order (only the row groups holding them are read)."""
        index = np.asarray(index, np.int64)
        pos = self.positions[index].astype(np.int64)
        file = np.searchsorted(self.starts, pos, side="right") - 1
        group = (pos - self.starts[file]) // GROUP
        found, wanted = [], pa.array(index)
        for k in np.unique(file).tolist():
            groups = np.unique(group[file == k]).tolist()
            for start in range(0, len(groups), READ_GROUPS):  # a bounded slice of the file at a time
                t = self._file(k).read_row_groups(
                    groups[start : start + READ_GROUPS], columns=None if columns is None else [*columns, "index"]
                )
                found.append(t.filter(pc.is_in(t["index"], wanted)))
        if not found:
            return pq.read_schema(self.folder / self.names[0]).empty_table()
        table = pa.concat_tables(found)
        got = table["index"].to_numpy()
        order = np.argsort(got, kind="stable")
        return table.take(pa.array(order[np.searchsorted(got[order], index)]))

    def messages(self, index: np.ndarray) -> list[list[dict]]:
        """The conversations of the given indices, in that order."""
        return self.read(index, ["messages"])["messages"].to_pylist()
