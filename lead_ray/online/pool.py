"""The clustered pool as `lead-ray run` sees it: per-sample selection arrays in the driver, the rows on disk.

No process holds the pool's conversations. The driver reads the `id` column once to give every
selectable sample its dense `index` (id order; the held-out split, by id hash, is never selectable),
then only the narrow columns selection needs (SELECTION_COLUMNS), both from the pool files' narrow
copies where `lead-ray cluster` wrote them (rows.py: one row group a file, the id hashes precomputed).
The conversations stay in Parquet: a round reads its rows from the pool files by row number (rows.py),
and the run's outputs read back only the selected rows. At 10M samples the driver holds ~30 bytes a
sample (docs/SCALING.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from lead_ray.config import Config, ConfigError
from lead_ray.data.rows import PoolRows, narrow_copies
from lead_ray.data.split import holdout_uniform_column
from lead_ray.files import require
from lead_ray.presets import switches

ROW_COLUMNS = ["id", "source", "file", "line", "format", "messages"]  # read by index, never held whole
SELECTION_COLUMNS = ["source", "iu0", "ifd", "n_response_tokens", "difficulty_cluster", "task_cluster"]
POOL_COLUMNS = list(dict.fromkeys(ROW_COLUMNS + SELECTION_COLUMNS))


@dataclass
class PoolIndex:
    files: list[Path]  # the clustered pool's files, in the order every reader walks them
    file_rows: list[int]  # rows of each file
    selectable_rows: np.ndarray  # row numbers (the files concatenated) of the selectable samples, in index order
    holdout_ids: list[str]  # the first eval.holdout_max held-out ids, in id order
    holdout_rows: np.ndarray  # their row numbers
    narrow: list[Path] | None = None  # the files' narrow copies (rows.narrow_copies), read instead where present

    @property
    def size(self) -> int:
        return len(self.selectable_rows)


def selection_columns(cfg: Config) -> list[str]:
    chosen = switches(cfg)
    extra = (["warm_loss"] if chosen.utility == "reducible" else []) + (
        ["iu0_content"] if chosen.end_token == "skip" else []
    )
    if chosen.utility == "learnability":
        extra.append(anchor_column(cfg))
    return SELECTION_COLUMNS + extra


def anchor_column(cfg: Config) -> str:
    """The anchor model's loss over the tokens U counts (`selection.end_token`): what learnability subtracts."""
    return "anchor_content" if switches(cfg).end_token == "skip" else "anchor_loss"


def pool_files(cfg: Config) -> list[Path]:
    """The clustered pool's Parquet files, checked for the columns every reader needs (the held-out split's
    too: an evaluation reads no selection column)."""
    pool_dir = require(cfg.stage_dir("clustered") / "pool", "*.parquet", "clustered pool", "cluster")
    files = sorted(pool_dir.glob("*.parquet"))
    require_columns(files, POOL_COLUMNS)
    return files


def require_columns(files: list[Path], columns: list[str]) -> None:
    names = pq.read_schema(files[0]).names
    missing = [c for c in columns if c not in names]
    if missing:
        raise ConfigError(
            f"{Path(files[0]).parent} has no column {', '.join(dict.fromkeys(missing))}: it was scored by an older "
            "lead-ray or before `lead-ray anchor`; run `lead-ray score` and `lead-ray cluster` again (or --set "
            "selection.utility=idu / selection.end_token=count)"
        )


def index_pool(cfg: Config) -> PoolIndex:
    """Dense indices in id order for the selectable rows; the held-out split's first ids."""
    files = pool_files(cfg)
    narrow = narrow_copies(files)
    parts = [pq.read_table(f, columns=["id", "holdout_u"] if narrow else ["id"]) for f in narrow or files]
    ids = pa.chunked_array([chunk for part in parts for chunk in part["id"].chunks], parts[0]["id"].type)
    order = pc.sort_indices(ids).to_numpy()  # stable: equal ids keep file order
    if narrow:
        held = np.concatenate([part["holdout_u"].to_numpy() for part in parts]) < cfg.eval.holdout_fraction
    else:
        held = holdout_uniform_column(ids) < cfg.eval.holdout_fraction
    held = held[order]
    # int32 below 2³¹ rows: the driver and every worker hold it (4 B a sample)
    selectable_rows = order[~held].astype(np.int32 if len(ids) < 2**31 else np.int64)
    holdout_rows = order[held][: cfg.eval.holdout_max]
    holdout_ids = ids.take(pa.array(holdout_rows)).to_pylist()
    return PoolIndex(files, [len(part) for part in parts], selectable_rows, holdout_ids, holdout_rows, narrow)


def read_selection(cfg: Config, pool: PoolIndex) -> pa.Table:
    """The selection columns of the selectable samples in index order, plus `index`. Integers narrowed and
    `source` dictionary-encoded file by file, then gathered a column at a time: the peak is one copy of
    the narrow columns plus one column."""
    files = pool.narrow or pool.files
    require_columns(files, selection_columns(cfg))
    table = pa.concat_tables([_narrow(pq.read_table(f, columns=selection_columns(cfg))) for f in files])
    rows, columns = pa.array(pool.selectable_rows), {}
    for name in table.column_names:
        columns[name] = table[name].take(rows)
        table = table.drop_columns([name])  # the unordered column is freed once gathered
    columns["index"] = pa.array(np.arange(len(pool.selectable_rows), dtype=np.int64))
    return pa.table(columns)


NARROW_TYPES = {"n_response_tokens": pa.int32(), "difficulty_cluster": pa.int16(), "task_cluster": pa.int32()}


def _narrow(table: pa.Table) -> pa.Table:
    for name, kind in NARROW_TYPES.items():
        table = table.set_column(table.schema.get_field_index(name), name, table[name].cast(kind))
    source = table.schema.get_field_index("source")
    return table.set_column(source, "source", pc.dictionary_encode(table["source"]))


def read_holdout(cfg: Config, pool: PoolIndex) -> pa.Table:
    """The held-out split's first eval.holdout_max rows (POOL_COLUMNS), in id order, read by row number."""
    return PoolRows([str(f) for f in pool.files], pool.file_rows).read(pool.holdout_rows, POOL_COLUMNS)


def read_pool(cfg: Config) -> tuple[pa.Table, pa.Table]:
    """(selection columns of the selectable samples, held-out rows): what a run and the evaluation read."""
    pool = index_pool(cfg)
    return read_selection(cfg, pool), read_holdout(cfg, pool)
