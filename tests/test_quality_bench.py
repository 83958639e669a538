"""bench/quality/run.py's pure parts: the stratified slice covers every source; picks counted by source group."""

import json

import pyarrow as pa

from bench.quality.pool_slice import stratified_slice


def test_stratified_slice_gives_every_source_its_share():
    sources = ["gsm8k/train.jsonl"] * 500 + ["self_instruct/seed_tasks.jsonl"] * 30
    sources += [f"t0_train_50k/task_{i % 20}.jsonl" for i in range(2000)]  # 20 files: one group
    table = pa.table({"id": [f"{i:06d}" for i in range(len(sources))][::-1], "source": sources})
    sliced = stratified_slice(table, 300)
    got = sliced["source"].to_pylist()
    assert got.count("self_instruct/seed_tasks.jsonl") == 30  # small group: all of it
    assert got.count("gsm8k/train.jsonl") == 135 and sum(s.startswith("t0_train_50k/") for s in got) == 135
    assert sliced["id"].to_pylist() == sorted(sliced["id"].to_pylist())
    assert stratified_slice(table, 10_000).num_rows == len(sources)  # asks for more than there is


def test_source_mix_pools_each_methods_picks_over_its_seeds(tmp_path):
    import pyarrow.parquet as pq

    from bench.quality.stats import source_mix

    picks = {
        ("lead", 1): ["gsm8k/train.jsonl"] * 3 + ["t0_train_50k/task_1.jsonl"],
        ("lead", 2): [f"t0_train_50k/task_{i}.jsonl" for i in range(20)] * 2,  # many files: one group
        ("random", 1): ["gsm8k/train.jsonl", "self_instruct/seed_tasks.jsonl"],
    }
    runs: dict = {}
    for (method, seed), sources in picks.items():
        folder = tmp_path / f"{method}-{seed}"
        folder.mkdir()
        pq.write_table(pa.table({"source": sources}), folder / "selected.parquet")
        runs.setdefault(method, {})[seed] = folder
    mix = source_mix(runs)
    assert mix["lead"] == {"gsm8k/train.jsonl": round(3 / 44, 4), "t0_train_50k/*": round(41 / 44, 4)}
    assert mix["random"] == {"gsm8k/train.jsonl": 0.5, "self_instruct/seed_tasks.jsonl": 0.5}


def test_pick_profile_counts_trained_tokens_with_revisits(tmp_path):
    import pyarrow.parquet as pq

    from bench.quality.stats import pick_profile

    pool = tmp_path / "pool.parquet"
    ids = ["a", "b", "c", "d", "e"]
    pool_rows = {"id": ids, "n_tokens": [12, 14, 16, 20, 150], "n_response_tokens": [2, 4, 6, 8, 100]}
    pq.write_table(pa.table(pool_rows), pool)
    run = tmp_path / "lead-1"
    run.mkdir()
    picks = {"id": ["b", "c", "e"], "n_response_tokens": [4, 10, 100], "use_count": [1, 3, 2]}
    pq.write_table(pa.table(picks), run / "selected.parquet")
    profile = pick_profile({"lead": {1: run}}, [pool])
    assert profile["pool_median_response_tokens"] == 6.0
    assert profile["lead"]["1"] == {
        "unique": 3,
        "trained_samples": 6,
        "trained_response_tokens": 4 + 30 + 200,
        "trained_tokens": 14 + 3 * 16 + 2 * 150,  # the whole sequence, prompt and answer, per use
        "median_response_tokens": 10.0,
    }


def test_switch_table_marks_who_wins_and_shows_missing_pools():
    from bench.quality.tables import switch_table

    def entry(mean, lo, hi, better):
        return {"vs": "lead", "mean": mean, "ci": [lo, hi], "seeds": 3, "better": better}

    clean = {
        "paired": {
            "lead+all-switches_vs_paper": {"gsm8k_nll": entry(0.05, 0.01, 0.09, "lead")},
            "lead+quantile_vs_paper": {"gsm8k_nll": entry(-0.05, -0.09, -0.01, "lead+quantile")},
            "robust_vs_paper": {"gsm8k_nll": entry(-0.05, -0.09, -0.01, "lead-robust")},  # the preset's row
        }
    }
    noisy = {
        "paired": {"lead+all-switches_vs_paper": {"mmlu_nll": entry(0.0, -0.1, 0.1, "none")}},
        "corrupt_pick_rate_ci": {
            "lead": {"mean": 0.4, "ci": [0.3, 0.5]},
            "lead+all-switches": {"mean": 0.3, "ci": [0.2, 0.4]},
        },
    }
    rows = {tuple(c.strip() for c in line.split("|")[1:3]): line for line in switch_table(clean, noisy).splitlines()}
    assert "**paper**" in rows[("lead+all-switches", "clean")] and "**switch**" in rows[("lead+quantile", "clean")]
    assert (
        "**" not in rows[("lead+all-switches", "noisy")]
        and "0.300 [0.200, 0.400]" in rows[("lead+all-switches", "noisy")]
    )
    assert rows[("lead+quantile", "noisy")].count("–") == 5  # not run there: every cell empty, not zero
    assert "0.400 [0.300, 0.500]" in rows[("lead (the paper)", "noisy")]
    assert "**switch**" in rows[("lead-robust", "clean")] and ("robust", "clean") not in rows


