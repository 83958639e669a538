"""Robust LEAD's switches (ALGORITHM.md §12), each against the paper's behaviour, and the presets."""

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lead_ray.config import load_config
from lead_ray.core import bins
from lead_ray.core.bandit import Exp3Bandit, normalise_reward, normalise_reward_window
from lead_ray.core.utility import UtilityTable
from lead_ray.presets import PRESETS, switches

# ----------------------------------------------------------------------------- presets


def test_presets_resolve_and_an_explicit_key_wins():
    assert switches(load_config(None)) == PRESETS["robust"]  # the default
    assert switches(load_config(None, ["selection.preset=paper"])) == PRESETS["paper"]
    one_off = switches(load_config(None, ["selection.preset=paper", "selection.delta=sample"]))
    assert one_off.delta == "sample" and one_off.difficulty_bins == "kmeans"
    # robust is the paper with equal-count difficulty arms and nothing else (the declared rule's outcome)
    differs = {k for k, v in PRESETS["robust"].to_dict().items() if v != PRESETS["paper"].to_dict()[k]}
    assert differs == {"difficulty_bins"} and PRESETS["robust"].difficulty_bins == "quantile"
    # the config keeps 'preset' as written, so a Tune trial that changes the preset moves every switch
    from lead_ray.config import config_from_dict, to_dict

    saved = to_dict(load_config(None, ["selection.preset=paper"]))
    assert saved["cluster"]["difficulty_bins"] == "preset"
    assert switches(config_from_dict(saved, ["selection.preset=robust"])) == PRESETS["robust"]


def test_resolved_configs_are_equal_exactly_when_they_run_the_same_switches():
    """resolved_dict: how the benchmark tells a finished run's config from a new one's, however each spells a
    switch (from the preset, or explicit)."""
    from lead_ray.presets import resolved_dict

    paper = resolved_dict(load_config(None, ["selection.preset=paper"]))
    assert paper == resolved_dict(load_config(None, ["selection.preset=paper", "selection.rank_by=mean"]))
    robust = resolved_dict(load_config(None, ["selection.preset=robust"]))
    assert robust == resolved_dict(load_config(None, ["selection.preset=paper", "cluster.difficulty_bins=quantile"]))
    assert (
        robust != paper and robust["cluster"]["difficulty_bins"] == "quantile" and "preset" not in robust["selection"]
    )
    total = resolved_dict(load_config(None, ["selection.preset=paper", "selection.rank_by=total"]))
    assert total != paper and total["selection"]["rank_by"] == "total"


# ----------------------------------------------------------------------------- quantile bins


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(0, 1, allow_nan=False), min_size=1, max_size=300, unique=True), st.integers(1, 12))
def test_quantile_bins_are_equal_within_one_for_distinct_values(values, k):
    values = np.array(values)
    arms = bins.assign(values, bins.quantile_edges(values, k))
    sizes = np.bincount(arms)
    assert len(sizes) == min(k, len(values)) and sizes.min() >= 1
    assert sizes.max() - sizes.min() <= 1


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.7, 0.9]), min_size=1, max_size=200), st.integers(1, 8))
def test_quantile_bins_keep_tied_values_together_and_leave_no_arm_empty(values, k):
    values = np.array(values)
    arms = bins.assign(values, bins.quantile_edges(values, k))
    for v in np.unique(values):
        assert len(np.unique(arms[values == v])) == 1
    assert np.array_equal(np.unique(arms), np.arange(arms.max() + 1))  # arms 0..K'-1, none empty
    assert np.all(np.diff(arms[np.argsort(values, kind="stable")]) >= 0)  # arms are ordered by IFD


def test_kmeans_edges_assign_to_the_nearest_centroid():
    centroids = np.array([0.1, 0.4, 0.9])
    values = np.random.default_rng(0).uniform(0, 1, 500)  # none exactly halfway (that one: the upper arm)
    nearest = np.abs(values[:, None] - centroids[None]).argmin(1)
    assert np.array_equal(bins.assign(values, bins.kmeans_edges(centroids)), nearest)


# ----------------------------------------------------------------------------- reward normalisation


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.floats(-10, 10, allow_nan=False), min_size=2, max_size=30),
    st.floats(-20, 20, allow_nan=False),
    st.floats(1e-3, 5),
)
def test_window_normalisation_is_strictly_increasing_for_any_history(history, raw, step):
    if np.std(history[-10:]) < 1e-6:
        return
    low, high = normalise_reward_window(history, raw, 10), normalise_reward_window(history, raw + step, 10)
    assert -1 < low < high < 1


