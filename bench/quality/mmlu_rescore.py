"""MMLU `choice_nll` for the quality benchmark's runs evaluated before `lead-ray eval` wrote it.

    python bench/quality/mmlu_rescore.py --noisy --plant-seed 1 --runs base,lead+quantile-s42,lead+quantile-s43
    python bench/quality/mmlu_rescore.py --fresh-eval --runs base,lead+quantile-s43

`choice_nll` (the right letter's NLL among the four letters; bench/quality/mmlu_format.py) came after most runs were
stored. This scores a stored run's MMLU items again with its final model and writes them, with how the model was
had, beside its eval_items.json as mmlu_rescored.json, which the benchmark's statistics read for a run whose own
evaluation lacks the field. A packed cache keeps no models, so a run whose model is gone is trained again from its
config.yaml (the same seed, the same code) into <variant>/runs-mmlu/<run>; the new MMLU NLL must be within
REPRODUCE_TOLERANCE of the stored one in its mean, or nothing is written. A run in runs-fresh/ trains what its
namesake in runs/ trains (only the eval items differ), so the two share one model. `base` is the base model on
the folder's items.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench.quality.cache import log  # noqa: E402
from lead_ray.config import config_from_dict, load_config, to_dict  # noqa: E402
from lead_ray.presets import resolved_dict  # noqa: E402

RESCORED = "mmlu_rescored.json"
# the stored and the new MMLU NLL of a run's items may differ by bf16 noise (~0.06 nats per item when the evaluation
# batched its items otherwise, as it did before 2026-11-24), never in their mean: a changed model moves the mean
REPRODUCE_TOLERANCE = 0.02
# eval keys that choose which items are scored after training; the rest of a config decides the model
ITEMS_ONLY = ("sets", "set_sizes", "set_offsets", "generate", "generate_samples", "max_new_tokens")
BASES = {"runs": "base", "runs-fresh": "base-fresh"}


def training_settings(path: Path) -> dict:
    """A run's settings that decide its model, every switch resolved: two configs written by different lead-ray
    versions (a switch spelt `preset` in one and by its value in the other, a key one of them lacks at its
    default) compare equal when they train the same."""
    settings = resolved_dict(load_config(path))
    for key in ITEMS_ONLY:
        settings["eval"].pop(key, None)
    return settings


def model_of(run_dir: Path, scratch: Path) -> Path:
    """The run's final model: its own, or, where a packed cache dropped it, the same run trained again (once for
    a run and its runs-fresh namesake, which must train the same)."""
    from lead_ray.eval.evaluate import _final_model

    model = _final_model(run_dir)
    if model.exists():
        return model
    if (scratch / "run_stats.json").exists():
        if training_settings(scratch / "config.yaml") != training_settings(run_dir / "config.yaml"):
            raise SystemExit(f"{scratch}: trained with other settings than {run_dir}; delete it")
    else:
        from lead_ray.online.run import run

        shutil.rmtree(scratch, ignore_errors=True)
        t0 = time.perf_counter()
        run(load_config(run_dir / "config.yaml"), scratch)
        log(f"{run_dir.name}: trained again in {time.perf_counter() - t0:.0f} s")
    return _final_model(scratch)


def mmlu_items(variant: Path, items_of: Path, model, out: Path) -> dict:
    """The MMLU items of the run `items_of` scored by model() (called only when out's items are not cached)."""
    from lead_ray.eval.evaluate import evaluate

    items_file = out.with_name(out.stem + "_items.json")
    if not items_file.exists():
        settings = to_dict(load_config(items_of / "config.yaml"))
        only = settings["eval"]
        only["sets"] = ["mmlu"]  # the same MMLU items (sizes and offsets as the run's evaluation), no other set
        for key in ("set_sizes", "set_offsets"):
            only[key] = {k: v for k, v in only[key].items() if k == "mmlu"}
        evaluate(config_from_dict(settings, [f"work_dir={variant}"]), items_of, model_dir=model(), out=out)
    return json.loads(items_file.read_text())["mmlu"]


def reproduced(name: str, run_dir: Path, items: dict) -> dict:
    """How far the MMLU NLL scored here is from the one the benchmark stored for this run; stops if too far."""
    stored = np.asarray(json.loads((run_dir / "eval_items.json").read_text())["mmlu"]["nll"], np.float64)
    diff = np.asarray(items["nll"], np.float64) - stored
    if abs(diff.mean()) > REPRODUCE_TOLERANCE:
        raise SystemExit(f"{name}: not the benchmark's model (MMLU NLL {diff.mean():+.4f} from the stored mean)")
    return {"mean_nll_diff": float(diff.mean()), "max_abs_item_diff": float(np.abs(diff).max())}


def scratch_out(variant: Path, run_dir: Path) -> tuple[Path, Path]:
    """(the folder a run is trained again in, its MMLU scores' file): runs/ keeps mmlu.json, runs-fresh/ adds -fresh."""
    scratch = variant / "runs-mmlu" / run_dir.name
    return scratch, scratch / ("mmlu.json" if run_dir.parent.name == "runs" else "mmlu-fresh.json")


def already_scored(run_dir: Path, own_name: str) -> tuple[dict, dict] | None:
    """The MMLU items with choice_nll a run (or base) folder already has: its evaluation's, or its re-scoring's."""
    own = json.loads((run_dir / "eval_items.json").read_text())["mmlu"]
    if "choice_nll" in own:
        return own, {"model": own_name}
    if (run_dir / RESCORED).exists():
        stored = json.loads((run_dir / RESCORED).read_text())
        return stored.pop("mmlu"), stored
    return None


def run_mmlu(variant: Path, run_dir: Path) -> tuple[dict, dict]:
    """A stored run's MMLU items with choice_nll, and how they were had: its own evaluation where it wrote the field,
    else as this script scored them before (mmlu_rescored.json), else scored again with its model (its own, or
    trained again), checked against the stored NLL."""
    from lead_ray.eval.evaluate import _final_model

    if (had := already_scored(run_dir, "the run's own evaluation")) is not None:
        return had
    scratch, out = scratch_out(variant, run_dir)
    items = mmlu_items(variant, run_dir, lambda: model_of(run_dir, scratch), out)
    how = "the run's own" if _final_model(run_dir).exists() else "trained again"
    return items, {"model": how, **reproduced(run_dir.name, run_dir, items)}


def base_mmlu(variant: Path, base_dir: Path, any_run: Path) -> tuple[dict, dict]:
    """The base model's MMLU items (on any_run's items, which are the folder's), checked as a run's are."""
    from lead_ray.models.load import materialize_model

    if (had := already_scored(base_dir, "the base model's own evaluation")) is not None:
        return had
    cfg = load_config(any_run / "config.yaml")
    out = variant / "runs-mmlu" / base_dir.name / "mmlu.json"
    base = variant / "models" / "base"
    items = mmlu_items(variant, any_run, lambda: materialize_model(cfg.model, base, cfg.seed), out)
    return items, {"model": "the base model", **reproduced(base_dir.name, base_dir, items)}


def write_rescored(run_dir: Path, items: dict, provenance: dict) -> None:
    if "own evaluation" in provenance["model"]:
        return  # nothing to add
    fields = {k: items[k] for k in ("nll", "choice_nll", "correct")}
    (run_dir / RESCORED).write_text(json.dumps({"mmlu": fields, **provenance}) + "\n")
    log(f"{run_dir}: MMLU choice_nll {np.mean(fields['choice_nll']):.4f} ({provenance['model']})")


def rescored_choice_nll(run_dir: Path, n_items: int) -> list[float] | None:
    """The choice_nll this script wrote for a run (None if it wrote none), for as many items as the run scored."""
    path = run_dir / RESCORED
    if not path.exists():
        return None
    values = json.loads(path.read_text())["mmlu"]["choice_nll"]
    if len(values) != n_items:
        raise ValueError(f"{path}: {len(values)} MMLU items, the run's evaluation has {n_items}")
    return values


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--noisy", action="store_true")
    ap.add_argument("--plant-seed", type=int, default=0, metavar="S", help="with --noisy: the noisy-p<S> pool")
    ap.add_argument("--fresh-eval", action="store_true", help="the runs-fresh/ runs and base-fresh")
    ap.add_argument("--work", default=str(ROOT / "bench" / "work" / "quality-cpu"), help="the quality benchmark's")
    ap.add_argument("--runs", required=True, help="comma-separated run folders; `base` for the base model")
    args = ap.parse_args()
    pool = ("noisy" + (f"-p{args.plant_seed}" if args.plant_seed else "")) if args.noisy else "clean"
    variant = Path(args.work).resolve() / pool
    folder = "runs-fresh" if args.fresh_eval else "runs"
    names = args.runs.split(",")
    runs = [variant / folder / name for name in names if name != "base"]
    for run_dir in runs:
        if not (run_dir / "eval_items.json").exists():
            raise SystemExit(f"{run_dir}: no finished run")

    from lead_ray.config import RayConfig
    from lead_ray.runtime import init_ray

    init_ray(RayConfig())
    if "base" in names:
        any_run = runs[0] if runs else next((variant / folder).glob("*/config.yaml")).parent
        write_rescored(variant / BASES[folder], *base_mmlu(variant, variant / BASES[folder], any_run))
    for run_dir in runs:
        write_rescored(run_dir, *run_mmlu(variant, run_dir))


if __name__ == "__main__":
    main()
