"""`lead-ray prepare`: many instruction files in, one de-duplicated Parquet pool out.

    inputs ──plan.py (driver: list files, detect format from each file's head, cut chunks)──►
    chunks ──Ray Data stage 1: parse + normalise + validate, one task per chunk──►
           staging/b=<bucket>/c=<chunk>.parquet   (accepted rows, hash-bucketed by id)
           staging/rejects/c=<chunk>.jsonl        (every refused row, with file, line, field, reason)
    buckets ──Ray Data stage 2: exact de-duplication, one task per bucket──►
           pool/part-<bucket>-<k>.parquet, rejects.jsonl, prepare_stats.json

The driver never reads the corpus: it sees file heads, the per-chunk and per-bucket counters the
tasks return, and the (small) rejects. A bucket is the unit that must fit in one task's memory, so
the bucket count grows with the input size. Duplicates keep their first occurrence in input order
(files sorted by path, then line), so the pool is the same whatever the task scheduling.

Counting rule: `input_rows == accepted + rejected + duplicates` always. An input row is a non-blank
JSONL line, a JSON-array element or a Parquet row, except that a self-instruct task with n instances
counts as n rows; a JSON-array file that cannot be parsed at all counts as one rejected row.
"""

from __future__ import annotations

import json
import shutil
import time
from collections import Counter
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from lead_ray.config import Config, ConfigError
from lead_ray.data.formats import READERS, Reject, normalise, rows_in, sample_id
from lead_ray.data.plan import IngestError, Piece, open_input, plan  # noqa: F401 - IngestError is part of this module's API
from lead_ray.files import atomic_path, write_bytes_atomic, write_parquet_atomic
from lead_ray.stages import run_units

EXCERPT_CHARS = 200

MESSAGE_TYPE = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))
POOL_SCHEMA = pa.schema(
    [
        ("id", pa.string()),  # 32 hex chars: BLAKE2b-128 of the normalised conversation
        ("source", pa.string()),  # input dataset/file, relative to the input argument
        ("file", pa.string()),  # absolute path of the input file (for re-export in its own format)
        ("format", pa.string()),  # input format the row was read as
        ("messages", MESSAGE_TYPE),
        ("task", pa.string()),  # ground-truth label when the record carries one, else null
        ("line", pa.int64()),  # line (JSONL) or 1-based row (JSON array, Parquet) in source
        ("n_turns", pa.int32()),
        ("prompt_chars", pa.int32()),  # characters in system + user turns
        ("response_chars", pa.int32()),  # characters in assistant turns
    ]
)
_STAGING_SCHEMA = POOL_SCHEMA.append(pa.field("_order", pa.int64()))
_LINE_BITS = 40  # _order = file_index << 40 | line: input order as one sortable integer


# ----------------------------------------------------------------------------- stage 1: parse


def _iter_records(piece: Piece):
    """Yield (line_or_row, record_or_None, error_or_None, raw_excerpt) for one piece."""
    if piece.container == "parquet":
        pf = pq.ParquetFile(piece.path)
        row = 1 + sum(pf.metadata.row_group(g).num_rows for g in range(piece.row_groups[0]))
        for batch in pf.iter_batches(row_groups=piece.row_groups, batch_size=4096):
            for rec in batch.to_pylist():
                yield row, rec, None, None
                row += 1
        return
    with open_input(piece.path) as f:
        if piece.end >= 0:
            f.seek(piece.start)
            data = f.read(piece.end - piece.start)
        else:
            data = f.read()
    if piece.container == "json":
        try:
            array = orjson.loads(data)
        except orjson.JSONDecodeError as e:
            yield (
                1,
                None,
                Reject("malformed_json", None, f"file is not a valid JSON document: {e}"),
                data[:EXCERPT_CHARS],
            )
            return
        if not isinstance(array, list):
            yield (
                1,
                None,
                Reject("not_an_array", None, "a .json file must hold one array of records (or be JSONL)"),
                data[:EXCERPT_CHARS],
            )
            return
        for i, rec in enumerate(array, start=1):
            yield i, rec, None, None
        return
    for i, line in enumerate(data.split(b"\n"), start=piece.first_line):
        if not line.strip():
            continue
        try:
            yield i, orjson.loads(line), None, None
        except orjson.JSONDecodeError as e:
            try:
                line.decode("utf-8")
                err = Reject("malformed_json", None, f"not valid JSON: {e}")
            except UnicodeDecodeError as u:
                err = Reject("invalid_utf8", None, f"invalid UTF-8 at byte {u.start} of the line")
            yield i, None, err, line[:EXCERPT_CHARS]


