"""A cached pool scored before `iu0_content` existed gains the column, without re-scoring the pool.

`selection.end_token: skip` starts a run from iu0_content (IU₀ without the end-of-turn tokens), which
`lead-ray score` now writes beside iu0. The benchmark's cached pools (bench/cache) were scored before, and
re-scoring them would take ~10 minutes a pool and could move iu0 itself by a near-tie (a newer environment's
bf16 numerics), which would change what the cached runs of every other method were compared on. So this adds
the one column: the base model's forward pass over the pool's answers (the forward pass scoring makes for iu0),
once per variant, kept in scored/iu0_content.parquet, then appended to a clustered pool's files, whose rows
and every other column stay as they were. The same pass recomputes iu0, which must match the cached column:
a check that the column comes from the model and settings that scored the pool.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from bench.quality_cache import log

CONTENT = "iu0_content"
IU0_TOLERANCE = 0.02  # nats: bf16 batches padded differently than scoring's may move a mean this much


def content_scores(variant: Path, cfg) -> pa.Table:
    """(id, iu0_content) of the variant's clustered pool, computed once and cached."""
    cached = variant / "scored" / f"{CONTENT}.parquet"
    if cached.exists():
        return pq.read_table(cached)
    import torch

    from lead_ray.models.load import load_model, materialize_model
    from lead_ray.models.loss import score_encoded
    from lead_ray.models.template import encode_conversation

    pool = pq.read_table(variant / "clustered" / "pool", columns=["id", "messages", "iu0"])
    log(f"{variant.name}: {CONTENT} for {pool.num_rows} rows (the base model's pass over the pool's answers)")
    torch.set_num_threads(2)
    model, tok = load_model(materialize_model(cfg.model, variant / "models" / "base", cfg.seed), cfg.model)
    L = cfg.model.max_length
    encoded = [encode_conversation(tok, m, L) for m in pool["messages"].to_pylist()]
    loss, _, content = score_encoded(
        model.eval(), encoded, tok.pad_token_id, cfg.score.batch_tokens, cfg.score.max_batch_size, tok.eos_token_id
    )
    cached_iu0 = pool["iu0"].to_numpy(zero_copy_only=False)
    both = np.isfinite(loss) & np.isfinite(cached_iu0)
    gap = float(np.max(np.abs(loss[both] - cached_iu0[both]))) if both.any() else 0.0
    if gap > IU0_TOLERANCE or (np.isfinite(loss) != np.isfinite(cached_iu0)).any():
        sys.exit(
            f"{variant}: recomputed iu0 differs from the cached column by up to {gap:.4f} nats: not the same model"
        )
    log(f"{variant.name}: recomputed iu0 within {gap:.5f} nats of the cached column")
    table = pa.table({"id": pool["id"], CONTENT: pa.array(content.astype(np.float32))})
    cached.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, cached)
    return table


def add_content_column(variant: Path, work: Path, cfg) -> None:
    """Append iu0_content to the clustered pool files a run in `work` reads (a clustering of the variant's pool)."""
    from lead_ray.data.rows import write_pool_file

    files = sorted((work / "clustered" / "pool").glob("*.parquet"))
    if all(CONTENT in pq.read_schema(f).names for f in files):
        return
    scores = content_scores(variant, cfg)
    by_id = dict(zip(scores["id"].to_pylist(), scores[CONTENT].to_pylist()))
    for path in files:
        table = pq.read_table(path)
        if CONTENT not in table.column_names:
            column = pa.array([by_id[i] for i in table["id"].to_pylist()], pa.float32())
            write_pool_file(table.append_column(CONTENT, column), path)  # its sort is stable: the same order
            if pq.read_table(path, columns=["id"])["id"] != table["id"]:
                sys.exit(f"{path}: rewriting it moved its rows")
    log(f"{work.relative_to(variant.parent)}: {CONTENT} added to {len(files)} pool file(s)")
