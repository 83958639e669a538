"""Selection benchmark: LEAD next to every baseline and ablation, same pool, model, trainer and budgets.

    python bench/micro/selection.py [--rows 4000] [--seeds 42,43,44] [--budgets 0.025,0.05] [--eval-samples 200]

1. Setup (once, reused by later invocations): `lead-ray prepare` over all of ../shared/data/pool
   (without pool/noncommercial/), a slice of --rows samples drawn by id hash, then warmup, score and
   cluster with configs/demo.yaml's tiny preset (a 2-layer Llama, byte tokenizer, 512 tokens).
   A second clustering of the same scores with task groups = source label, for that ablation.
2. Every method at every budget and seed through `lead-ray run` (one Ray session, one TorchTrainer
   per run), then `lead-ray eval` of the final model on the held-out split, GSM8K test,
   self-instruct user-oriented tasks (response NLL) and MMLU test (answer-letter accuracy).
   Ablations (at the larger budget): no smoothing (b = 0), no ΔL̂′, no IDU (both: U = the last loss),
   no bandit (uniform arm choice), source-label task groups. `full` trains the whole slice once.
3. One table, the ratios computed from it, and bench/results/selection.json (last line printed).

The same script runs a real model: `--config configs/smollm2.yaml` (SmolLM2-135M-Instruct, LoRA) with a
small --rows, one budget and seed, `--ablations ''` and `--result selection_smollm2`.

Timings come from one run on one machine; the other runs' numbers are side by side in that run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared"

from lead_ray.config import load_config, to_dict  # noqa: E402

ABLATIONS = {  # name → config overrides (applied to LEAD)
    "lead-no-smoothing": ["selection.smoothing_b=0"],
    "lead-no-delta": ["selection.use_delta=false"],
    "lead-no-idu": ["selection.smoothing_b=0", "selection.use_delta=false"],
    "lead-no-bandit": ["selection.arm_choice=uniform"],
    "lead-source-groups": [],  # the same run on the source-label clustering
}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def base_overrides(work: Path, args) -> list[str]:
    return (
        [
            f"work_dir={work}",
            f"eval.data_dir={SHARED / 'data' / 'eval'}",
            f"eval.max_samples={args.eval_samples}",
            "train.checkpoint_every=100",
            f"selection.max_rounds={args.max_rounds}",
            f"selection.rho={args.rho}",
        ]
        + (["eval.generate=false"] if args.config is None else [])
        + list(args.set)
    )


def setup(args, work: Path) -> None:
    from lead_ray.data.ingest import prepare
    from lead_ray.offline.cluster import cluster
    from lead_ray.offline.score import score
    from lead_ray.offline.warmup import warmup

    demo = Path(args.config) if args.config else ROOT / "configs" / "demo.yaml"
    main, source = work / "main", work / "source"
    # What the setup stages read; a later invocation that changes any of it must not reuse this setup
    # (selection, train and eval settings only matter to the runs, which check their own config.yaml).
    d = to_dict(load_config(demo, base_overrides(main, args)))
    setup_key = {"rows": args.rows, **{k: d[k] for k in ("seed", "ingest", "model", "warmup", "score", "cluster")}}
    recorded = work / "setup.json"
    old = json.loads(recorded.read_text()) if recorded.exists() else setup_key
    if old != setup_key:
        raise SystemExit(
            f"{work} was set up with other settings ({', '.join(k for k in setup_key if old.get(k) != setup_key[k])}"
            f" differ; see {recorded}): pass another --work"
        )
    if (main / "clustered" / "clusters.json").exists() and not recorded.exists():
        log(f"setup: {work} has no setup.json (set up before it was recorded); reused as it is")
    if not (main / "clustered" / "clusters.json").exists():
        full = work / "full"
        if not (full / "prepared" / "prepare_stats.json").exists():
            inputs = [
                str(p) for p in sorted((SHARED / "data" / "pool").iterdir()) if p.is_dir() and p.name != "noncommercial"
            ]
            cfg = load_config(demo, base_overrides(full, args) + ["ingest.inputs=" + json.dumps(inputs)])
            prepare(cfg)
        # ids are BLAKE2b digests: the first --rows in id order are a uniform, reproducible sample
        sliced = pq.read_table(full / "prepared" / "pool").sort_by("id").slice(0, args.rows)
        (main / "prepared" / "pool").mkdir(parents=True, exist_ok=True)
        pq.write_table(sliced, main / "prepared" / "pool" / "part-0.parquet")
        cfg = load_config(demo, base_overrides(main, args))
        for stage in (warmup, score, cluster):
            log(f"setup: {stage.__name__}")
            stage(cfg)
        recorded.write_text(json.dumps(setup_key, indent=1) + "\n")
    if "lead-source-groups" in args.ablations.split(",") and not (source / "clustered" / "clusters.json").exists():
        source.mkdir(parents=True, exist_ok=True)
        for d in ("prepared", "models", "scored"):
            if not (source / d).exists():
                os.symlink(main / d, source / d)
        cluster(load_config(demo, base_overrides(source, args) + ["cluster.task_groups=source"]))


def one_run(args, work: Path, name: str, method: str, budget: float, seed: int, extra: list[str]) -> dict:
    from lead_ray.eval.evaluate import evaluate
    from lead_ray.online.run import run

    demo = Path(args.config) if args.config else ROOT / "configs" / "demo.yaml"
    pipeline = work / ("source" if name == "lead-source-groups" else "main")
    run_dir = work / "runs" / f"{name}-b{budget}-s{seed}"
    done = run_dir / "bench_row.json"
    cfg = load_config(
        demo,
        base_overrides(pipeline, args)
        + [f"seed={seed}", f"selection.method={method}", f"selection.budget_fraction={budget}"]
        + extra,
    )
    if done.exists() and not args.rerun:  # a finished run is reused only if it ran with this very config
        saved = run_dir / "config.yaml"
        if not saved.exists():
            log(f"{run_dir.name}: no config.yaml (run before runs recorded their config); reused as it is")
        else:
            before, now = to_dict(load_config(saved)), to_dict(cfg)
            changed = [k for k in now if before[k] != now[k]]
            if changed:
                log(f"{run_dir.name}: ran with other settings ({', '.join(changed)}); running it again")
                done.unlink()
    if not (done.exists() and not args.rerun):
        shutil.rmtree(run_dir, ignore_errors=True)
        log(f"run {name} budget {budget} seed {seed}")
        run(cfg, run_dir)
        evaluate(cfg, run_dir)
        done.write_text("{}\n")  # the marker; the row is rebuilt from run_stats.json and eval.json
    stats = json.loads((run_dir / "run_stats.json").read_text())
    row = {
        "method": name,
        "budget": budget,
        "seed": seed,
        "wall_s": stats["seconds"],
        "selection_s": stats["selection_seconds"],
        "training_s": stats["training_seconds"],
        "loop_s": round(stats["selection_seconds"] + stats["training_seconds"], 3),
        "rounds": stats["rounds"],
        "unique": stats["unique_selected"],
        "samples_trained": stats["samples_trained"],
        "pool_forward_samples": stats["pool_forward_samples"],
        "pool": stats["pool"],
    }
    return {**row, **eval_columns(json.loads((run_dir / "eval.json").read_text()))}


def eval_columns(ev: dict) -> dict:
    row = {"eval_s": ev["seconds"]}
    for set_name, m in ev["sets"].items():
        row[f"nll_{set_name}"] = m["nll"]
        if "accuracy" in m:
            row["mmlu_acc"] = m["accuracy"]
        if "exact_match" in m:
            row[f"em_{set_name}"] = m["exact_match"]
    return row


def base_row(args, work: Path) -> dict:
    """The base model before any online training (tiny: its random initialisation), as a reference row."""
    from lead_ray.eval.evaluate import evaluate
    from lead_ray.models.load import materialize_model

    demo = Path(args.config) if args.config else ROOT / "configs" / "demo.yaml"
    cfg = load_config(demo, base_overrides(work / "main", args))
    out = work / "runs" / "base" / "eval.json"
    key, recorded = {k: to_dict(cfg)[k] for k in ("seed", "model", "eval")}, out.parent / "eval_config.json"
    if out.exists() and (not recorded.exists() or json.loads(recorded.read_text()) != key):
        log("base: evaluated with other (or unrecorded) model or eval settings; evaluating it again")
        out.unlink()
    if not out.exists() or args.rerun:
        log("eval of the base model")
        evaluate(
            cfg, out.parent, model_dir=materialize_model(cfg.model, cfg.stage_dir("models") / "base", cfg.seed), out=out
        )
        recorded.write_text(json.dumps(key, indent=1) + "\n")
    return {
        "method": "base",
        "budget": 0.0,
        "seed": "-",
        "wall_s": 0.0,
        "selection_s": 0.0,
        "training_s": 0.0,
        "rounds": 0,
        "unique": 0,
        "samples_trained": 0,
        "pool_forward_samples": 0,
        **eval_columns(json.loads(out.read_text())),
    }


def mean(rows, key):
    v = [r[key] for r in rows if r.get(key) is not None]
    return float(np.mean(v)) if v else None


TABLE_COLUMNS = [
    "method",
    "budget",
    "seed",
    "wall_s",
    "selection_s",
    "training_s",
    "rounds",
    "unique",
    "samples_trained",
    "pool_forward_samples",
    "nll_holdout",
    "nll_gsm8k",
    "nll_self_instruct",
    "nll_mmlu",
    "mmlu_acc",
    "em_gsm8k",
]


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=4000)
    ap.add_argument("--seeds", default="42,43,44")
    ap.add_argument("--budgets", default="0.025,0.05")
    ap.add_argument("--methods", default="lead,random,ppl,ifd,rescore,full")
    ap.add_argument("--ablations", default=",".join(ABLATIONS))
    ap.add_argument("--max-rounds", type=int, default=12)
    ap.add_argument("--rho", type=float, default=0.1)
    ap.add_argument("--eval-samples", type=int, default=200)
    ap.add_argument("--work", default=str(ROOT / "bench" / "work" / "selection"))
    ap.add_argument("--rerun", action="store_true", help="ignore finished runs' cached rows")
    ap.add_argument("--config", help="base config instead of configs/demo.yaml (e.g. configs/smollm2.yaml)")
    ap.add_argument("--set", action="append", default=[], help="extra config override for every stage and run")
    ap.add_argument("--result", default="selection", help="writes bench/results/<result>.json")
    return ap


def run_all(args, work: Path, seeds: list[int], budgets: list[float]) -> list[dict]:
    """The base model's row, then every method at every budget (full: the largest) and every ablation, per seed."""
    rows = [base_row(args, work)]
    for seed in seeds:
        for method in args.methods.split(","):
            for budget in [budgets[-1]] if method == "full" else budgets:
                rows.append(one_run(args, work, method, method, budget, seed, []))
        for name in filter(None, args.ablations.split(",")):
            rows.append(one_run(args, work, name, "lead", budgets[-1], seed, ABLATIONS[name]))
    return rows


