"""The run's view of the pool: dense indices in id order without the conversations, and a round's rows
read back from the pool files by index (no Ray)."""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lead_ray.config import load_config
from lead_ray.data import rows as rows_module
from lead_ray.data.rows import RoundRows, write_pool_file, write_round_layout
from lead_ray.data.split import is_holdout
from lead_ray.online.pool import POOL_COLUMNS, index_pool, read_holdout, read_selection


def clustered_pool(work, n: int, files: int, seed: int = 0, writer=None):
    """A clustered pool split over `files` files in shuffled id order; messages name their id. writer: how a
    file is written (default: pyarrow's, row groups of 37)."""
    rng = np.random.default_rng(seed)
    ids = [f"s{i:06d}" for i in rng.permutation(n)]
    table = pa.table(
        {
            "id": ids,
            "source": [f"src{i % 3}" for i in range(n)],
            "file": ["in.jsonl"] * n,
            "line": list(range(1, n + 1)),
            "format": ["messages"] * n,
            "messages": [[{"role": "user", "content": "q"}, {"role": "assistant", "content": i}] for i in ids],
            "iu0": rng.random(n),
            "ifd": rng.random(n),
            "n_response_tokens": rng.integers(1, 50, n),
            "difficulty_cluster": rng.integers(0, 3, n),
            "task_cluster": rng.integers(0, 2, n),
        }
    )
    folder = work / "clustered" / "pool"
    folder.mkdir(parents=True)
    for k, part in enumerate(np.array_split(np.arange(n), files)):
        path, part = folder / f"part-{k:03d}.parquet", table.take(pa.array(part))
        writer(part, path) if writer else pq.write_table(part, path, row_group_size=37)
    return table, load_config(None, [f"work_dir={work}", "eval.holdout_fraction=0.1", "eval.holdout_max=15"])


def test_index_is_id_order_of_the_selectable_rows_and_the_holdout_is_the_hash_split(tmp_path):
    table, cfg = clustered_pool(tmp_path, 500, files=3)
    pool = index_pool(cfg)
    ids = sorted(table["id"].to_pylist())
    held = is_holdout(ids, 0.1)
    selection = read_selection(cfg, pool)
    assert pool.size == selection.num_rows == int((~held).sum()) and pool.size + held.sum() == 500
    assert pool.holdout_ids == [i for i, h in zip(ids, held) if h][:15]
    by_id = {r["id"]: r for r in table.to_pylist()}
    selectable_ids = [i for i, h in zip(ids, held) if not h]
    assert selection["iu0"].to_pylist() == [by_id[i]["iu0"] for i in selectable_ids]
    assert selection["index"].to_pylist() == list(range(pool.size))
    assert "messages" not in selection.column_names  # the driver never holds the conversations
    holdout = read_holdout(cfg, pool)
    assert holdout["id"].to_pylist() == pool.holdout_ids and holdout.column_names == POOL_COLUMNS


