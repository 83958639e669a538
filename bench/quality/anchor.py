"""The quality benchmark's anchor (issue 33, design c): trusted pairs for `selection.utility: learnability`.

The anchor is ANCHOR_ROWS rows of the full prepared pool (../shared/data/pool without noncommercial/; never
eval/) from outside the variant's slice, spread over the source groups as the slice is (bench/quality/run.py,
`stratified_slice`), and never planted: the pairs a user would check by hand. It is written once per variant to
<variant>/anchor/pool. `lead-ray anchor` trains the reference model on it (<variant>/models/anchor), and its
losses over the variant's clustered pool (cached pools were scored before the columns existed) are computed once
into <variant>/scored/anchor_scores.parquet and appended to the clustered pool files a learnability run reads.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from bench.quality.cache import log

ANCHOR_ROWS = 300
COLUMNS = ("anchor_loss", "anchor_content")


def anchor_rows(full: pa.Table, taken: set[str], rows: int = ANCHOR_ROWS) -> pa.Table:
    """`rows` rows of the full pool that the slice did not take, spread over source groups like the slice."""
    from bench.quality.pool_slice import stratified_slice

    outside = full.filter(pa.array([i not in taken for i in full["id"].to_pylist()]))
    return stratified_slice(outside, rows)


def anchor_folder(variant: Path) -> Path:
    return variant / "anchor" / "pool"


def make_anchor(variant: Path, full: Path) -> Path:
    """Write the variant's anchor once (from the full prepared pool, which bench/quality/run.py's setup made)."""
    folder = anchor_folder(variant)
    if (folder / "part-0.parquet").exists():
        return folder
    pool = full / "prepared" / "pool"
    if not pool.exists():
        sys.exit(f"{pool}: the full prepared pool is missing; run bench/quality/run.py's setup (a fresh --work) first")
    taken = set(pq.read_table(variant / "prepared" / "pool", columns=["id"])["id"].to_pylist())
    table = anchor_rows(pq.read_table(pool), taken)
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, folder / "part-0.parquet")
    log(f"{variant.name}: anchor of {table.num_rows} pairs from outside the slice")
    return folder


def train_anchor(variant: Path, cfg) -> None:
    """The reference model, once per variant (its scores are redone whenever it is)."""
    from lead_ray.offline.anchor import anchor

    if (variant / "models" / "anchor_stats.json").exists():
        return
    (variant / "scored" / "anchor_scores.parquet").unlink(missing_ok=True)
    stats = anchor(cfg)
    log(f"{variant.name}: anchor model, best epoch {stats['best_epoch']} of {stats['epochs_run']}")


def anchor_scores(variant: Path, cfg) -> pa.Table:
    """(id, anchor_loss, anchor_content) of every row of the variant's clustered pool, computed once."""
    cached = variant / "scored" / "anchor_scores.parquet"
    if cached.exists():
        return pq.read_table(cached)
    import torch

    from lead_ray.models.load import load_model_or_adapter
    from lead_ray.models.loss import score_encoded
    from lead_ray.models.template import encode_conversation

    pool = pq.read_table(variant / "clustered" / "pool", columns=["id", "messages"])
    log(f"{variant.name}: the anchor model's pass over {pool.num_rows} pool rows")
    torch.set_num_threads(2)
    model, tok = load_model_or_adapter(variant / "models" / "anchor", variant / "models" / "base", cfg.model, "cpu")
    encoded = [encode_conversation(tok, m, cfg.model.max_length) for m in pool["messages"].to_pylist()]
    loss, _, content = score_encoded(
        model.eval(), encoded, tok.pad_token_id, cfg.score.batch_tokens, cfg.score.max_batch_size, tok.eos_token_id
    )
    columns = {COLUMNS[0]: loss, COLUMNS[1]: content}
    table = pa.table({"id": pool["id"], **{k: pa.array(v.astype(np.float32)) for k, v in columns.items()}})
    pq.write_table(table, cached)
    return table


def add_anchor_columns(variant: Path, work: Path, cfg) -> None:
    """Append the anchor columns to the clustered pool files a run in `work` reads, rows where they were."""
    from lead_ray.data.rows import write_pool_file

    files = sorted((work / "clustered" / "pool").glob("*.parquet"))
    if all(COLUMNS[0] in pq.read_schema(f).names for f in files):
        return
    scores = anchor_scores(variant, cfg)
    by_id = {c: dict(zip(scores["id"].to_pylist(), scores[c].to_pylist())) for c in COLUMNS}
    for path in files:
        table = pq.read_table(path)
        for c in COLUMNS:
            if c not in table.column_names:
                table = table.append_column(c, pa.array([by_id[c][i] for i in table["id"].to_pylist()], pa.float32()))
        write_pool_file(table, path, sort=False)
        if pq.read_table(path, columns=["id"])["id"] != table["id"]:
            sys.exit(f"{path}: rewriting it moved its rows")
    log(f"{work.relative_to(variant.parent)}: anchor columns added to {len(files)} pool file(s)")


def prepare_anchor(variant: Path, work: Path, cfg) -> None:
    """Everything a learnability run needs, made once: the anchor, its model and the pool's anchor columns."""
    make_anchor(variant, variant.parent / "full")
    train_anchor(variant, cfg)
    add_anchor_columns(variant, work, cfg)