def _excerpt(raw) -> str:
    if isinstance(raw, bytes):
        return raw.decode("utf-8", "replace")[:EXCERPT_CHARS]
    try:
        return orjson.dumps(raw, default=str).decode()[:EXCERPT_CHARS]
    except TypeError:
        return repr(raw)[:EXCERPT_CHARS]


def parse_chunk(pieces: list[Piece], chunk: int, staging: str, max_chars: int, buckets: int, strict: bool) -> dict:
    """Stage-1 task body: read, normalise and validate one chunk; write its accepted rows and rejects."""
    t0 = time.perf_counter()
    cols = {name: [] for name in _STAGING_SCHEMA.names}
    rejects, counts = [], {}
    trimmed = 0
    for piece in pieces:
        c = counts.setdefault(piece.source, Counter())
        for line, record, err, raw in _iter_records(piece):
            fmt = piece.fmt
            n_rows = rows_in(record, fmt) if fmt else 1
            c["input_rows"] += n_rows
            try:
                samples = _samples_of(record, err, fmt, max_chars)
            except Reject as r:
                if strict:  # stop this chunk here; the driver reports the earliest chunk's error
                    where = f"field '{r.field}'" if r.field else "record"
                    return {"chunk": chunk, "strict_error": f"{piece.path}:{line}: {where}: {r.message} [{r.reason}]"}
                c["rejected"] += n_rows
                c["reject:" + r.reason] += n_rows
                rejects.append(_reject_row(piece, line, r, n_rows, raw if raw is not None else record))
                continue
            task = record.get("task", record.get("category"))
            for messages, prompt_chars, response_chars, cut in samples:
                trimmed += cut
                cols["id"].append(sample_id(messages))
                cols["source"].append(piece.source)
                cols["file"].append(piece.path)
                cols["format"].append(fmt)
                cols["messages"].append(messages)
                cols["task"].append(task if isinstance(task, str) else None)
                cols["line"].append(line)
                cols["n_turns"].append(len(messages))
                cols["prompt_chars"].append(prompt_chars)
                cols["response_chars"].append(response_chars)
                cols["_order"].append(piece.file_index << _LINE_BITS | line)
            c["parsed"] += len(samples)
    _write_chunk(pa.table(cols, schema=_STAGING_SCHEMA), rejects, staging, chunk, buckets)
    return {
        "chunk": chunk,
        "counts": {s: dict(c) for s, c in counts.items()},
        "trimmed_turns": trimmed,
        "task_seconds": time.perf_counter() - t0,
    }


def _samples_of(record, err: Reject | None, fmt: str | None, max_chars: int) -> list:
    """The normalised samples of one parsed record; Reject when it cannot give any."""
    if err is not None:
        raise err
    if not isinstance(record, dict):
        raise Reject("not_an_object", None, f"a record must be a JSON object, got {type(record).__name__}")
    if fmt is None:
        raise Reject(
            "unknown_format", None, f"cannot tell the format from keys {sorted(record)[:8]}; set ingest.format"
        )
    return [normalise(conv, max_chars) for conv in READERS[fmt](record)]


def _reject_row(piece: Piece, line: int, r: Reject, n_rows: int, raw) -> dict:
    """One line of rejects.jsonl: where, which field, why, and an excerpt of the input."""
    return {
        "file": piece.path,
        "source": piece.source,
        "line": line,
        "field": r.field,
        "reason": r.reason,
        "message": r.message,
        "rows": n_rows,
        "excerpt": _excerpt(raw),
    }


