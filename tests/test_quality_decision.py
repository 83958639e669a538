"""Issue 33's benchmark pieces: the anchor the learnability candidate trusts, the primary-metric table, and
cached pools that stay valid as keys are added."""

import json

import pyarrow as pa

from bench.quality.decision import CLEAN_SETS, decision_table
from bench.quality.pool_slice import stratified_slice


def test_the_anchor_comes_from_outside_the_slice_spread_over_sources():
    from bench.quality.anchor import anchor_rows

    sources = ["gsm8k/train.jsonl"] * 300 + ["self_instruct/seed_tasks.jsonl"] * 40
    sources += [f"t0_train_50k/task_{i % 20}.jsonl" for i in range(600)]
    full = pa.table({"id": [f"{i:06d}" for i in range(len(sources))], "source": sources})
    taken = set(stratified_slice(full, 200)["id"].to_pylist())
    anchor = anchor_rows(full, taken, rows=90)
    ids = anchor["id"].to_pylist()
    assert len(ids) == 90 and not set(ids) & taken
    got = anchor["source"].to_pylist()
    # the slice took every self-instruct row (a small group gives what it has): the anchor has none of them
    assert got.count("gsm8k/train.jsonl") == 45 and "self_instruct/seed_tasks.jsonl" not in got
    assert sum(s.startswith("t0_train_50k/") for s in got) == 45


def test_the_primary_table_shows_both_intervals_and_what_was_not_measured():
    from bench.quality.tables import primary_table

    entry = {
        "mean": -0.05,
        "ci": [-0.08, -0.02],
        "seed_t_interval": [-0.09, -0.01],
        "seeds": 5,
        "better": "lead+quantile+trim",
        "mde": {"nats": 0.061},
    }
    result = {
        "paired": {
            "trim_vs_default": {"primary": entry},
            "default_vs_random": {"primary": {"sets": [], "missing": ["mmlu_choice_nll"], "seeds": 3}},
        }
    }
    lines = primary_table(result).splitlines()
    assert lines[2] == "| default_vs_random | 3 | not measured (mmlu_choice_nll) | – | – | – |"
    want = "| trim_vs_default | 5 | -0.050 [-0.080, -0.020] | [-0.090, -0.010] | lead+quantile+trim | 0.061 |"
    assert lines[3] == want


def test_keys_added_since_the_cached_pools_leave_their_setup_key_alone_at_the_old_value():
    """A cached pool's setup key (setup.json) was made before these keys existed: at the value those pools ran
    with they are left out, so the cache stays valid; set otherwise they are part of the key."""
    import tarfile

    from bench.quality.run import REGIMES, ROOT, _without_no_effect, overrides
    from lead_ray.config import load_config, to_dict

    regime = REGIMES["cpu"]
    with tarfile.open(ROOT / "bench" / "cache" / "quality-cpu-clean.tar.gz") as tar:
        stored = json.load(tar.extractfile("setup.json"))["key"]
    now = _without_no_effect(to_dict(load_config(ROOT / regime.config, overrides(regime, ROOT, []))))
    assert {k: now[k] for k in ("warmup", "cluster")} == {k: stored[k] for k in ("warmup", "cluster")}
    changed = to_dict(load_config(ROOT / regime.config, overrides(regime, ROOT, ["cluster.end_z_above=3.5"])))
    assert _without_no_effect(changed)["cluster"]["end_z_above"] == 3.5


def _pool(rate: float, rate_hi: float, primary: float, better: str, worse_set: str | None = None, seeds: int = 5):
    """A result file holding one design (trim) as the decision reads it."""
    method = "lead+quantile+trim"
    sets = {k: {"mean": 0.01, "ci": [-0.02, 0.04], "better": "none", "seeds": seeds} for k in CLEAN_SETS}
    if worse_set:
        sets[worse_set] = {"mean": 0.08, "ci": [0.03, 0.12], "better": "lead+quantile", "seeds": seeds}
    p = {"mean": primary, "ci": [primary - 0.02, primary + 0.02], "better": better, "seeds": seeds}
    return {
        "corrupt_pick_rate_ci": {
            method: {"mean": rate, "ci": [rate - 0.02, rate_hi], "seeds": seeds},
            "random": {"mean": 0.15, "ci": [0.11, 0.19], "seeds": seeds},
        },
        "paired": {"trim_vs_default": sets, "trim_vs_random_x2": {"primary": p}},
    }


def _row(table: str, method: str = "lead+quantile+trim") -> list[str]:
    return [c.strip() for c in next(x for x in table.splitlines() if x.startswith(f"| {method} |")).split("|")[2:-1]]


def test_the_decision_rule_is_applied_by_code_goal_by_goal():
    """Issue 33's declared rule: yes only when all three goals hold on 5 seeds; one measured failure is no; too
    few seeds, or a pool not run, leaves it open."""
    good = _pool(0.06, 0.09, -0.07, "lead+quantile+trim")
    row = _row(decision_table(good, good, good))
    assert [c.rsplit(": ", 1)[1] for c in row[:-1]] == ["yes"] * 6 and row[-1] == "yes"
    assert row[0] == "6.0% [4.0, 9.0] vs 15.0%: yes"
    too_many = _pool(0.09, 0.12, -0.07, "lead+quantile+trim")  # above half of random's 15%
    assert _row(decision_table(good, too_many, good))[0].endswith("**no**")
    worse = _pool(0.06, 0.09, -0.07, "lead+quantile+trim", worse_set="mmlu_choice_nll")
    row = _row(decision_table(good, good, worse))
    assert row[2] == "worse: mmlu_choice_nll on the fresh planting (+0.080): **no**" and row[-1] == "**no**"
    no_difference = _pool(0.06, 0.09, -0.01, "none")
    assert _row(decision_table(no_difference, good, good))[3].endswith("**no**")
    three_seeds = _pool(0.06, 0.09, -0.07, "lead+quantile+trim", seeds=3)
    row = _row(decision_table(good, three_seeds, good))
    assert row[0] == "6.0% [4.0, 9.0] vs 15.0% (3 seeds): open" and row[-1] == "open"
    assert _row(decision_table(good, good, good), "lead+quantile+end-z") == ["not run: open"] * 2 + [
        "none worse so far: open"
    ] + ["not run: open"] * 3 + ["open"]


def test_the_summary_reads_its_verdicts_off_the_result_files():
    """BENCHMARKS' summary (bench/quality/summary.py): a verdict follows the numbers, not the text around them."""
    import copy

    from bench.quality.summary import DEFAULT, _broken_pairs, _screen
    from bench.quality.tables import ROOT

    noisy = json.loads((ROOT / "bench" / "results" / "quality_noisy.json").read_text())
    assert _broken_pairs(noisy)[1].startswith("**No**")  # 41% against random's 15%
    fixed = copy.deepcopy(noisy)
    fixed["corrupt_pick_rate"][DEFAULT] = 0.05
    fixed["corrupt_pick_rate_ci"][DEFAULT]["ci"] = [0.02, 0.08]
    assert _broken_pairs(fixed)[1].startswith("**Yes**: 5% [2, 8]")
    screen = json.loads((ROOT / "bench" / "results" / "quality_noisy_screen.json").read_text())
    assert "`trim` (" in _screen(screen)[1].split("; fail")[0]
    screen["corrupt_pick_rate"]["lead+quantile+trim"] = 0.99  # more planted picks than the default: fails
    assert "`trim` (" in _screen(screen)[1].split("; fail")[1]
