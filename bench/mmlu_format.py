"""Is a method's MMLU NLL on the quality benchmark knowledge, or answer format?

    python bench/mmlu_format.py --noisy     # the noisy pool's seed-42 models → bench/results/mmlu_format_noisy.json
    python bench/mmlu_format.py             # the clean pool's                → bench/results/mmlu_format.json

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
apart stops the script).
One seed: the intervals cover eval-item noise only.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.quality_cache import log  # noqa: E402
from lead_ray.config import config_from_dict, load_config, to_dict  # noqa: E402

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
# the stored and the new MMLU NLL of a run's items may differ by bf16 noise (~0.06 nats per item when the evaluation
# batched its items otherwise, as it did before 2026-11-24), never in their mean: a changed model moves the mean
REPRODUCE_TOLERANCE = 0.02
PARTS = ("nll", "choice_nll", "letter_mass")


def model_of(run_dir: Path, scratch: Path) -> Path:
    """The run's final model: its own, or, where a packed cache dropped it, the same run trained again."""
    from lead_ray.eval.evaluate import _final_model

    model = _final_model(run_dir)
    if model.exists():
        return model
    if not (scratch / "run_stats.json").exists():
        from lead_ray.online.run import run

        shutil.rmtree(scratch, ignore_errors=True)
        t0 = time.perf_counter()
        run(load_config(run_dir / "config.yaml"), scratch)
        log(f"{run_dir.name}: trained again in {time.perf_counter() - t0:.0f} s")
    return _final_model(scratch)


def mmlu_items(variant: Path, run_dir: Path, model: Path, out: Path) -> dict:
    """The run's MMLU items scored by `model` (cached in out): nll, choice_nll, correct per item."""
    from lead_ray.eval.evaluate import evaluate

    items_file = out.with_name(out.stem + "_items.json")
    if not items_file.exists():
        settings = to_dict(load_config(run_dir / "config.yaml"))
        only = settings["eval"]
        only["sets"] = ["mmlu"]  # the same MMLU items (sizes and offsets as the run's evaluation), no other set
        for key in ("set_sizes", "set_offsets"):
            only[key] = {k: v for k, v in only[key].items() if k == "mmlu"}
        evaluate(config_from_dict(settings, [f"work_dir={variant}"]), run_dir, model_dir=model, out=out)
    return json.loads(items_file.read_text())["mmlu"]


def parts(items: dict) -> dict[str, np.ndarray]:
    nll, choice = np.asarray(items["nll"], np.float64), np.asarray(items["choice_nll"], np.float64)
    return {"nll": nll, "choice_nll": choice, "letter_mass": nll - choice, "correct": np.asarray(items["correct"])}


def score_runs(variant: Path, names: list[str]) -> tuple[dict, dict]:
    """Per run: its MMLU parts per item, and how it was had (own model, or trained again and how exactly)."""
    scores, provenance = {}, {}
    for name in names:
        run_dir, scratch = variant / "runs" / name, variant / "runs-mmlu" / name
        if not (run_dir / "eval_items.json").exists():
            log(f"{name}: no finished run, left out")
            continue
        model = model_of(run_dir, scratch)
        retrained = scratch in model.parents
        items = mmlu_items(variant, run_dir, model, scratch / "mmlu.json")
        scores[name] = parts(items)
        how = "trained again" if retrained else "the run's own"
        provenance[name] = {"model": how, **reproduced(name, run_dir, items)}
    return scores, provenance


def reproduced(name: str, run_dir: Path, items: dict) -> dict:
    """How far the MMLU NLL scored here is from the one the benchmark stored for this run; stops if too far."""
    stored = np.asarray(json.loads((run_dir / "eval_items.json").read_text())["mmlu"]["nll"], np.float64)
    diff = np.asarray(items["nll"], np.float64) - stored
    if abs(diff.mean()) > REPRODUCE_TOLERANCE:
        raise SystemExit(f"{name}: not the benchmark's model (MMLU NLL {diff.mean():+.4f} from the stored mean)")
    return {"mean_nll_diff": float(diff.mean()), "max_abs_item_diff": float(np.abs(diff).max())}


def base_scores(variant: Path, any_run: Path) -> tuple[dict, dict] | None:
    """The base model's MMLU parts (it must reproduce the benchmark's base evaluation, as the runs must)."""
    from lead_ray.models.load import materialize_model

    stored = variant / "base" / "eval_items.json"
    if not stored.exists():
        return None
    cfg = load_config(any_run / "config.yaml")
    model = materialize_model(cfg.model, variant / "models" / "base", cfg.seed)
    items = mmlu_items(variant, any_run, model, variant / "runs-mmlu" / "base" / "mmlu.json")
    return parts(items), {"model": "the base model", **reproduced("base", stored.parent, items)}


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
    base = base_scores(variant, variant / "runs" / names[0])
    if base is not None:
        scores, provenance = {"base": base[0], **scores}, {"base": base[1], **provenance}
    result = {"pool": pool, **summary(scores, provenance), "seconds": round(time.perf_counter() - t0, 1)}
    out = ROOT / "bench" / "results" / f"mmlu_format{'_noisy' if args.noisy else ''}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    log(f"wrote {out}")


if __name__ == "__main__":
    main()