def print_table(rows: list[dict]) -> None:
    print("| " + " | ".join(TABLE_COLUMNS) + " |\n|" + "---|" * len(TABLE_COLUMNS))
    for r in rows:
        cells = (f"{r.get(c):.4g}" if isinstance(r.get(c), float) else str(r.get(c)) for c in TABLE_COLUMNS)
        print("| " + " | ".join(cells) + " |")


class Rows:
    """The finished rows, picked by method, budget and seed."""

    def __init__(self, rows: list[dict]):
        self.rows = rows

    def __call__(self, method, budget=None, seed=None) -> list[dict]:
        return [
            r
            for r in self.rows
            if r["method"] == method
            and (budget is None or r["budget"] == budget)
            and (seed is None or r["seed"] == seed)
        ]


def summarize(rows: list[dict], args, seeds: list[int], budgets: list[float]) -> dict:
    """The result file's figures: rescore/LEAD time ratios, LEAD against random and full, the held-out NLL per
    method, and each ablation's cost."""
    pick, big = Rows(rows), budgets[-1]
    result = {"rows_requested": args.rows, "pool": rows[1]["pool"], "seeds": len(seeds), "budgets": budgets}
    ratios = {}
    for b in budgets:
        lead, resc = pick("lead", b), pick("rescore", b)
        if lead and resc:
            ratios[f"rescore_over_lead_wall_b{b}"] = mean(resc, "wall_s") / mean(lead, "wall_s")
            ratios[f"rescore_over_lead_loop_b{b}"] = mean(resc, "loop_s") / mean(lead, "loop_s")
    result["rescore_over_lead_wall"] = ratios.get(f"rescore_over_lead_wall_b{big}")
    result["rescore_over_lead_loop"] = ratios.get(f"rescore_over_lead_loop_b{big}")
    pairs = [
        (pick("lead", big, s)[0], pick("random", big, s)[0])
        for s in seeds
        if pick("lead", big, s) and pick("random", big, s)
    ]
    result["lead_beats_random_seeds"] = (
        sum(lead["nll_holdout"] < rnd["nll_holdout"] for lead, rnd in pairs) if pairs else None
    )
    if pick("full") and pick("lead", big):
        full_nll, lead_nll = mean(pick("full"), "nll_holdout"), mean(pick("lead", big), "nll_holdout")
        result["lead_vs_full_nll_gap"] = (lead_nll - full_nll) / full_nll
        trained = mean(pick("lead", big), "samples_trained") / mean(pick("full"), "samples_trained")
        result["lead_over_full_train_compute"] = trained
    methods = list(dict.fromkeys(r["method"] for r in rows))
    at_budget = {m: pick(m, None if m in ("full", "base") else big) for m in methods}
    result["heldout_nll"] = {m: mean(at_budget[m], "nll_holdout") for m in methods}
    result["heldout_nll_small_budget"] = {
        m: mean(pick(m, budgets[0]), "nll_holdout") for m in args.methods.split(",") if m != "full" and len(budgets) > 1
    }
    if any("em_gsm8k" in r for r in rows):
        result["gsm8k_exact_match"] = {m: mean(at_budget[m], "em_gsm8k") for m in methods}
        result["lead_beats_random_em_seeds"] = int(sum(lead["em_gsm8k"] > rnd["em_gsm8k"] for lead, rnd in pairs))
    if pick("lead", big):
        lead_nll = mean(pick("lead", big), "nll_holdout")
        result["ablation_cost"] = {a: mean(pick(a, big), "nll_holdout") - lead_nll for a in ABLATIONS if pick(a, big)}
        result["ablation_cost_per_seed"] = {
            a: [
                pick(a, big, s)[0]["nll_holdout"] - pick("lead", big, s)[0]["nll_holdout"]
                for s in seeds
                if pick(a, big, s) and pick("lead", big, s)
            ]
            for a in ABLATIONS
            if pick(a, big)
        }
    result["ratios"] = ratios
    return result


