"""bench/quality/run.py's cache across machines: a variant's setup and finished runs packed into bench/cache/.

Two layers, so that a commit adds only what is new: `quality-<regime>-<variant>.tar.gz` (the setup and the runs
finished when it was packed, written by `--pack`) and `quality-<regime>-<variant>/<part>.tar.gz`, one small pack
per run finished after it (and one for the anchor's setup), written as soon as the run is evaluated. A fresh
checkout unpacks the first, then every part whose files it lacks.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def log(msg: str) -> None:
    print(f"[quality] {msg}", file=sys.stderr, flush=True)


CACHE = ROOT / "bench" / "cache"
# selection.utility=learnability (bench/quality/anchor.py): the anchor, how its model trained, its pool scores
ANCHOR_SETUP = ["anchor/pool", "models/anchor_stats.json", "scored/anchor_scores.parquet"]
# What a later session needs to go on without redoing setup (scoring is most of its time) or finished runs:
# the scored and clustered pool and each run's config, selection and per-item eval scores. Not the models:
# the base model is rebuilt from the GGUF file, and runs need no warm-up model.
PACKED = [
    "setup.json",
    "models/warmup_stats.json",
    "prepared",
    "scored",
    "clustered",
    "base/eval.json",
    "base/eval_items.json",
    "runs/*/config.yaml",
    "runs/*/run_stats.json",
    "runs/*/bench_seconds.json",
    "runs/*/eval.json",
    "runs/*/eval_items.json",
    "runs/*/selected.parquet",
    "runs/*/rounds.parquet",
    "runs/*/RELABELLED.txt",  # a run renamed after it ran, and why
    "runs/*/bench_environment.json",  # the library versions it trained under
    "clusterings/*/clustered",
    *ANCHOR_SETUP,
    # --fresh-eval: the reruns scored on unseen items, and the base model on them
    "base-fresh/eval.json",
    "base-fresh/eval_items.json",
    *(f"runs-fresh/*/{name}" for name in ("config.yaml", "run_stats.json", "bench_seconds.json", "eval.json")),
    *(f"runs-fresh/*/{name}" for name in ("eval_items.json", "selected.parquet", "rounds.parquet")),
    "runs-fresh/*/bench_environment.json",
    # MMLU choice_nll of runs evaluated before it existed (quality/mmlu_rescore.py): the re-scoring, not its models
    *(f"{folder}/mmlu_rescored.json" for folder in ("base", "base-fresh", "runs/*", "runs-fresh/*")),
    *(f"runs-mmlu/*/{name}" for name in ("config.yaml", "mmlu.json", "mmlu_items.json")),
    *(f"runs-mmlu/*/{name}" for name in ("mmlu-fresh.json", "mmlu-fresh_items.json")),
]


def _write(variant: Path, out: Path, patterns: list[str]) -> Path:
    import tarfile

    out.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(out, "w:gz") as tar:
        for pattern in patterns:
            for path in sorted(variant.glob(pattern)):
                tar.add(path, arcname=str(path.relative_to(variant)))
    log(f"packed {variant.name} into {out} ({out.stat().st_size / 2**10:.0f} KiB)")
    return out


def pack(variant: Path, out: Path) -> None:
    _write(variant, out, PACKED)


def pack_part(variant: Path, parts: Path, name: str, patterns: list[str]) -> Path:
    """Some of PACKED's files (one run's, or the anchor setup's) into parts/<name>.tar.gz: tens of KiB."""
    return _write(variant, parts / f"{name}.tar.gz", patterns)


def run_patterns(runs: str, run_name: str) -> list[str]:
    """The PACKED files of one finished run (runs: `runs` or `runs-fresh`)."""
    return [p.replace("*", run_name, 1) for p in PACKED if p.startswith(f"{runs}/*/")]


def unpack_parts(parts: Path, variant: Path, every: bool = False) -> None:
    """Every part pack whose files the variant lacks (a run finished after the main pack), or (every: right after
    the main pack was unpacked) all of them, as they are newer than it."""
    import tarfile

    for packed in sorted(parts.glob("*.tar.gz")):
        with tarfile.open(packed) as tar:
            if not every and all((variant / name).exists() for name in tar.getnames()):
                continue
            log(f"unpacking {packed.name} into {variant}")
            tar.extractall(variant, filter="data")


def unpack(packed: Path, variant: Path) -> None:
    import tarfile

    log(f"unpacking {packed} into {variant}: its setup and finished runs are reused")
    variant.mkdir(parents=True, exist_ok=True)
    with tarfile.open(packed) as tar:
        tar.extractall(variant, filter="data")