def test_a_rising_sequence_still_tells_arms_apart():
    """Arms 0 and 1 alternate; rewards rise every round and arm 0's rise more. Min–max maps every reward to +1
    (each is a new maximum) so EXP3 cannot tell the arms apart; the window normalisation can."""
    raw = [0.1 * t + (0.05 if t % 2 == 0 else 0.0) for t in range(20)]
    minmax, window = [], []
    for t, r in enumerate(raw):
        minmax.append(normalise_reward(raw[:t], r))
        window.append(normalise_reward_window(raw[:t], r, 10))
    assert set(minmax[1:]) == {1.0}
    arm0, arm1 = np.mean(window[2::2]), np.mean(window[3::2])
    assert arm0 > arm1 + 0.05, (arm0, arm1)
    for norm, favoured in (("minmax", False), ("window", True)):
        bandit = Exp3Bandit(2, gamma=0.1, reward_norm=norm)
        for t, r in enumerate(raw):
            arm = t % 2
            bandit.update(arm, r, bandit.probabilities()[arm])
        p = bandit.probabilities()
        assert (p[0] > p[1]) == favoured, (norm, p)  # min–max even leans to the worse arm here


def test_bandit_state_keeps_its_normalisation():
    bandit = Exp3Bandit(3, 0.2, reward_norm="window", window=5)
    restored = Exp3Bandit.from_state(json.loads(json.dumps(bandit.state_dict())))
    assert (restored.reward_norm, restored.window) == ("window", 5)
    old = bandit.state_dict()
    del old["reward_norm"], old["window"]  # a checkpoint written before the switch existed
    assert Exp3Bandit.from_state(old).reward_norm == "minmax"


# ----------------------------------------------------------------------------- reducible utility


def test_reducible_ranks_by_u_minus_the_floor_and_keeps_u():
    u = np.array([5.0, 4.0, 3.0, 2.0], np.float32)
    floor = np.array([4.9, 1.0, 2.5, np.nan], np.float32)  # sample 0: hard but irreducible (noise)
    cluster, task = np.zeros(4, np.int16), np.zeros(4, np.int32)
    paper = UtilityTable(u, cluster, task)
    reducible = UtilityTable(u, cluster, task, floor=floor)
    assert paper.top_k(0, {0: 2}, cap=4)[0][0].tolist() == [0, 1]
    picked, keys = reducible.top_k(0, {0: 2}, cap=4)[0]
    assert picked.tolist() == [1, 3] and keys.tolist() == pytest.approx([3.0, 2.0])  # NaN floor = 0
    reducible.apply(np.array([1]), np.array([1.5]), -0.1, 0.0, 0)
    assert reducible.u[1] == pytest.approx(1.4)  # U itself follows IDU as always
    again = UtilityTable.from_bytes(reducible.to_bytes())
    assert np.array_equal(again.floor, reducible.floor)
    assert reducible.nbytes() == paper.nbytes() + 16


def test_total_rank_weighs_the_key_by_answer_tokens_and_keeps_u():
    u = np.array([6.0, 2.0, 3.0, 1.0], np.float32)  # sample 0: a high mean loss over a 3-token answer
    tokens = np.array([3, 40, 10, 200], np.float32)
    cluster, task = np.zeros(4, np.int16), np.zeros(4, np.int32)
    mean = UtilityTable(u, cluster, task)
    total = UtilityTable(u, cluster, task, weight=tokens)
    assert mean.top_k(0, {0: 2}, cap=4)[0][0].tolist() == [0, 2]
    picked, keys = total.top_k(0, {0: 2}, cap=4)[0]
    assert picked.tolist() == [3, 1] and keys.tolist() == pytest.approx([200.0, 80.0])
    floored = UtilityTable(u, cluster, task, floor=np.array([0.0, 1.5, 0.0, 0.9], np.float32), weight=tokens)
    assert floored.rank_key(np.arange(4)).tolist() == pytest.approx([18.0, 20.0, 30.0, 20.0])  # (U − floor)·n
    total.apply(np.array([3]), np.array([0.5]), 0.0, 0.0, 0)
    assert total.u[3] == pytest.approx(0.5)  # U stays a mean per token; only the ranking weighs it
    again = UtilityTable.from_bytes(total.to_bytes())
    assert np.array_equal(again.weight, total.weight) and again.floor is None
    assert total.nbytes() == mean.nbytes() + 16