def main() -> None:
    args = parser().parse_args()
    os.environ.setdefault("LEAD_RAY_PROGRESS", "0")
    from lead_ray.config import RayConfig
    from lead_ray.runtime import init_ray

    work = Path(args.work).resolve()
    seeds = [int(s) for s in args.seeds.split(",")]
    budgets = [float(b) for b in args.budgets.split(",")]
    t0 = time.perf_counter()
    init_ray(RayConfig())
    setup(args, work)
    rows = run_all(args, work, seeds, budgets)
    print_table(rows)
    result = {"machine": os.uname().nodename, "cpus": os.cpu_count(), "rows": rows}
    result.update(summarize(rows, args, seeds, budgets))
    # this invocation's time (short when the runs were cached) and the runs' own time, evals included
    result["seconds"] = round(time.perf_counter() - t0, 1)
    result["runs_seconds"] = round(sum(r["wall_s"] + r["eval_s"] for r in rows), 1)
    result["config"] = args.config or "configs/demo.yaml"
    result["overrides"] = list(args.set)
    result["args"] = vars(args)  # rho, max_rounds, eval_samples, ...: what this invocation ran with
    out = ROOT / "bench" / "results" / f"{args.result}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print("\n" + json.dumps({k: v for k, v in result.items() if k != "rows"}))


if __name__ == "__main__":
    main()