def test_the_gate_confirmation_applies_the_declared_rule():
    """Every declared test is a row; one failing test fails the verdict, a test not measured leaves it open."""
    import copy

    from bench.quality.tables import DECLARED, confirmation_table

    def gate_table(planted, fresh):
        return confirmation_table(DECLARED["gate"], planted, fresh)

    def entry(mean, better):
        return {"vs": "lead+quantile", "mean": mean, "ci": [mean - 0.01, mean + 0.01], "better": better}

    gate, default, none = "lead+quantile+end-gate", "lead+quantile", "none"
    planted = {
        "paired": {
            "quantile_end_gate_vs_default": {
                "gsm8k_nll": entry(-0.05, gate),
                "self_instruct_nll": entry(0.0, none),
                "holdout_clean_nll": entry(0.0, none),
                "mmlu_choice_nll": entry(0.0, none),
            }
        },
        "corrupt_pick_rate_ci": {gate: {"mean": 0.1, "ci": [0.05, 0.15]}, default: {"mean": 0.36, "ci": [0.3, 0.4]}},
    }
    fresh_pairs = {k: entry(0.0, none) for k in ("gsm8k_nll", "mmlu_choice_nll", "self_instruct_nll")}
    fresh = {"paired": {"quantile_end_gate_vs_default": fresh_pairs}}
    assert gate_table(planted, fresh).splitlines()[-1].endswith("| 9 of 9 tests hold | yes |")
    worse = copy.deepcopy(fresh)
    worse["paired"]["quantile_end_gate_vs_default"]["mmlu_choice_nll"] = entry(0.05, default)
    assert gate_table(planted, worse).splitlines()[-1].endswith("| 8 of 9 tests hold | **no** |")
    unscored = copy.deepcopy(fresh)
    del unscored["paired"]["quantile_end_gate_vs_default"]["self_instruct_nll"]
    table = gate_table(planted, unscored)
    assert "not measured | – |" in table and table.endswith("| 8 of 9 tests hold | open: a test was not measured |")
    assert gate_table(planted, {"paired": {}}).endswith("| 6 of 9 tests hold | open: a test was not measured |")
    unchanged = copy.deepcopy(planted)  # no longer better anywhere
    unchanged["paired"]["quantile_end_gate_vs_default"]["gsm8k_nll"] = entry(-0.01, none)
    assert gate_table(unchanged, unscored).splitlines()[-1].endswith("| 7 of 9 tests hold | **no** |")
    unchanged["corrupt_pick_rate_ci"][gate] = {"mean": 0.3, "ci": [0.25, 0.37]}  # the interval reaches 0.36
    assert gate_table(unchanged, fresh).splitlines()[-1].endswith("| 7 of 9 tests hold | **no** |")