@given(
    st.lists(st.floats(0.1, 10.0), min_size=2, max_size=30),
    st.integers(0, 8),
)
def test_total_rank_with_equal_answer_lengths_ranks_as_the_paper(us, power):
    n = 2.0**power  # a power of two: the products are exact, so no new ties
    u = np.asarray(us, np.float32)
    cluster, task = np.zeros(len(u), np.int16), np.zeros(len(u), np.int32)
    k = len(u) // 2 or 1
    mean = UtilityTable(u, cluster, task).top_k(0, {0: k}, cap=4)[0][0]
    total = UtilityTable(u, cluster, task, weight=np.full(len(u), n)).top_k(0, {0: k}, cap=4)[0][0]
    assert mean.tolist() == total.tolist()


@given(st.lists(st.integers(0, 2000), min_size=1, max_size=60))
def test_saturating_rank_weights_rise_with_length_and_stay_within_twice_the_medians(tokens):
    from lead_ray.core.utility import rank_weights

    n = np.asarray(tokens)
    w = rank_weights(n, "saturating").astype(np.float64)
    order = np.argsort(n, kind="stable")
    assert np.all(np.diff(w[order]) >= 0) and np.all((w >= 0) & (w < 1))  # longer never weighs less
    at_median = n == np.median(n)
    if np.median(n) >= 1 and at_median.any():  # a median-length answer weighs 1/2, so none weighs twice as much
        assert np.allclose(w[at_median], 0.5)
    assert rank_weights(n, "mean") is None and rank_weights(n, "total").tolist() == n.astype(np.float32).tolist()
    with pytest.raises(ValueError, match="saturating"):
        rank_weights(n, "longest")


def test_saturating_rank_keeps_a_short_high_loss_answer_behind_a_typical_one_but_caps_the_longest():
    """Where the weights sit between the paper's mean and 'total': a 3-token answer with twice the loss loses
    to a median-length one (as under total), and a 10x-longer answer with half the loss no longer wins on length."""
    from lead_ray.core.utility import rank_weights

    u = np.array([4.0, 2.0, 1.0], np.float32)  # a short high-loss answer, a median one, a very long one
    tokens = np.array([3, 60, 600])
    cluster, task = np.zeros(3, np.int16), np.zeros(3, np.int32)
    mean = UtilityTable(u, cluster, task).top_k(0, {0: 1}, cap=4)[0][0].tolist()
    total = UtilityTable(u, cluster, task, weight=rank_weights(tokens, "total")).top_k(0, {0: 1}, cap=4)[0][0]
    saturating = UtilityTable(u, cluster, task, weight=rank_weights(tokens, "saturating")).top_k(0, {0: 1}, cap=4)
    assert (mean, total.tolist(), saturating[0][0].tolist()) == ([0], [2], [1])


def test_per_sample_deltas_enter_idu_one_by_one():
    table = UtilityTable(np.full(3, 2.0, np.float32), np.zeros(3, np.int16), np.zeros(3, np.int32))
    table.apply(np.array([0, 1, 2]), np.array([1.0, 1.0, np.nan]), np.array([-0.5, 0.25, 9.0]), 0.0, 0)
    assert table.u.tolist() == [0.5, 1.25, 2.0]  # the NaN-loss sample keeps U whatever its delta


# ----------------------------------------------------------------------------- whole runs on the toy pool


def test_paper_preset_reproduces_the_stored_toy_run(ray_session, tmp_path):
    """The stored run was made before any switch existed (tests/paper_run.py)."""
    from lead_ray.online.run import run
    from tests.paper_run import FIXTURE, fingerprint
    from tests.test_online import toy_config, toy_pool

    toy_pool(tmp_path)
    cfg = toy_config(tmp_path, 1)
    cfg.selection.preset = "paper"
    run(cfg)
    got, stored = fingerprint(tmp_path / "run"), json.loads(FIXTURE.read_text())
    assert [(r["arm"], r["index"]) for r in got["rounds"]] == [(r["arm"], r["index"]) for r in stored["rounds"]]
    assert got["selected_ids"] == stored["selected_ids"]
    # float32 sums: the same code in a fresh environment (2026-11-24) moved round 10's ΔL̂′ of 1.4e-5 nats by
    # 1.1e-5 relative; picks must match exactly, values to float32 accumulation noise
    for key in ("delta", "mean_loss"):
        np.testing.assert_allclose([r[key] for r in got["rounds"]], [r[key] for r in stored["rounds"]], rtol=1e-4)
    np.testing.assert_allclose(got["u"], stored["u"], rtol=1e-4)


