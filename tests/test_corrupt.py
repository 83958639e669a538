"""The noisy pool of the quality benchmark: planted corruptions add up, and selection never sees the label."""

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from bench.quality.corrupt import CORRUPT_COLUMN, plant, plant_pool


def pool(n=300):
    sources = ["gsm8k.jsonl", "code.json", "t0/a.jsonl"]
    rows = [
        {
            "id": f"{i:05d}",
            "source": sources[i % 3],
            "messages": [
                {"role": "user", "content": f"question {i}"},
                {"role": "assistant", "content": f"answer number {i} " * 5},
            ],
        }
        for i in range(n)
    ]
    return pa.Table.from_pylist(rows)


def test_planting_counts_add_up_and_each_kind_is_what_it_says():
    table = pool()
    out, stats = plant(table, 0.15, seed=0)
    label = np.array(out[CORRUPT_COLUMN].to_pylist())
    assert stats["planted"] == 45 == (label != "").sum() and stats["by_kind"] == {
        "swap": 15,
        "truncate": 15,
        "cross_source": 15,
    }
    assert out["id"].equals(table["id"]) and out.num_rows == table.num_rows
    before = [m[-1]["content"] for m in table["messages"].to_pylist()]
    after = [m[-1]["content"] for m in out["messages"].to_pylist()]
    sources = table["source"].to_pylist()
    origin = {text: i for i, text in enumerate(before)}
    for i, kind in enumerate(label):
        if kind == "":
            assert after[i] == before[i]
        elif kind == "truncate":
            assert after[i] == before[i][: len(before[i]) // 10]
        else:  # another sample's response, of the same source (swap) or of another (cross_source)
            donor = origin[after[i]]
            assert donor != i and (sources[donor] == sources[i]) == (kind == "swap")
    again, _ = plant(table, 0.15, seed=0)
    assert again.equals(out)  # seeded


def test_a_pool_is_planted_once_in_place(tmp_path):
    folder = tmp_path / "pool"
    folder.mkdir()
    table = pool()
    pq.write_table(table.slice(0, 120), folder / "part-0.parquet")
    pq.write_table(table.slice(120), folder / "part-1.parquet")
    first = plant_pool(folder, 0.15, seed=3)
    assert first["planted"] == 45 and [pq.ParquetFile(f).metadata.num_rows for f in sorted(folder.iterdir())] == [
        120,
        180,
    ]
    second = plant_pool(folder, 0.5, seed=9)
    assert second["already_planted"] and second["planted"] == 45


def test_selection_never_reads_the_planted_label(tmp_path):
    """The run reads a fixed column list without the label, and no lead_ray module names it."""
    from lead_ray.config import load_config
    from lead_ray.online.pool import POOL_COLUMNS, read_pool

    sources = [
        p for p in (Path(__file__).resolve().parents[1] / "lead_ray").rglob("*.py") if CORRUPT_COLUMN in p.read_text()
    ]
    assert not sources and CORRUPT_COLUMN not in POOL_COLUMNS
    table, _ = plant(pool(40), 0.5, seed=0)
    extra = {c: pa.array([0.0] * 40) for c in ("iu0", "ifd")}
    extra |= {
        "n_response_tokens": pa.array([5] * 40),
        "difficulty_cluster": pa.array([0] * 40),
        "task_cluster": pa.array([0] * 40),
    }
    extra |= {"file": pa.array(["x"] * 40), "line": pa.array(list(range(40))), "format": pa.array(["messages"] * 40)}
    for name, column in extra.items():
        table = table.append_column(name, column)
    (tmp_path / "clustered" / "pool").mkdir(parents=True)
    pq.write_table(table, tmp_path / "clustered" / "pool" / "part-0.parquet")
    selectable, held = read_pool(load_config(None, [f"work_dir={tmp_path}"]))
    assert CORRUPT_COLUMN not in selectable.column_names and CORRUPT_COLUMN not in held.column_names