def test_a_confirmation_against_random_needs_half_its_share_and_an_interval_below_its_interval():
    """`total-choice` as declared: planted picks at most half of random's with the intervals apart, and not
    worse than the default on five NLLs over two pools; a share under half whose interval reaches random's
    interval fails, as does one NLL worse."""
    from bench.quality.tables import DECLARED, confirmation_table

    total, default, none = "lead+quantile+total", "lead+quantile", "none"
    declared = DECLARED["total-choice"]

    def pools(rate: dict, choice_nll: float = 0.0) -> tuple[dict, dict]:
        keys = ("gsm8k_nll", "mmlu_choice_nll", "self_instruct_nll")
        pairs = {k: {"mean": 0.0, "ci": [-0.02, 0.02], "better": none} for k in keys}
        worse = {"mean": choice_nll, "ci": [choice_nll - 0.02, choice_nll + 0.02], "better": default}
        fresh = {**pairs, "mmlu_choice_nll": worse} if choice_nll else pairs
        planted = {"paired": {declared.pair: pairs}, "corrupt_pick_rate_ci": rate}
        return planted, {"paired": {declared.pair: fresh}}

    rates = {total: {"mean": 0.05, "ci": [0.01, 0.09]}, "random": {"mean": 0.15, "ci": [0.11, 0.2]}}
    table = confirmation_table(declared, *pools(rates))
    assert table.splitlines()[-1].endswith("| 6 of 6 tests hold | yes |") and "(total − default)" in table
    overlapping = {**rates, total: {"mean": 0.07, "ci": [0.02, 0.12]}}  # under half, the intervals overlap
    assert confirmation_table(declared, *pools(overlapping)).splitlines()[-1].endswith("| 5 of 6 tests hold | **no** |")
    assert confirmation_table(declared, *pools(rates, 0.05)).splitlines()[-1].endswith("| 5 of 6 tests hold | **no** |")
    table = confirmation_table(declared, *pools({total: rates[total]}))
    assert "not measured | – |" in table and table.endswith("| 5 of 6 tests hold | open: a test was not measured |")


def test_the_benchmark_docs_tables_are_the_committed_results():
    """Every marked table of docs/BENCHMARKS.md is what bench/quality/tables.py makes from the result files it
    names (a result rewritten without the docs fails here), and a changed number is found."""
    from bench.quality.tables import ROOT, update_docs

    text = (ROOT / "docs" / "BENCHMARKS.md").read_text()
    assert text.count("<!-- quality_tables ") >= 8
    regenerated, stale = update_docs(text)
    assert stale == [] and regenerated == text, (
        f"run: python bench/quality/tables.py --docs docs/BENCHMARKS.md ({stale})"
    )
    cell = next(line for line in text.splitlines() if line.startswith("| random | 42,43,44 |"))
    _, stale = update_docs(text.replace(cell, cell.replace("|", "| 9.999 |", 1), 1))
    assert stale  # the first matching table no longer matches its result


def test_every_regime_and_method_resolves_to_a_valid_config(tmp_path):
    """The gpu regime has never run on this machine: at least every run it would start must load."""
    from bench.quality.regimes import REGIMES, ROOT, method_settings, overrides
    from lead_ray.config import load_config
    from lead_ray.presets import switches

    for name, regime in REGIMES.items():
        for method in regime.every_seed + regime.first_seed_only + regime.ablations:
            selection_method, extra = method_settings(method)
            settings = overrides(regime, tmp_path, []) + ["seed=42", f"selection.method={selection_method}", *extra]
            cfg = load_config(ROOT / regime.config, settings)
            assert cfg.selection.method == selection_method, (name, method)
            switches(cfg)  # every preset switch resolves
        if name == "gpu":
            assert cfg.train.use_gpu and cfg.score.use_gpu and cfg.eval.use_gpu


def test_lead_is_the_paper_and_the_default_method_is_lead_rays_default(tmp_path):
    """The benchmark's names stay true when the default preset changes: `lead` runs the paper's switches,
    DEFAULT_METHOD the switches a config that sets no preset resolves to (and the setup clusters as the paper)."""
    from bench.quality.regimes import DEFAULT_METHOD, METHOD_ALIASES, REGIMES, ROOT, method_settings, overrides
    from lead_ray.config import load_config
    from lead_ray.presets import PRESETS, switches

    for regime in REGIMES.values():
        resolved = {}
        for method in ("lead", DEFAULT_METHOD):
            selection_method, extra = method_settings(method)
            settings = overrides(regime, tmp_path, []) + [f"selection.method={selection_method}", *extra]
            resolved[method] = switches(load_config(ROOT / regime.config, settings))
        assert (
            resolved["lead"]
            == PRESETS["paper"]
            == switches(load_config(ROOT / regime.config, overrides(regime, tmp_path, [])))
        )
        assert resolved[DEFAULT_METHOD] == switches(load_config(None)) != PRESETS["paper"]
        robust_method, extra = method_settings(METHOD_ALIASES["lead-robust"])
        settings = overrides(regime, tmp_path, []) + [f"selection.method={robust_method}", *extra]
        assert switches(load_config(ROOT / regime.config, settings)) == PRESETS["robust"]


