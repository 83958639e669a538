"""`lead-ray export`: a run's selected subset in the formats the next tool reads.

selected.jsonl     every selected sample as its original input record (the JSONL line as it was, a
                   JSON array's element, or a Parquet row), in selection order
selected.parquet   id, source, messages, final U, IU₀, use count, rounds picked, clusters
"""

from __future__ import annotations

from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from lead_ray.files import atomic_path, require, write_parquet_atomic


def write_source_format(run_dir: Path) -> Path:
    """RUN_DIR/selected.jsonl from RUN_DIR/selected.parquet: what `lead-ray run` leaves beside it."""
    sel = pq.read_table(
        require(Path(run_dir) / "selected.parquet", None, "selected subset", "run"), columns=["file", "line"]
    )
    export_source_format(sel, Path(run_dir) / "selected.jsonl")
    return Path(run_dir) / "selected.jsonl"


def export_run(run_dir: Path, out: Path, min_use: int = 1) -> int:
    """The selected subset of a finished run, in its input's own format and as Parquet, into `out`."""
    sel = pq.read_table(require(Path(run_dir) / "selected.parquet", None, "selected subset", "run"))
    sel = sel.filter(pc.greater_equal(sel["use_count"], min_use))
    out.mkdir(parents=True, exist_ok=True)
    write_parquet_atomic(sel, out / "selected.parquet")
    export_source_format(sel, out / "selected.jsonl")
    return sel.num_rows


def export_source_format(sel: pa.Table, dest: Path) -> None:
    """Each selected sample as its original input record (JSONL line, JSON-array element or Parquet row)."""
    wanted: dict[str, set[int]] = {}
    for f, line in zip(sel["file"].to_pylist(), sel["line"].to_pylist()):
        wanted.setdefault(f, set()).add(line)
    records: dict[tuple[str, int], bytes] = {}
    for f, lines in wanted.items():
        records.update(_original_records(f, lines))
    with atomic_path(dest) as tmp, open(tmp, "wb") as out:
        for f, line in zip(sel["file"].to_pylist(), sel["line"].to_pylist()):
            out.write(records[(f, line)] + b"\n")


def _original_records(path: str, lines: set[int]) -> dict[tuple[str, int], bytes]:
    from lead_ray.data.plan import open_input

    if path.endswith(".parquet"):
        rows = pq.read_table(path).to_pylist()
        return {(path, i): orjson.dumps(rows[i - 1], default=str) for i in lines}
    with open_input(path) as f:
        data = f.read()
    if data.lstrip().startswith(b"["):  # a JSON array: line = 1-based element
        array = orjson.loads(data)
        return {(path, i): orjson.dumps(array[i - 1]) for i in lines}
    out = {}
    for i, raw in enumerate(data.split(b"\n"), start=1):  # JSONL: the line exactly as it was
        if i in lines:
            out[(path, i)] = raw.rstrip(b"\r")
    return out