def _write_chunk(table: pa.Table, rejects: list[dict], staging: str, chunk: int, buckets: int) -> None:
    """A chunk's accepted rows, split by id bucket (stage 2 de-duplicates one bucket at a time); its rejects."""
    if table.num_rows:
        bucket_of = np.array([int(i[:8], 16) % buckets for i in table["id"].to_pylist()], dtype=np.int64)
        for b in np.unique(bucket_of):
            folder = Path(staging, f"b={b:05d}")
            folder.mkdir(parents=True, exist_ok=True)
            write_parquet_atomic(table.filter(pa.array(bucket_of == b)), folder / f"c={chunk:06d}.parquet")
    if rejects:
        folder = Path(staging, "rejects")
        folder.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(folder / f"c={chunk:06d}.jsonl", b"".join(orjson.dumps(r) + b"\n" for r in rejects))


# ----------------------------------------------------------------------------- stage 2: dedup


def dedup_bucket(bucket: int, staging: str, pool: str, rows_per_file: int) -> dict:
    """Stage-2 task body: keep the first occurrence (input order) of every id in one bucket."""
    folder = Path(staging, f"b={bucket:05d}")
    table = pa.concat_tables([pq.read_table(p) for p in sorted(folder.glob("c=*.parquet"))])
    table = table.sort_by([("id", "ascending"), ("_order", "ascending")])
    ids = table["id"].combine_chunks()
    first = pc.not_equal(ids.slice(1), ids.slice(0, len(ids) - 1)) if len(ids) > 1 else pa.array([], pa.bool_())
    keep = pa.concat_arrays([pa.array([True]), first.fill_null(True)]) if len(ids) else pa.array([], pa.bool_())
    dropped = table.filter(pc.invert(keep))
    kept = table.filter(keep).sort_by("_order").drop_columns(["_order"])
    for old in Path(pool).glob(f"part-{bucket:05d}-*.parquet"):  # a rerun replaces, never appends
        old.unlink()
    for k, start in enumerate(range(0, max(kept.num_rows, 1), rows_per_file)):
        if kept.num_rows:
            write_parquet_atomic(kept.slice(start, rows_per_file), Path(pool, f"part-{bucket:05d}-{k:03d}.parquet"))
    dups = Counter(dropped["source"].to_pylist())
    return {"bucket": bucket, "kept": kept.num_rows, "duplicates": dict(dups)}


# ----------------------------------------------------------------------------- the pipeline


def _pieces_from(dicts: list[dict]) -> list[Piece]:
    return [Piece(**d) for d in dicts]


def _parse_task(pieces: list[dict], chunk: int, **kw) -> dict:
    return parse_chunk(_pieces_from(pieces), chunk, **kw)