def test_fresh_eval_scores_the_items_after_the_reported_ones_and_checks_the_picks(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from bench.quality.regimes import REGIMES, ROOT, fresh_eval_overrides, overrides
    from bench.quality.stats import same_picks
    from lead_ray.config import load_config

    cpu = REGIMES["cpu"]
    eval_cfg = load_config(ROOT / cpu.config, overrides(cpu, tmp_path, []) + fresh_eval_overrides(cpu)).eval
    assert eval_cfg.sets == ["gsm8k", "mmlu"] and eval_cfg.set_offsets == {"gsm8k": 200, "mmlu": 285}
    assert eval_cfg.set_sizes == eval_cfg.set_offsets and eval_cfg.generate is False
    picked = {"runs": {"random-s42": ["a", "b"], "lead-s42": ["a", "b"]}}
    picked["runs-fresh"] = {"random-s42": ["a", "b"], "lead-s42": ["b", "a"], "length-s42": ["c"]}
    for folder, by_run in picked.items():
        for name, ids in by_run.items():
            (tmp_path / folder / name).mkdir(parents=True)
            pq.write_table(pa.table({"id": ids}), tmp_path / folder / name / "selected.parquet")
    runs = {m: {42: tmp_path / "runs-fresh" / f"{m}-s42"} for m in ("random", "lead", "length")}
    assert same_picks(runs, tmp_path / "runs") == {
        "random-s42": {"identical": True, "shared": 1.0},
        "lead-s42": {"identical": False, "shared": 1.0},  # the same samples in another order
        "length-s42": None,
    }


def test_machine_seconds_adds_setup_and_every_finished_run(tmp_path):

    from bench.quality.result import machine_seconds

    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "warmup_stats.json").write_text(json.dumps({"seconds": 300.0}))
    runs = {}
    for method, seed, seconds in (("lead", 42, {"run": 200.0, "eval": 100.0}), ("random", 42, None)):
        run_dir = tmp_path / "runs" / f"{method}-s{seed}"
        run_dir.mkdir(parents=True)
        if seconds:
            (run_dir / "bench_seconds.json").write_text(json.dumps(seconds))
        runs.setdefault(method, {})[seed] = run_dir
    cost = machine_seconds(tmp_path, runs)
    assert cost["setup_recorded"] == {"warmup": 300.0, "score": None}  # not scored here: unknown, not 0
    assert (
        cost["runs_recorded"] == 1
        and cost["runs_total"] == 300.0
        and cost["all_recorded_hours"] == round(600 / 3600, 2)
    )


def test_run_environments_group_runs_by_the_versions_they_trained_under(tmp_path):

    from bench.quality.result import run_environments

    runs = {}
    for name, env in (("lead-s42", {"torch": "2.13.0"}), ("lead-s43", {"torch": "2.12.0"}), ("random-s42", None)):
        run_dir = tmp_path / name
        run_dir.mkdir()
        if env:
            (run_dir / "bench_environment.json").write_text(json.dumps(env))
        method, seed = name.rsplit("-s", 1)
        runs.setdefault(method, {})[int(seed)] = run_dir
    groups = {json.dumps(g["environment"]): g["runs"] for g in run_environments(runs)}
    assert groups == {'{"torch": "2.12.0"}': ["lead-s43"], '{"torch": "2.13.0"}': ["lead-s42"], "null": ["random-s42"]}