def test_the_run_remedies_work_together_with_per_sample_deltas_and_no_extra_forward(ray_session, tmp_path):
    """The three remedies a run applies (the robust preset before 2026-11-24), on the toy pool's clusters."""
    import pyarrow.parquet as pq

    from lead_ray.online.run import run
    from lead_ray.presets import Switches
    from tests.test_online import toy_config, toy_pool

    toy_pool(tmp_path)
    cfg = toy_config(tmp_path, 1)
    cfg.selection.preset = "paper"
    cfg.selection.reward_norm, cfg.selection.delta, cfg.selection.utility = "window", "sample", "reducible"
    stats = run(cfg)
    assert stats["switches"] == Switches("kmeans", "keep", "window", "sample", "reducible", "mean", "count").to_dict()
    rounds = pq.read_table(tmp_path / "run" / "rounds.parquet").to_pylist()
    for r in rounds:  # reducible and per-sample ΔL̂′ add no forward pass: the model saw only the round's samples
        assert r["forward_samples"] - r["padding_samples"] == r["size"] == r["trained"]
    assert rounds[0]["delta_mode"] == "round" and rounds[0]["delta"] == 0.0  # no direction before round 1 ends
    later = [r for r in rounds[1:] if r["delta_mode"] == "sample"]
    assert len(later) == len(rounds) - 1
    assert all(r["delta_sample_sd"] > 0 for r in later)  # the samples of a round get different ΔL̂′
    assert all(r["ghost_s"] < r["train_s"] for r in later)
    # the noise arm's samples carry a high irreducible floor: ranked by U − floor, the learnable arm wins
    assert sum(r["arm"] == 0 for r in rounds) >= 5


def test_update_delta_runs_per_sample_and_is_far_larger_than_the_gradient_one(ray_session, tmp_path):
    """`selection.delta: update` on the toy pool: per-sample values from the training pass (no extra forward),
    against the predicted parameter change: under Adam, orders of magnitude above −η⟨g(x), ĝ⟩."""
    import pyarrow.parquet as pq

    from lead_ray.online.run import run
    from tests.test_online import toy_config, toy_pool

    toy_pool(tmp_path)
    spread = {}
    for delta in ("sample", "update"):
        cfg = toy_config(tmp_path, 1)
        cfg.selection.delta, cfg.selection.max_rounds = delta, 4
        run(cfg, run_dir=str(tmp_path / f"run-{delta}"))
        rounds = pq.read_table(tmp_path / f"run-{delta}" / "rounds.parquet").to_pylist()
        assert [r["delta_mode"] for r in rounds] == ["round"] + [delta] * (len(rounds) - 1)
        for r in rounds:
            assert r["forward_samples"] - r["padding_samples"] == r["size"] == r["trained"]
        spread[delta] = np.mean([r["delta_sample_sd"] for r in rounds[1:]])
    assert spread["update"] > 30 * spread["sample"], spread  # 124x here


@pytest.mark.parametrize("rank_by", ["mean", "total", "saturating"])
def test_a_run_ranks_by_u_times_answer_tokens_only_with_total(ray_session, rank_by):
    """The wiring of selection.rank_by: the store a run starts ranks by U · n_response_tokens, by U · n/(n+m)
    (m the median n, 3 here), or by U."""
    import pyarrow as pa
    import ray

    from lead_ray.online.run import _start_actors

    table = pa.table(
        {
            "iu0": pa.array([2.0, 3.0, 4.0], pa.float32()),
            "difficulty_cluster": [0, 0, 0],
            "task_cluster": [0, 0, 1],
            "warm_loss": pa.array([1.0, 1.0, 1.0], pa.float32()),
            "n_response_tokens": pa.array([10, 1, 3], pa.int32()),
        }
    )
    cfg = load_config(None, [f"selection.rank_by={rank_by}"])
    store, bandit, n_arms = _start_actors(cfg, table, f"rank-{rank_by}")
    keys, used = store.ranking(np.arange(3))
    expected = {"total": [20.0, 3.0, 12.0], "saturating": [2 * 10 / 13, 3 * 1 / 4, 4 * 3 / 6], "mean": [2.0, 3.0, 4.0]}
    expected = expected[rank_by]
    assert n_arms == 1 and keys.tolist() == pytest.approx(expected) and used.tolist() == [0, 0, 0]
    for handle in [*store.handles, bandit]:
        ray.kill(handle)


