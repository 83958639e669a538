"""What LEAD saves: `rescore` (score the whole pool with the current model every round) against `lead`
(utilities read off the training forward pass) at a pool where re-scoring costs what it costs in practice.

    python bench/scale/rescore.py [--rows 24000] [--budget 0.025] [--rounds 12]   → bench/results/rescore_scale.json

The tiny preset (configs/demo.yaml) on a stratified slice of ../shared/data/pool (bench/quality/run.py's
setup, cached), one seed, the same budget and rounds for both; both runs happen in this invocation.
Reported: wall-clock seconds of each run, selection + training seconds (the rounds' own timings), the
pool forwards each made, and the ratios (goal: rescore / lead ≥ 10 on wall clock).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench.quality.regimes import Regime, overrides  # noqa: E402
from bench.quality.run import setup  # noqa: E402
from lead_ray.config import load_config  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=24000)
    ap.add_argument("--budget", type=float, default=0.025)
    ap.add_argument("--rounds", type=int, default=12)
    ap.add_argument("--rho", type=float, default=0.02)
    ap.add_argument("--work", default=str(ROOT / "bench" / "work" / "rescore-scale"))
    args = ap.parse_args()
    regime = Regime(
        "configs/demo.yaml", args.rows, args.budget, (42,), ("lead", "rescore"), (),
        {"holdout": 0}, 0,
        [f"selection.max_rounds={args.rounds}", f"selection.rho={args.rho}", "eval.inloop_every=0"],
    )  # fmt: skip
    work = Path(args.work).resolve()

    from lead_ray.config import RayConfig
    from lead_ray.online.run import run
    from lead_ray.runtime import init_ray

    init_ray(RayConfig())
    t0 = time.perf_counter()
    slice_info = setup(regime, work / "pool", work / "full", 0.0, [])
    t_setup = time.perf_counter() - t0
    rows = {}
    for method in ("lead", "rescore"):  # side by side in this invocation
        cfg = load_config(ROOT / regime.config, overrides(regime, work / "pool", [f"selection.method={method}"]))
        t = time.perf_counter()
        stats = run(cfg, work / "runs" / method)
        rows[method] = {
            "wall_seconds": round(time.perf_counter() - t, 1),
            "selection_seconds": stats["selection_seconds"],
            "training_seconds": stats["training_seconds"],
            "rounds": stats["rounds"],
            "unique_selected": stats["unique_selected"],
            "samples_trained": stats["samples_trained"],
            "pool_forward_samples": stats["pool_forward_samples"],
        }
    lead, rescore = rows["lead"], rows["rescore"]
    sel_train = {m: r["selection_seconds"] + r["training_seconds"] for m, r in rows.items()}
    result = {
        "command": " ".join(sys.argv),
        "pool_selectable": stats["pool"],
        "budget": stats["budget"],
        "slice_rows": slice_info["rows"],
        "methods": rows,
        "rescore_over_lead_wall": round(rescore["wall_seconds"] / lead["wall_seconds"], 2),
        "rescore_over_lead_selection_plus_training": round(sel_train["rescore"] / max(sel_train["lead"], 1e-9), 2),
        "goal_wall_ratio": 10,
        "setup_seconds_this_invocation": round(t_setup, 1),
    }
    out = ROOT / "bench" / "results" / "rescore_scale.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "methods"}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
