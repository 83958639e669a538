"""Files every stage writes and reads: written whole or not at all, and a stage's inputs checked.

Every output is written to a temporary name in its own folder, then renamed (an atomic rename on one
file system), so a reader, a rerun or a crash never sees half a file or half a folder.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq


@contextlib.contextmanager
def atomic_path(path: Path):
    """Yields a temporary path beside `path`; on success it replaces `path` (a file or a folder: a
    folder is complete before its name appears, though an old folder is removed just before)."""
    path = Path(path)
    tmp = path.with_name("." + path.name + ".tmp")
    _remove(tmp)  # left by a crash
    yield tmp
    if path.is_dir() and tmp.is_dir():
        shutil.rmtree(path)
    os.replace(tmp, path)


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def write_text_atomic(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_bytes_atomic(path: Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_parquet_atomic(table: pa.Table, path: Path, rows_per_group: int = 8192) -> None:
    """Small row groups let later stages read slices."""
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, row_group_size=rows_per_group)


def require(path: Path, pattern: str | None, what: str, stage: str) -> Path:
    """`path` (or, with `pattern`, a file matching it inside `path`) must exist; else an error saying which
    stage makes it: "no clustered pool at X: run `lead-ray cluster` first"."""
    path = Path(path)
    found = any(path.glob(pattern)) if pattern else path.exists()
    if not found:
        raise FileNotFoundError(f"no {what} at {path}: run `lead-ray {stage}` first")
    return path
