"""The quality benchmark's slice of the shared pool: rows spread over its source groups."""

from __future__ import annotations

import numpy as np
import pyarrow as pa


def source_groups(sources: list[str]) -> np.ndarray:
    """Each row's source group: its file, or its folder when that holds many files (T0's 283 templates)."""
    from lead_ray.data.sources import collapsed_folders, source_group

    collapsed = collapsed_folders(sources)
    return np.array([source_group(s, collapsed) for s in sources])


def stratified_slice(table: pa.Table, rows: int) -> pa.Table:
    """`rows` rows spread over the source groups (a folder of many files is one group, e.g. T0): an equal
    share each, a small group giving what it has and the rest going to the others. Within a group, the
    first rows in id order (ids are content hashes: a uniform, reproducible sample)."""
    table = table.sort_by("id")
    groups = source_groups(table["source"].to_pylist())
    names, sizes = np.unique(groups, return_counts=True)
    take = np.zeros(len(names), int)
    while take.sum() < min(rows, len(groups)):
        open_ = take < sizes
        share = max(1, (rows - take.sum()) // open_.sum())
        take = np.where(open_, np.minimum(sizes, take + share), take)
    keep = np.concatenate([np.flatnonzero(groups == g)[:k] for g, k in zip(names, take)])
    return table.take(pa.array(np.sort(keep)))
