"""A cached pool scored before `iu0_content` existed gains the column, without re-scoring the pool.

`selection.end_token: skip` starts a run from iu0_content (IU₀ without the end-of-turn tokens), which
`lead-ray score` now writes beside iu0. The benchmark's cached pools (bench/cache) were scored before, and
re-scoring them would take ~10 minutes a pool and could move iu0 itself by a near-tie (a newer environment's
bf16 numerics), which would change what the cached runs of every other method were compared on. So this adds
the one column: the base model's forward pass over the pool's answers (the forward pass scoring makes for iu0),
once per variant, kept in scored/iu0_content.parquet, then appended to a clustered pool's files, whose rows
and every other column stay as they were. The same pass recomputes iu0, which must match the cached column:
a check that the column comes from the model and settings that scored the pool.

`cluster.end_nll_above` reads `iu0_end` (the end-of-turn tokens' own NLL) from the scored units when it
clusters. It is the rest of the same pass, (n·iu0 − (n − k)·iu0_content) / k, so a clustering with the gate gets
scored units of its own: the variant's, with iu0_end appended from the cached pass (no model run).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from bench.quality.cache import log

CONTENT = "iu0_content"
END = "iu0_end"
# nats: the median gap between the recomputed and the cached iu0. bf16 batches padded otherwise than scoring's
# (its units of 250 rows bucket differently) move single means by up to ~0.3 nats; another model moves them all
IU0_TOLERANCE = 0.02


def content_scores(variant: Path, cfg) -> pa.Table:
    """(id, iu0_content, iu0_again) of the variant's clustered pool, computed once and cached, and checked against
    the cached iu0 on every use."""
    cached = variant / "scored" / f"{CONTENT}.parquet"
    if not cached.exists():
        compute_content(variant, cfg, cached)
    table = pq.read_table(cached)
    iu0 = pq.read_table(variant / "clustered" / "pool", columns=["id", "iu0"])
    if iu0["id"] != table["id"]:
        sys.exit(f"{cached}: written for other rows than {variant / 'clustered' / 'pool'}'s; delete it")
    check_same_model(variant, table["iu0_again"].to_numpy(), iu0["iu0"].to_numpy(zero_copy_only=False))
    return table


def compute_content(variant: Path, cfg, cached: Path) -> None:
    """The base model's pass over the variant's clustered pool: iu0_content, and iu0 again for the check."""
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
    again = pa.array(loss.astype(np.float32))
    table = pa.table({"id": pool["id"], CONTENT: pa.array(content.astype(np.float32)), "iu0_again": again})
    cached.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, cached)


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
            write_pool_file(table.append_column(CONTENT, column), path, sort=False)  # the rows where they were
            if pq.read_table(path, columns=["id"])["id"] != table["id"]:
                sys.exit(f"{path}: rewriting it moved its rows")
    log(f"{work.relative_to(variant.parent)}: {CONTENT} added to {len(files)} pool file(s)")


def check_same_model(variant: Path, again: np.ndarray, cached: np.ndarray) -> None:
    """The pass must reproduce the cached iu0 (the same model and settings): the median gap within
    IU0_TOLERANCE, and NaN (no supervised token) in the same rows."""
    both = np.isfinite(again) & np.isfinite(cached)
    gap = np.abs(again[both] - cached[both])
    median, worst = (float(np.median(gap)), float(gap.max())) if both.any() else (0.0, 0.0)
    if median > IU0_TOLERANCE or (np.isfinite(again) != np.isfinite(cached)).any():
        sys.exit(f"{variant}: recomputed iu0 is {median:.4f} nats from the cached column (median): not the same model")
    log(f"{variant.name}: recomputed iu0 within {median:.5f} nats of the cached column (median; at most {worst:.3f})")


def end_scores(variant: Path, cfg) -> dict[str, float]:
    """id → iu0_end of every row of the variant's clustered pool, from the cached pass (loss, content) and the
    tokenizer's count of the answer's end-of-turn tokens (no model run)."""
    from lead_ray.models.load import load_tokenizer
    from lead_ray.models.loss import SampleNLL, end_token_nll
    from lead_ray.models.template import encode_conversation

    scores = content_scores(variant, cfg)
    pool = pq.read_table(variant / "clustered" / "pool", columns=["id", "messages", "n_response_tokens"])
    if pool["id"] != scores["id"]:
        sys.exit(f"{variant}: the cached pass is for other rows than the clustered pool's")
    tok = load_tokenizer(str(variant / "models" / "base"))
    encoded = [encode_conversation(tok, m, cfg.model.max_length) for m in pool["messages"].to_pylist()]
    n = pool["n_response_tokens"].to_numpy(zero_copy_only=False)
    loss, content = (scores[c].to_numpy(zero_copy_only=False).astype(np.float64) for c in ("iu0_again", CONTENT))
    end = end_token_nll(encoded, SampleNLL(loss, n, content), tok.eos_token_id)
    return dict(zip(scores["id"].to_pylist(), end.tolist()))


def add_end_column_to_units(variant: Path, work: Path, cfg) -> None:
    """work/scored/units: the variant's scored units with iu0_end appended (NaN only for rows the pool left out
    as untrainable), for a clustering with cluster.end_nll_above. Made once; `work/scored` must not be a link."""
    out = work / "scored" / "units"
    done = work / "scored" / "END_DONE"
    if done.exists():
        return
    by_id = end_scores(variant, cfg)
    out.mkdir(parents=True, exist_ok=True)
    for unit in sorted((variant / "scored" / "units").glob("*.parquet")):
        table = pq.read_table(unit)
        ids, trainable = table["id"].to_pylist(), table["trainable"].to_pylist()
        if any(ok and i not in by_id for i, ok in zip(ids, trainable)):
            sys.exit(f"{unit}: a trainable row is not in the clustered pool (near-duplicates dropped?)")
        column = pa.array([by_id.get(i, float("nan")) for i in ids], pa.float32())
        pq.write_table(table.append_column(END, column), out / unit.name)
    done.write_text("")
    log(f"{work.relative_to(variant.parent)}: {END} added to the scored units")