def test_a_cached_pool_gains_iu0_content_without_moving_a_row(tmp_path):
    """bench/quality/content.py: the column from the base model's pass, every other column and the row order
    kept; a pool whose iu0 the model does not reproduce is refused."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    import pytest

    from bench.quality.content import CONTENT, add_content_column
    from lead_ray.config import load_config
    from lead_ray.data.rows import write_pool_file
    from lead_ray.models.load import load_model, materialize_model
    from lead_ray.models.loss import score_encoded
    from lead_ray.models.template import encode_conversation

    cfg = load_config(None, ["model.max_length=64"])
    model, tok = load_model(materialize_model(cfg.model, tmp_path / "models" / "base", cfg.seed), cfg.model)
    chats = [[{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": "ab" * i}] for i in range(6)]
    encoded = [encode_conversation(tok, c, 64) for c in chats]
    iu0, _, content = score_encoded(model.eval(), encoded, tok.pad_token_id, 4096, 8, tok.eos_token_id)
    table = pa.table(
        {
            "id": [f"s{i}" for i in range(6)],
            "messages": chats,
            "iu0": pa.array(iu0.astype(np.float32)),
            "difficulty_cluster": pa.array([1, 0, 1, 0, 1, 0], pa.int16()),
        }
    )
    pool = tmp_path / "clustered" / "pool"
    pool.mkdir(parents=True)
    write_pool_file(table, pool / "part-0.parquet")
    before = pq.read_table(pool)
    add_content_column(tmp_path, tmp_path, cfg)
    after = pq.read_table(pool)
    assert after.drop_columns([CONTENT]).equals(before)
    expected = dict(zip([f"s{i}" for i in range(6)], content))
    np.testing.assert_allclose(after[CONTENT].to_numpy(), [expected[i] for i in after["id"].to_pylist()], rtol=1e-6)
    written = (pool / "part-0.parquet").stat().st_mtime_ns
    add_content_column(tmp_path, tmp_path, cfg)  # has it: nothing to do
    assert (pool / "part-0.parquet").stat().st_mtime_ns == written
    other = tmp_path / "other"
    (other / "clustered" / "pool").mkdir(parents=True)
    (other / "models").symlink_to(tmp_path / "models")
    write_pool_file(
        table.set_column(2, "iu0", pa.array(iu0.astype(np.float32) + 0.5)), other / "clustered" / "pool" / "p.parquet"
    )
    with pytest.raises(SystemExit, match="not the same model"):
        add_content_column(other, other, cfg)


def test_a_gated_clustering_gets_scored_units_with_iu0_end_from_the_cached_pass(tmp_path):
    """bench/quality/content.py: the scored units a cluster.end_nll_above clustering reads are the variant's,
    with iu0_end computed from the cached pass as scoring computes it (NaN for a row the pool left out)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from bench.quality.content import END, add_end_column_to_units
    from lead_ray.config import load_config
    from lead_ray.data.rows import write_pool_file
    from lead_ray.models.load import load_model, materialize_model
    from lead_ray.models.loss import end_token_nll, score_encoded
    from lead_ray.models.template import encode_conversation

    cfg = load_config(None, ["model.max_length=64"])
    model, tok = load_model(materialize_model(cfg.model, tmp_path / "models" / "base", cfg.seed), cfg.model)
    chats = [[{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": "ab" * i}] for i in range(5)]
    encoded = [encode_conversation(tok, c, 64) for c in chats]
    scores = score_encoded(model.eval(), encoded, tok.pad_token_id, 4096, 8, tok.eos_token_id)
    ids = [f"s{i}" for i in range(5)]
    pool = pa.table(
        {
            "id": ids[:4],  # s4 is left out of the pool (untrainable)
            "messages": chats[:4],
            "iu0": pa.array(scores.loss[:4].astype(np.float32)),
            "n_response_tokens": pa.array(scores.n[:4].astype(np.int32)),
            "difficulty_cluster": pa.array([0, 0, 1, 1], pa.int16()),
        }
    )
    (tmp_path / "clustered" / "pool").mkdir(parents=True)
    write_pool_file(pool, tmp_path / "clustered" / "pool" / "part-0.parquet")
    (tmp_path / "scored" / "units").mkdir(parents=True)
    unit = pa.table({"id": ids, "trainable": [True] * 4 + [False], "iu0": pa.array(scores.loss.astype(np.float32))})
    pq.write_table(unit, tmp_path / "scored" / "units" / "u0.parquet")
    work = tmp_path / "clusterings" / "quantile-keep-end13.8"
    add_end_column_to_units(tmp_path, work, cfg)
    got = pq.read_table(work / "scored" / "units" / "u0.parquet")
    assert got.drop_columns([END]).equals(unit)
    want = end_token_nll(encoded, scores, tok.eos_token_id)
    np.testing.assert_allclose(got[END].to_numpy()[:4], want[:4], rtol=1e-4)
    assert np.isnan(got[END].to_numpy()[4]) and np.isfinite(want[:4]).all()


def test_a_key_added_later_keeps_cached_pools_while_it_is_none():
    """bench/quality/run.py: the settings a cached pool's setup.json and a cached run's config were recorded with
    lack cluster.end_nll_above; while it is None (what they ran) it is left out of the compared settings, so they
    are reused, and a threshold is compared."""
    from bench.quality.run import _without_no_effect
    from lead_ray.config import load_config, to_dict

    assert "end_nll_above" not in _without_no_effect(to_dict(load_config(None)))["cluster"]
    gated = _without_no_effect(to_dict(load_config(None, ["cluster.end_nll_above=13.8"])))
    assert gated["cluster"]["end_nll_above"] == 13.8