@settings(max_examples=15, deadline=None)
@given(n=st.integers(1, 400), files=st.integers(1, 4), seed=st.integers(0, 1000), lead_ray_layout=st.booleans())
def test_round_rows_give_back_exactly_the_asked_rows(tmp_path_factory, n, files, seed, lead_ray_layout):
    """Any Parquet layout reads back right; the one `lead-ray cluster` writes, with small groups here and few
    groups a read, so that every boundary is crossed."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(rows_module, "GROUP", 4)
        patch.setattr(rows_module, "READ_GROUPS", 3)
        writer = write_pool_file if lead_ray_layout else None
        _check_round_rows(tmp_path_factory.mktemp("pool"), n, files, seed, writer)


def _check_round_rows(work, n, files, seed, writer):
    table, cfg = clustered_pool(work, n, files, seed, writer)
    pool = index_pool(cfg)
    write_round_layout(pool, work / "rows")
    if not pool.size:  # all held out
        return
    rng = np.random.default_rng(seed)
    asked = rng.permutation(pool.size)[: max(1, pool.size // 3)]
    asked = np.concatenate([asked, asked[rng.integers(0, len(asked), 3)]])  # a row asked twice comes twice
    got = RoundRows(work / "rows").read(asked, ["id", "messages"])
    ids = sorted(table["id"].to_pylist())  # the dense index is id order, the held-out split left out
    selectable_ids = [i for i, held in zip(ids, is_holdout(ids, cfg.eval.holdout_fraction)) if not held]
    assert got["id"].to_pylist() == [selectable_ids[i] for i in asked]
    assert [m[1]["content"] for m in got["messages"].to_pylist()] == got["id"].to_pylist()
    assert RoundRows(work / "rows").read(asked[:0], ["id"]).num_rows == 0


def test_cluster_writes_each_file_by_arm_then_highest_iu0_in_small_row_groups(tmp_path):
    table, _ = clustered_pool(tmp_path, 300, files=1)
    write_pool_file(table, tmp_path / "one.parquet")
    written = pq.read_table(tmp_path / "one.parquet")
    keys = list(zip(written["difficulty_cluster"].to_pylist(), (-written["iu0"].to_numpy()).tolist()))
    assert keys == sorted(keys) and sorted(written["id"].to_pylist()) == sorted(table["id"].to_pylist())
    meta = pq.ParquetFile(tmp_path / "one.parquet").metadata
    sizes = [meta.row_group(g).num_rows for g in range(meta.num_row_groups)]
    assert sizes == [rows_module.GROUP] * (300 // rows_module.GROUP) + [300 % rows_module.GROUP]


def test_a_pool_rewritten_under_a_run_is_refused(tmp_path):
    _, cfg = clustered_pool(tmp_path, 200, files=2)
    pool = index_pool(cfg)
    write_round_layout(pool, tmp_path / "rows")
    shorter = pq.read_table(pool.files[0]).slice(1)
    pq.write_table(shorter, pool.files[0])
    with pytest.raises(RuntimeError, match="changed since this run started"):
        RoundRows(tmp_path / "rows").read(np.arange(pool.size), ["id"])


def test_narrow_copies_give_the_same_index_and_columns_and_a_stale_one_is_not_read(tmp_path):
    """The run reads ids, hashes and selection columns from the narrow copies that write_pool_file leaves;
    what it gets equals reading the pool files themselves, and a copy its pool file no longer matches is
    ignored."""
    _, cfg = clustered_pool(tmp_path, 500, files=3, writer=write_pool_file)
    with_copies = index_pool(cfg)
    assert with_copies.narrow and all(p.parent.name == "pool.narrow" for p in with_copies.narrow)
    assert "messages" not in pq.read_schema(with_copies.narrow[0]).names
    selection = read_selection(cfg, with_copies)
    for copy in with_copies.narrow:
        copy.unlink()
    without = index_pool(cfg)
    assert without.narrow is None
    assert np.array_equal(with_copies.selectable_rows, without.selectable_rows)
    assert with_copies.holdout_ids == without.holdout_ids and with_copies.file_rows == without.file_rows
    assert selection.equals(read_selection(cfg, without))

    for f in without.files:
        write_pool_file(pq.read_table(f), f)  # the copies back
    assert index_pool(cfg).narrow is not None
    pq.write_table(pq.read_table(without.files[1]).slice(5), without.files[1])  # rewritten by another writer
    stale = index_pool(cfg)
    assert stale.narrow is None and stale.file_rows[1] == without.file_rows[1] - 5


def test_a_pool_without_a_switchs_column_is_refused_by_selection_but_not_by_the_held_out_split(tmp_path):
    """A pool scored before iu0_content: a run with selection.end_token=skip is told to re-score (naming the
    column), while the evaluation's held-out split, which reads no selection column, still reads."""
    from lead_ray.config import ConfigError

    _, cfg = clustered_pool(tmp_path, 200, files=2, writer=write_pool_file)
    pool = index_pool(cfg)
    cfg.selection.end_token = "skip"
    assert index_pool(cfg).holdout_ids == pool.holdout_ids and read_holdout(cfg, pool).num_rows > 0
    with pytest.raises(ConfigError, match="no column iu0_content.*lead-ray score"):
        read_selection(cfg, pool)
    cfg.selection.end_token = "count"
    assert read_selection(cfg, pool).num_rows == pool.size
