"""Is a method's MMLU NLL on the quality benchmark knowledge, or answer format?

    python bench/quality/mmlu_format.py --noisy  # the noisy pool's seed-42 models → results/mmlu_format_noisy.json
    python bench/quality/mmlu_format.py          # the clean pool's                → results/mmlu_format.json

The benchmark's MMLU NLL is −log p(right letter) right after the prompt. It splits exactly into two parts:

    nll = choice_nll + letter_mass
    choice_nll  = −log p(right letter) / Σ p(letter): the right letter among the four (log 4 at chance)
    letter_mass = −log Σ p(letter): how little the model expects a bare letter at all (format)

A model can lower `nll` by learning to start its answer with a letter and nothing else, without knowing any
more. This script re-scores MMLU (the benchmark's 285 items) with each finished run's final model and reports
the three parts, per model and paired over items against the default (`lead+quantile`) and `random` of the
same seed. The runs' models live in their ray_train folders; a packed cache keeps none, so a run whose model is
gone is trained again from its config.yaml into <variant>/runs-mmlu/<run> (same seed, the same code) and must
reproduce the stored MMLU NLL of its items (mean and largest per-item difference reported; a mean over 0.02 nats
apart stops the script). The re-scoring is mmlu_rescore.py's, whose mmlu_rescored.json beside a run (packed
with the cache) spares a later report the training.
One seed: the intervals cover eval-item noise only.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench.quality.cache import log  # noqa: E402
from bench.quality.mmlu_rescore import base_mmlu, run_mmlu  # noqa: E402

RUNS = {
    "noisy": [
        "lead+quantile-s42",
        "random-s42",
        "lead+quantile+end-gate-s42",
        "lead+quantile+skip-end-s42",
        "lead+quantile+drop+skip-end-s42",
        "lead+quantile+drop+saturating-s42",
        "ppl-s42",
        "ifd-s42",
        "full-s42",
    ],
    "clean": ["lead+quantile-s42", "random-s42"],  # the default's lead over random (the rest: --runs)
}
REFERENCES = ("lead+quantile-s42", "random-s42")
PARTS = ("nll", "choice_nll", "letter_mass")


def parts(items: dict) -> dict[str, np.ndarray]:
    nll, choice = np.asarray(items["nll"], np.float64), np.asarray(items["choice_nll"], np.float64)
    return {"nll": nll, "choice_nll": choice, "letter_mass": nll - choice, "correct": np.asarray(items["correct"])}


def score_runs(variant: Path, names: list[str]) -> tuple[dict, dict]:
    """Per run: its MMLU parts per item, and how they were had (bench/quality/mmlu_rescore.py: the run's own evaluation,
    its earlier re-scoring, its own model, or the run trained again)."""
    scores, provenance = {}, {}
    for name in names:
        run_dir = variant / "runs" / name
        if not (run_dir / "eval_items.json").exists():
            log(f"{name}: no finished run, left out")
            continue
        items, provenance[name] = run_mmlu(variant, run_dir)
        scores[name] = parts(items)
    return scores, provenance


def summary(scores: dict, provenance: dict) -> dict:
    from lead_ray.eval.stats import mean_ci, paired_diff

    methods = {
        name: {
            **{part: mean_ci(values[part]) for part in PARTS},
            "accuracy": float(values["correct"].mean()),
            **provenance[name],
        }
        for name, values in scores.items()
    }
    paired = {}
    for ref in (r for r in REFERENCES if r in scores):
        for name, values in scores.items():
            if name != ref and f"{ref}_vs_{name}" not in paired:
                paired[f"{name}_vs_{ref}"] = {
                    part: paired_diff(values[part], scores[ref][part], False, names=(name, ref)) for part in PARTS
                }
    return {"methods": methods, "paired": paired}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--noisy", action="store_true", help="the noisy pool (seed-0 plant)")
    ap.add_argument("--work", default=str(ROOT / "bench" / "work" / "quality-cpu"), help="the quality benchmark's")
    ap.add_argument("--runs", help="comma-separated run folders (default: the pool's list above)")
    args = ap.parse_args()
    pool = "noisy" if args.noisy else "clean"
    variant = Path(args.work).resolve() / pool
    names = args.runs.split(",") if args.runs else RUNS[pool]

    from lead_ray.config import RayConfig
    from lead_ray.runtime import init_ray

    init_ray(RayConfig())
    t0 = time.perf_counter()
    scores, provenance = score_runs(variant, names)
    if (variant / "base" / "eval_items.json").exists():
        items, how = base_mmlu(variant, variant / "base", variant / "runs" / names[0])
        scores, provenance = {"base": parts(items), **scores}, {"base": how, **provenance}
    result = {"pool": pool, **summary(scores, provenance), "seconds": round(time.perf_counter() - t0, 1)}
    out = ROOT / "bench" / "results" / f"mmlu_format{'_noisy' if args.noisy else ''}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    log(f"wrote {out}")


if __name__ == "__main__":
    main()