def test_a_run_refuses_a_pool_clustered_with_other_switches(tmp_path):
    from lead_ray.config import ConfigError
    from lead_ray.online.checks import check_clustering

    (tmp_path / "clustered").mkdir()
    summary = tmp_path / "clustered" / "clusters.json"
    summary.write_text(json.dumps({"rows_in": 10}))  # clustered before the switches existed: the paper's
    check_clustering(load_config(None, [f"work_dir={tmp_path}", "selection.preset=paper"]))
    with pytest.raises(ConfigError, match=r"cluster.difficulty_bins=kmeans.*--set selection.preset=paper"):
        check_clustering(load_config(None, [f"work_dir={tmp_path}"]))  # the default: quantile arms
    summary.write_text(json.dumps({"difficulty_bins": "quantile", "ifd_above_one": "keep"}))
    check_clustering(load_config(None, [f"work_dir={tmp_path}"]))
    with pytest.raises(ConfigError, match="cluster.ifd_above_one=keep") as refused:
        check_clustering(load_config(None, [f"work_dir={tmp_path}", "cluster.ifd_above_one=drop"]))
    assert "selection.preset=paper" not in str(refused.value)  # the hint is for the default's arms only
    with pytest.raises(ConfigError, match="cluster.end_nll_above=None, this run asks for 13.8.*end_nll_above=null"):
        check_clustering(load_config(None, [f"work_dir={tmp_path}", "cluster.end_nll_above=13.8"]))
    summary.write_text(json.dumps({"difficulty_bins": "quantile", "ifd_above_one": "keep", "end_nll_above": 13.8}))
    check_clustering(load_config(None, [f"work_dir={tmp_path}", "cluster.end_nll_above=13.8"]))
    with pytest.raises(ConfigError, match="end_nll_above=13.8"):
        check_clustering(load_config(None, [f"work_dir={tmp_path}"]))


def test_a_tune_trial_that_changes_the_preset_reclusters():
    from lead_ray.tune import _own_clustering

    paper = load_config(None, ["selection.preset=paper"])
    robust = load_config(None)  # the default
    assert _own_clustering(paper, robust, {"selection.preset": "robust"})
    assert _own_clustering(robust, paper, {"selection.preset": "paper"})
    assert not _own_clustering(paper, paper, {"selection.smoothing_b": 0.3})
    assert _own_clustering(paper, paper, {"cluster.task_k": 2})
    robust_on_kmeans = load_config(None, ["selection.preset=robust", "cluster.difficulty_bins=kmeans"])
    assert not _own_clustering(paper, robust_on_kmeans, {"selection.preset": "robust"})


def test_learnability_ranks_against_the_anchor_model_with_no_extra_forward(ray_session, tmp_path):
    """`selection.utility: learnability` on the toy pool: the anchor model's loss (a column `lead-ray score` writes
    once models/anchor exists) is the floor. Half of every task group has answers the anchor model finds as
    surprising as the base model does (nothing left to learn: 5.4 of 5.6 nats); ranked by U − floor they are never
    picked, and the run's model sees only each round's samples."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from lead_ray.config import ConfigError
    from lead_ray.online.run import run
    from tests.test_online import toy_config, toy_pool

    toy_pool(tmp_path)
    path = tmp_path / "clustered" / "pool" / "part-0.parquet"
    pool = pq.read_table(path)
    cfg = toy_config(tmp_path, 1)
    cfg.selection.utility, cfg.selection.max_rounds = "learnability", 3
    with pytest.raises(ConfigError, match="no column anchor_loss.*lead-ray anchor"):
        run(cfg, run_dir=str(tmp_path / "refused"))
    unlearnable = np.arange(pool.num_rows) % 4 < 2  # half of each task group (task_cluster = row % 2)
    for name in ("anchor_loss", "anchor_content"):
        pool = pool.append_column(name, pa.array(np.where(unlearnable, 5.4, 0.5).astype(np.float32)))
    pq.write_table(pool, path)
    stats = run(cfg)
    assert stats["switches"]["utility"] == "learnability"
    rounds = pq.read_table(tmp_path / "run" / "rounds.parquet").to_pylist()
    for r in rounds:
        assert r["forward_samples"] - r["padding_samples"] == r["size"] == r["trained"]
    picked = set(pq.read_table(tmp_path / "run" / "selected.parquet")["id"].to_pylist())
    high = set(np.array(pool["id"].to_pylist())[unlearnable].tolist())
    assert len(picked) >= 16 and not picked & high
