"""Planning the ingest (runs on the driver): list the input files, detect each one's format from
its head, and cut the input into chunks of about the target size. Only file heads are read here.
"""

from __future__ import annotations

import gzip
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import pyarrow.parquet as pq

from lead_ray.config import Config
from lead_ray.data.formats import detect_format

SUFFIXES = (".jsonl", ".ndjson", ".json", ".parquet")
HEAD_BYTES = 1 << 16  # a file's head: enough to tell a JSON array from JSONL
HEAD_MAX_BYTES = 8 << 20  # most read from one file to find its first records and detect its format


class IngestError(RuntimeError):
    """A bad input under --strict, or inputs that cannot be read at all."""


@dataclass
class Piece:
    """A contiguous part of one file: a byte range of a JSONL file, a whole JSON/gz file, or row groups."""

    file_index: int
    path: str
    source: str
    container: str  # jsonl | json | parquet
    fmt: str | None  # detected or forced input format; None: could not be detected
    start: int = 0  # JSONL byte range
    end: int = -1
    first_line: int = 1
    row_groups: list[int] = field(default_factory=list)
    size: int = 0


def list_input_files(inputs: list[str]) -> tuple[list[tuple[Path, str]], list[str]]:
    """(path, source name) for every readable input file, sorted; plus the files skipped in folders."""
    files, skipped = [], []
    for raw in inputs:
        root = Path(raw).resolve()  # tasks may run in another folder, or on another node of a shared FS
        if root.is_dir():
            for p in sorted(root.rglob("*")):
                if p.is_file() and _container(p):
                    files.append((p, f"{root.name}/{p.relative_to(root).as_posix()}"))
                elif p.is_file():
                    skipped.append(str(p))
        elif root.is_file():
            if not _container(root):
                raise IngestError(f"{root}: unsupported file type (expected {', '.join(SUFFIXES)}, optionally .gz)")
            files.append((root, root.name))
        else:
            raise IngestError(f"{root}: no such file or folder")
    seen, unique = set(), []
    for p, s in files:  # the same file named twice (a folder and a file inside it) is read once
        if p.resolve() not in seen:
            seen.add(p.resolve())
            unique.append((p, s))
    return unique, skipped


def _container(p: Path) -> str | None:
    name = p.name.lower().removesuffix(".gz")
    for suffix, kind in ((".jsonl", "jsonl"), (".ndjson", "jsonl"), (".json", "json"), (".parquet", "parquet")):
        if name.endswith(suffix):
            return None if kind == "parquet" and p.name.lower().endswith(".gz") else kind
    return None


def open_input(path: str):
    """A binary file handle, decompressing .gz transparently."""
    return gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb")


def _head_records(path: str, container: str) -> tuple[str, list]:
    """The container actually found ('.json' files may hold JSONL) and the first few records."""
    if container == "parquet":
        pf = pq.ParquetFile(path)
        first = next(pf.iter_batches(batch_size=8), None)
        return "parquet", first.to_pylist() if first is not None else []
    with open_input(path) as f:
        head = f.read(HEAD_BYTES)
        stripped = head.lstrip()
        if container == "json" and stripped.startswith(b"["):
            head += f.read(HEAD_MAX_BYTES)  # the first element may be long; it is all we parse
            try:  # first array element only; the rest of the file is not read here
                text = head.lstrip()[1:].decode("utf-8", "ignore").lstrip()
                return "json", [json.JSONDecoder().raw_decode(text)[0]]
            except ValueError:
                return "json", []
        f.seek(0)
        if container == "json":  # JSONL in a .json file, or one (pretty-printed) document?
            try:
                orjson.loads(f.readline(HEAD_MAX_BYTES))
            except orjson.JSONDecodeError:
                return "json", []
            f.seek(0)
        records, budget = [], HEAD_MAX_BYTES
        while len(records) < 8 and budget > 0:
            line = f.readline(budget)
            if not line:
                break
            budget -= len(line)
            try:
                records.append(orjson.loads(line))
            except orjson.JSONDecodeError:
                continue
    return "jsonl", records


def _detect(records: list, forced: str) -> str | None:
    """The forced format, or the most common one among the head records (ties: the earliest)."""
    if forced != "auto":
        return forced
    votes = Counter(f for f in map(detect_format, records) if f)
    return max(votes, key=lambda f: (votes[f], -[detect_format(r) for r in records].index(f))) if votes else None


def plan(cfg: Config, parallelism: int) -> tuple[list[list[Piece]], dict]:
    """Cut the inputs into chunks of pieces, each a parse task of about the target size."""
    ingest_cfg = cfg.ingest
    files, skipped = list_input_files(ingest_cfg.inputs)
    if not files:
        raise IngestError(f"no input files found in {', '.join(ingest_cfg.inputs)}")
    total = sum(p.stat().st_size for p, _ in files)
    # Enough chunks to keep every CPU busy, but no chunk over chunk_mb (bounded task memory).
    target = int(min(ingest_cfg.chunk_mb * 2**20, max(2**20, total / (4 * parallelism))))
    pieces, formats = [], {}
    for index, (path, source) in enumerate(files):
        container, head = _head_records(str(path), _container(path))
        fmt = _detect(head, ingest_cfg.format)
        formats[source] = fmt or "undetected"
        size = path.stat().st_size
        base = Piece(index, str(path), source, container, fmt, size=size)
        if container == "parquet":
            groups = pq.ParquetFile(path).metadata.num_row_groups
            pieces += [
                Piece(index, str(path), source, container, fmt, row_groups=[g], size=size // max(groups, 1))
                for g in range(groups)
            ]
        elif container == "jsonl" and not str(path).endswith(".gz") and size > target:
            pieces += _split_jsonl(base, target)
        else:
            pieces.append(base)
    chunks, current, current_size = [], [], 0
    for piece in pieces:  # small pieces share a chunk, so 10k tiny files are not 10k tasks
        if current and current_size + piece.size > target:
            chunks.append(current)
            current, current_size = [], 0
        current.append(piece)
        current_size += piece.size
    if current:
        chunks.append(current)
    info = {
        "files": len(files),
        "input_bytes": total,
        "chunks": len(chunks),
        "skipped_files": skipped,
        "formats": formats,
    }
    return chunks, info


def _split_jsonl(base: Piece, target: int) -> list[Piece]:
    """Byte ranges that end on line breaks, each with the number of its first line."""
    out, start, line = [], 0, 1
    with open(base.path, "rb") as f:
        while start < base.size:
            f.seek(start)
            end, lines = start, 0
            while end < base.size and end - start < target:  # count lines in 8 MiB blocks
                block = f.read(min(8 << 20, target - (end - start)) or 1)
                end += len(block)
                lines += block.count(b"\n")
            tail = f.readline()  # finish the current line
            end += len(tail)
            lines += tail.count(b"\n")
            out.append(
                Piece(
                    base.file_index,
                    base.path,
                    base.source,
                    "jsonl",
                    base.fmt,
                    start=start,
                    end=end,
                    first_line=line,
                    size=end - start,
                )
            )
            start, line = end, line + lines
    return out