def prepare(cfg: Config, run_stage=None) -> dict:
    """Run the ingest pipeline on Ray; return the stats it also writes to prepare_stats.json.

    `run_stage(items, fn, fn_kwargs, name)` runs the stage tasks; the default is a Ray Data job.
    Tests pass an in-process runner to fuzz the same driver logic many times quickly.
    """
    import ray

    run_stage = run_stage or run_units
    ingest_cfg = cfg.ingest
    if not ingest_cfg.inputs:
        raise ConfigError("ingest.inputs is empty: give input files or folders")
    t0 = time.perf_counter()
    out = cfg.stage_dir("prepared")
    staging, pool = out / "_staging", out / "pool"
    shutil.rmtree(staging, ignore_errors=True)
    pool.mkdir(parents=True, exist_ok=True)
    parallelism = max(1, int(ray.cluster_resources().get("CPU", 1))) if ray.is_initialized() else 1
    chunks, info = plan(cfg, parallelism)
    buckets = ingest_cfg.dedup_buckets or max(1, -(-info["input_bytes"] // (512 << 20)))
    for old in pool.glob("part-*.parquet"):
        old.unlink()

    parsed = _parse_stage(run_stage, chunks, staging, buckets, ingest_cfg)
    t_parse = time.perf_counter()
    deduped = _dedup_stage(run_stage, staging, pool, ingest_cfg.rows_per_file)
    stats = _merge_stats(parsed, deduped)
    stats["task_seconds"] = {"parse": round(sum(r["task_seconds"] for r in parsed), 3)}
    _merge_rejects(staging, out / "rejects.jsonl")
    shutil.rmtree(staging, ignore_errors=True)
    stats.update(
        info,
        dedup_buckets=buckets,
        pool=str(pool),
        rejects=str(out / "rejects.jsonl"),
        seconds={"parse": round(t_parse - t0, 3), "total": round(time.perf_counter() - t0, 3)},
    )
    if stats["input_rows"] != stats["accepted"] + stats["rejected"] + stats["duplicates"]:
        raise IngestError(f"internal error: counts do not add up: {stats}")  # never expected; checked anyway
    (out / "prepare_stats.json").write_text(json.dumps(stats, indent=2, sort_keys=True) + "\n")
    return stats


def _parse_stage(run_stage, chunks: list, staging: Path, buckets: int, ingest_cfg) -> list[dict]:
    """Stage 1 over every chunk; the first strict-mode error (in chunk order) is raised."""
    items = [{"pieces": [vars(p) for p in c], "chunk": i} for i, c in enumerate(chunks)]
    kw = {
        "staging": str(staging),
        "max_chars": ingest_cfg.max_sample_chars,
        "buckets": buckets,
        "strict": ingest_cfg.strict,
    }
    parsed = sorted(run_stage(items, _parse_task, kw, "ParseChunks"), key=lambda r: r["chunk"])
    errors = [r["strict_error"] for r in parsed if "strict_error" in r]
    if errors:
        shutil.rmtree(staging, ignore_errors=True)
        raise IngestError(errors[0])
    return parsed


def _dedup_stage(run_stage, staging: Path, pool: Path, rows_per_file: int) -> list[dict]:
    """Stage 2 over every id bucket stage 1 wrote to."""
    present = sorted(int(p.name[2:]) for p in staging.glob("b=*"))
    if not present:
        return []
    kw = {"staging": str(staging), "pool": str(pool), "rows_per_file": rows_per_file}
    return run_stage([{"bucket": b} for b in present], dedup_bucket, kw, "DedupBuckets")


def _merge_stats(parsed: list[dict], deduped: list[dict]) -> dict:
    by_source: dict[str, Counter] = {}
    for r in parsed:
        for source, c in r["counts"].items():
            by_source.setdefault(source, Counter()).update(c)
    for r in deduped:
        for source, n in r["duplicates"].items():
            by_source[source]["duplicates"] += n
    reasons = Counter()
    per_source = {}
    for source, c in sorted(by_source.items()):
        c["accepted"] = c["parsed"] - c["duplicates"]
        reasons.update({k.split(":", 1)[1]: v for k, v in c.items() if k.startswith("reject:")})
        per_source[source] = {k: c[k] for k in ("input_rows", "accepted", "rejected", "duplicates")}
    totals = {k: sum(s[k] for s in per_source.values()) for k in ("input_rows", "accepted", "rejected", "duplicates")}
    assert totals["accepted"] == sum(r["kept"] for r in deduped)
    return {
        **totals,
        "reject_reasons": dict(sorted(reasons.items())),
        "by_source": per_source,
        "trimmed_turns": sum(r["trimmed_turns"] for r in parsed),
    }


def _merge_rejects(staging: Path, dest: Path) -> None:
    """Concatenate the per-chunk rejects in chunk order (so the file is the same on every run)."""
    with atomic_path(dest) as tmp, open(tmp, "wb") as out:
        for part in sorted((staging / "rejects").glob("c=*.jsonl")):
            with open(part, "rb") as f:
                shutil.copyfileobj(f, out)
