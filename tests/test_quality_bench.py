"""bench/quality.py's pure parts: the stratified slice covers every source."""

import pyarrow as pa

from bench.quality import stratified_slice


def test_stratified_slice_gives_every_source_its_share():
    sources = ["gsm8k/train.jsonl"] * 500 + ["self_instruct/seed_tasks.jsonl"] * 30
    sources += [f"t0_train_50k/task_{i % 20}.jsonl" for i in range(2000)]  # 20 files: one group
    table = pa.table({"id": [f"{i:06d}" for i in range(len(sources))][::-1], "source": sources})
    sliced = stratified_slice(table, 300)
    got = sliced["source"].to_pylist()
    assert got.count("self_instruct/seed_tasks.jsonl") == 30  # small group: all of it
    assert got.count("gsm8k/train.jsonl") == 135 and sum(s.startswith("t0_train_50k/") for s in got) == 135
    assert sliced["id"].to_pylist() == sorted(sliced["id"].to_pylist())
    assert stratified_slice(table, 10_000).num_rows == len(sources)  # asks for more than there is
