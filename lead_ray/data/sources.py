"""Source groups: a row's input file, or its folder when that folder holds many files (T0's 283 templates are
one source of one kind). The report counts picks by them and `cluster.end_z_above` judges each group apart."""

from __future__ import annotations

MANY_FILES = 8  # a folder with more source files than this counts as one source (e.g. 283 T0 templates)


def collapsed_folders(sources) -> set[str]:
    per_folder: dict[str, set[str]] = {}
    for s in set(sources):
        per_folder.setdefault(s.rsplit("/", 1)[0] if "/" in s else "", set()).add(s)
    return {f for f, files in per_folder.items() if f and len(files) > MANY_FILES}


def source_group(source: str, collapsed: set[str]) -> str:
    folder = source.rsplit("/", 1)[0] if "/" in source else ""
    return folder + "/*" if folder in collapsed else source
