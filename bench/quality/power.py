"""How small a difference the quality benchmark can detect: `mde` per eval set and for the primary metric.

    python bench/quality/power.py        # → bench/results/quality_power.json (reads bench/work/quality-cpu)

From the stored runs' per-item paired differences (the default against random and random-x2, every pool
that has both), each set's spread is split into seed, item and seed×item parts (lead_ray/eval/stats.py,
`variance_components`), and the minimum detectable difference at 80% power is computed for 5 seeds at the
set's current size and at twice and four times as many items. A verdict needs the two-level bootstrap and the
t-interval over per-seed means both to exclude 0, so the larger of the two MDEs is the one that binds.
The primary metric's per-seed values (the mean over the four clean sets) give its own spread directly.
Nothing is trained or scored here; it takes seconds.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench.quality.regimes import DEFAULT_METHOD  # noqa: E402
from bench.quality.stats import PLANNED_SEEDS, PRIMARY_HELDOUT, PRIMARY_SETS, item_scores  # noqa: E402
from lead_ray.eval.stats import mde, variance_components  # noqa: E402

# (pool folder, runs folder) per pool; MMLU choice_nll on the clean pool exists for the runs-fresh reruns only
POOLS = {"clean": ["runs", "runs-fresh"], "noisy": ["runs"], "noisy-p1": ["runs"]}
OTHERS = ("random", "random-x2")
GROWTH = (1, 2, 4)


def differences(variant: Path, folders: list[str], other: str, key: str, clean) -> np.ndarray | None:
    """(seeds × items) default − other on one metric, from the first runs folder where every seed has it."""
    for folder in folders:
        rows = []
        for seed in (42, 43, 44, 45, 46):
            a, b = (variant / folder / f"{m}-s{seed}" for m in (DEFAULT_METHOD, other))
            if not ((a / "eval_items.json").exists() and (b / "eval_items.json").exists()):
                continue
            x, y = item_scores(a, clean), item_scores(b, clean)
            if key in x and key in y:
                rows.append(x[key] - y[key])
        if len(rows) >= 2:
            d = np.array(rows)
            return d[:, np.all(np.isfinite(d), axis=0)]
    return None


def planted_holdout(variant: Path):
    """The unplanted held-out items of a noisy pool (None on the clean pool)."""
    if not variant.name.startswith("noisy"):
        return None
    from bench.quality.regimes import REGIMES, overrides
    from bench.quality.stats import clean_holdout
    from lead_ray.config import load_config

    regime = REGIMES["cpu"]
    return clean_holdout(variant, load_config(ROOT / regime.config, overrides(regime, variant, [])))


def pool_power(variant: Path, folders: list[str]) -> dict:
    clean = planted_holdout(variant)
    keys = (*PRIMARY_SETS, PRIMARY_HELDOUT[clean is not None])
    out = {}
    for other in OTHERS:
        sets, per_seed = {}, []
        for key in keys:
            d = differences(variant, folders, other, key, clean)
            if d is None:
                sets[key] = None
                continue
            spread = variance_components(d)
            sets[key] = {
                "components": spread,
                "mde": {f"items_x{g}": mde(spread, PLANNED_SEEDS, g * spread["items"]) for g in GROWTH},
            }
            per_seed.append(d.mean(1))
        measured = [k for k in keys if sets[k] is not None]
        entry = {"sets": sets}
        if len(measured) == len(keys) and len({len(p) for p in per_seed}) == 1:
            primary = np.mean(per_seed, axis=0)
            entry["primary"] = {"per_seed": primary.tolist(), "seed_sd": float(primary.std(ddof=1))}
        else:
            entry["primary"] = {"missing": [k for k in keys if sets[k] is None]}
        out[f"default_vs_{other}"] = entry
    return out


def seeds_needed(seed_sd: float, target: float) -> int:
    """Fewest seeds whose t-interval MDE (item terms left out: seeds dominate) reaches `target` nats."""
    for seeds in range(3, 60):
        if mde({"seed": seed_sd, "item": 0.0, "interaction": 0.0}, seeds, 1)["t"] <= target:
            return seeds
    return 60


def main() -> None:
    work = ROOT / "bench" / "work" / "quality-cpu"
    result = {"planned_seeds": PLANNED_SEEDS, "power": 0.8, "confidence": 0.95, "pools": {}}
    for name, folders in POOLS.items():
        if (work / name / "setup.json").exists():
            result["pools"][name] = pool_power(work / name, folders)
    sds = [e["primary"]["seed_sd"] for p in result["pools"].values() for e in p.values() if "seed_sd" in e["primary"]]
    if sds:
        worst = max(sds)
        spread = {"seed": worst, "item": 0.0, "interaction": 0.0}
        result["primary_planned"] = {
            "largest_seed_sd": worst,
            "mde_at_planned_seeds": mde(spread, PLANNED_SEEDS, 1)["t"],
            "seeds_for_0.03_nats": seeds_needed(worst, 0.03),
        }
    out = ROOT / "bench" / "results" / "quality_power.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result.get("primary_planned"), indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
