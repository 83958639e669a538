"""Reading a round's rows without scanning the pool, and without any process holding it.

Before training, the run streams the clustered pool's ROW_COLUMNS (pool.py) into files of one
difficulty cluster each (`rows-<cluster>-<part>.parquet`), in Parquet row groups of exactly GROUP rows,
plus `positions.npy` (index → position) and `offsets.npy` (first position of each cluster). A round
draws from one cluster, so a worker reads only row groups of that cluster that hold its samples.
The stream holds one batch and fewer than GROUP rows per cluster at a time.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from lead_ray.files import atomic_path

GROUP = 64
FILE_ROWS = GROUP * 1024
BATCH_ROWS = 8192
READ_GROUPS = 256  # row groups a read decodes at once (16,384 rows) before keeping only the asked ones


class _ClusterWriter:
    """One cluster's files: rows arrive in any batch sizes and leave in whole row groups of GROUP."""

    def __init__(self, folder: Path, cluster: int):
        self.folder, self.cluster = folder, cluster
        self.rows = 0  # rows taken so far (positions within the cluster)
        self.written = 0
        self.pending: list[pa.Table] = []
        self.writer: pq.ParquetWriter | None = None
        self.schema: pa.Schema | None = None

    def add(self, part: pa.Table) -> None:
        self.pending.append(part)
        self.rows += part.num_rows
        if self.rows - self.written >= GROUP:
            self._flush(final=False)

    def _flush(self, final: bool) -> None:
        buffered = pa.concat_tables(self.pending)
        take = buffered.num_rows if final else buffered.num_rows // GROUP * GROUP
        while take:  # never across a file boundary: a file holds FILE_ROWS rows
            n = min(take, FILE_ROWS - self.written % FILE_ROWS)
            self._writer().write_table(buffered.slice(0, n), row_group_size=GROUP)
            buffered, take, self.written = buffered.slice(n), take - n, self.written + n
            if self.written % FILE_ROWS == 0:
                self._close()
        self.pending = [buffered] if buffered.num_rows else []

    def _writer(self) -> pq.ParquetWriter:
        if self.writer is None:
            name = f"rows-{self.cluster:04d}-{self.written // FILE_ROWS:05d}.parquet"
            self.writer = pq.ParquetWriter(self.folder / name, self.schema, write_statistics=False)
        return self.writer

    def _close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def finish(self) -> None:
        if self.pending:
            self._flush(final=True)
        self._close()


def write_round_rows(files: list[Path], index_of_row: np.ndarray, cluster: np.ndarray, folder: Path) -> None:
    """Stream the pool files' rows into per-cluster files. index_of_row: per row of `files` (concatenated),
    its dense index or -1 (not selectable); cluster: the difficulty cluster of each index."""
    from lead_ray.online.pool import ROW_COLUMNS

    folder.mkdir(parents=True, exist_ok=True)
    for old in [*folder.glob("rows-*.parquet"), *folder.glob("*.npy")]:  # the .npy files, written last, mark done
        old.unlink()
    cluster = np.asarray(cluster, np.int64)
    offsets = np.concatenate([[0], np.cumsum(np.bincount(cluster, minlength=1))]).astype(np.int64)
    writers = [_ClusterWriter(folder, k) for k in range(len(offsets) - 1)]
    # int32 below 2³¹ samples: every worker holds this array (400 MB at 100M samples instead of 800)
    positions = np.full(len(cluster), -1, np.int32 if len(cluster) < 2**31 else np.int64)
    row0 = 0
    for f in files:
        # pre_buffer=False: pyarrow would otherwise buffer every column chunk of the file (the whole pool file)
        for batch in pq.ParquetFile(f, pre_buffer=False).iter_batches(batch_size=BATCH_ROWS, columns=ROW_COLUMNS):
            index = index_of_row[row0 : row0 + batch.num_rows]
            row0 += batch.num_rows
            keep = index >= 0
            rows = pa.Table.from_batches([batch]).filter(pa.array(keep))
            rows = rows.append_column("index", pa.array(index[keep]))
            _route(rows, cluster[index[keep]], writers, offsets, positions)
    for writer in writers:
        writer.finish()
    assert (positions >= 0).all(), "a selectable index never came by in the pool files"
    for name, array in (("offsets", offsets), ("positions", positions)):
        with atomic_path(folder / f"{name}.npy") as tmp, open(tmp, "wb") as out:
            np.save(out, array)


def _route(rows: pa.Table, cluster_of_row: np.ndarray, writers: list[_ClusterWriter], offsets, positions) -> None:
    index = rows["index"].to_numpy()
    for k in np.unique(cluster_of_row):
        mine = cluster_of_row == k
        part = rows.filter(pa.array(mine))
        writer = writers[int(k)]
        writer.schema = part.schema
        positions[index[mine]] = offsets[k] + writer.rows + np.arange(part.num_rows)
        writer.add(part)


class RoundRows:
    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.positions = np.load(self.folder / "positions.npy")
        self.offsets = np.load(self.folder / "offsets.npy")
        self.files: dict[tuple[int, int], pq.ParquetFile] = {}

    def _file(self, cluster: int, part: int) -> pq.ParquetFile:
        if (cluster, part) not in self.files:
            path = self.folder / f"rows-{cluster:04d}-{part:05d}.parquet"
            self.files[cluster, part] = pq.ParquetFile(path, pre_buffer=False)  # buffers only the groups read
        return self.files[cluster, part]

    def read(self, index: np.ndarray, columns: list[str] | None = None) -> pa.Table:
        """The rows of the given indices, in that order (only the row groups holding them are read)."""
        index = np.asarray(index, np.int64)
        pos = self.positions[index].astype(np.int64)
        cluster = np.searchsorted(self.offsets, pos, side="right") - 1
        local = pos - self.offsets[cluster]
        found = []
        wanted = pa.array(index)
        for (k, part), rows in _by_file(cluster, local):
            groups = np.unique(rows % FILE_ROWS // GROUP).tolist()
            for start in range(0, len(groups), READ_GROUPS):  # a bounded slice of the file at a time
                t = self._file(k, part).read_row_groups(
                    groups[start : start + READ_GROUPS], columns=None if columns is None else [*columns, "index"]
                )
                found.append(t.filter(pc.is_in(t["index"], wanted)))
        if not found:
            return pq.read_schema(next(self.folder.glob("rows-*.parquet"))).empty_table()
        table = pa.concat_tables(found)
        got = table["index"].to_numpy()
        order = np.argsort(got, kind="stable")
        return table.take(pa.array(order[np.searchsorted(got[order], index)]))

    def messages(self, index: np.ndarray) -> list[list[dict]]:
        """The conversations of the given indices, in that order."""
        return self.read(index, ["messages"])["messages"].to_pylist()


def _by_file(cluster: np.ndarray, local: np.ndarray):
    """((cluster, part), local positions) for every file the positions fall in."""
    part = local // FILE_ROWS
    keys = np.stack([cluster, part], axis=1)
    for k, p in np.unique(keys, axis=0).tolist():
        yield (k, p), local[(cluster == k) & (part == p)]
