"""The run's view of the pool: dense indices in id order without the conversations, and rows streamed into
per-cluster files that a round reads back by index (no Ray)."""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lead_ray.config import load_config
from lead_ray.data.split import is_holdout
from lead_ray.online import rows as rows_module
from lead_ray.online.pool import POOL_COLUMNS, index_pool, read_holdout, read_selection
from lead_ray.online.rows import RoundRows, write_round_rows


def clustered_pool(work, n: int, files: int, seed: int = 0):
    """A clustered pool split over `files` files in shuffled id order; messages name their id."""
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
        pq.write_table(table.take(pa.array(part)), folder / f"part-{k:03d}.parquet", row_group_size=37)
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
@given(n=st.integers(1, 400), files=st.integers(1, 4), seed=st.integers(0, 1000))
def test_round_rows_give_back_exactly_the_asked_rows(tmp_path_factory, n, files, seed):
    with pytest.MonkeyPatch.context() as patch:  # small groups and batches: every boundary is crossed
        patch.setattr(rows_module, "GROUP", 4)
        patch.setattr(rows_module, "BATCH_ROWS", 7)
        patch.setattr(rows_module, "READ_GROUPS", 3)
        _check_round_rows(tmp_path_factory.mktemp("pool"), n, files, seed)


def _check_round_rows(work, n, files, seed):
    table, cfg = clustered_pool(work, n, files, seed)
    pool = index_pool(cfg)
    selection = read_selection(cfg, pool)
    cluster = selection["difficulty_cluster"].to_numpy()
    write_round_rows(pool.files, pool.index_of_row, cluster, work / "rows", tasks=False)
    written = sorted((work / "rows").glob("rows-*.parquet"))
    assert {int(f.name.split("-")[1]) for f in written} == set(cluster.tolist())  # one cluster per file
    for f in written:  # whole row groups of GROUP, but a file's last
        meta = pq.ParquetFile(f).metadata
        sizes = [meta.row_group(g).num_rows for g in range(meta.num_row_groups)]
        assert all(s == 4 for s in sizes[:-1]) and 0 < sizes[-1] <= 4
    assert not list((work / "rows").glob("row_index.npy"))  # the tasks' scratch inputs are gone
    if not pool.size:  # all held out
        return
    asked = np.random.default_rng(seed).permutation(pool.size)[: max(1, pool.size // 3)]
    got = RoundRows(work / "rows").read(asked, ["id", "messages"])
    selectable_ids = table["id"].take(pa.array(pool.selectable_rows)).to_pylist()
    assert got["id"].to_pylist() == [selectable_ids[i] for i in asked]
    assert [m[1]["content"] for m in got["messages"].to_pylist()] == got["id"].to_pylist()
