"""bench/quality/run.py's cache across machines: a variant's setup and finished runs packed into bench/cache/."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def log(msg: str) -> None:
    print(f"[quality] {msg}", file=sys.stderr, flush=True)


CACHE = ROOT / "bench" / "cache"
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
    # selection.utility=learnability (bench/quality/anchor.py): the anchor, how its model trained, its pool scores
    "anchor/pool",
    "models/anchor_stats.json",
    "scored/anchor_scores.parquet",
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


def pack(variant: Path, out: Path) -> None:
    import tarfile

    out.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(out, "w:gz") as tar:
        for pattern in PACKED:
            for path in sorted(variant.glob(pattern)):
                tar.add(path, arcname=str(path.relative_to(variant)))
    log(f"packed {variant} into {out} ({out.stat().st_size / 2**20:.1f} MiB)")


def unpack(packed: Path, variant: Path) -> None:
    import tarfile

    log(f"unpacking {packed} into {variant}: its setup and finished runs are reused")
    variant.mkdir(parents=True, exist_ok=True)
    with tarfile.open(packed) as tar:
        tar.extractall(variant, filter="data")
