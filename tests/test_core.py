"""The pure core against LEAD spec §12: IDU recursion, ΔL̂′, EXP3, selection. No Ray."""

import ast
from pathlib import Path

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from lead_ray.core import idu
from lead_ray.core.bandit import Exp3Bandit, normalise_reward
from lead_ray.core.idu import DirectionMemory, idu_update, mixed_sq_norm, optimal_beta, predict_delta
from lead_ray.core.select import first_round_sizes, merge_top_k, quotas_for, select_round, top_k_by_u
from lead_ray.core.utility import UtilityTable

finite = st.floats(-50, 50, allow_nan=False)
positive = st.floats(0, 50, allow_nan=False)
unit = st.floats(0, 1)
vec = st.integers(1, 16).flatmap(lambda n: st.lists(st.floats(-10, 10, allow_nan=False), min_size=n, max_size=n))


def test_core_imports_only_numpy_stdlib_and_itself():
    allowed = {"numpy", "__future__", "dataclasses", "pathlib", "io"}
    for path in Path("lead_ray/core").glob("*.py"):
        tree = ast.parse(path.read_text())
        names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        names |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        outside = {m for m in names if m.split(".")[0] not in allowed and not m.startswith("lead_ray.core")}
        assert not outside, (path, outside)


# ----------------------------------------------------------------------------- IDU recursion


@given(u=finite, loss=finite)
def test_b0_no_delta_gives_loss_and_b1_keeps_u(u, loss):
    assert idu_update(np.array(u), np.array(loss), 0.0, 0.0) == pytest.approx(loss)
    assert idu_update(np.array(u), np.array(loss), -3.0, 1.0) == pytest.approx(u)


@given(u=finite, loss=finite, b=unit)
def test_without_delta_u_is_between_prev_and_loss(u, loss, b):
    new = float(idu_update(np.array(u), np.array(loss), 0.0, b))
    assert min(u, loss) - 1e-9 <= new <= max(u, loss) + 1e-9


@given(u=finite, l1=finite, l2=finite, b=st.floats(0, 0.999), delta=st.floats(-5, 0))
def test_u_is_monotone_in_loss(u, l1, l2, b, delta):
    lo, hi = sorted((l1, l2))
    assert idu_update(np.array(u), np.array(lo), delta, b) <= idu_update(np.array(u), np.array(hi), delta, b) + 1e-12


# ----------------------------------------------------------------------------- ΔL̂′


@given(eta=st.floats(0, 1), gk=st.one_of(st.none(), vec), gp=st.one_of(st.none(), vec))
@example(eta=1.0, gk=[5.0], gp=[-2.0])  # opposite directions: ‖β*g_k + (1−β*)g_p‖² rounds to −1e-15
def test_delta_is_never_positive(eta, gk, gp):
    if gk is not None and gp is not None and len(gk) != len(gp):
        gp = (gp * len(gk))[: len(gk)]
    est = predict_delta(eta, None if gk is None else np.array(gk), None if gp is None else np.array(gp))
    assert est.delta <= 0 and 0 <= est.beta <= 1


def test_round_one_and_first_visit_edge_cases():
    assert predict_delta(0.1, None, None).delta == 0.0
    assert predict_delta(0.1, np.zeros(3), np.zeros(3)).delta == 0.0
    est = predict_delta(0.5, None, np.array([3.0, 4.0]))  # cluster never visited: previous direction only
    assert est.delta == pytest.approx(-0.5 * 25) and est.beta == 0.0


@given(d=positive, eta=st.floats(0, 1))
def test_parallel_equal_directions_give_minus_eta_d_squared(d, eta):
    g = np.array([d, 0.0])
    assert predict_delta(eta, g, g.copy()).delta == pytest.approx(-eta * d * d, rel=1e-9, abs=1e-9)


@given(d_k=positive, d_p=positive, cos=st.floats(-1, 1))
def test_beta_star_minimises_over_a_grid(d_k, d_p, cos):
    beta = optimal_beta(d_k, d_p, cos)
    assert 0 <= beta <= 1
    best = mixed_sq_norm(beta, d_k, d_p, cos)
    for b in np.linspace(0, 1, 201):
        assert best <= mixed_sq_norm(b, d_k, d_p, cos) + 1e-9 * (1 + d_k * d_k + d_p * d_p)


@given(seed=st.integers(0, 10_000), dim=st.integers(1, 32), beta=unit)
def test_closed_form_equals_explicit_vector_mix(seed, dim, beta):
    rng = np.random.default_rng(seed)
    gk, gp = rng.standard_normal(dim), rng.standard_normal(dim)
    dk, dp = np.linalg.norm(gk), np.linalg.norm(gp)
    cos = gk @ gp / (dk * dp)
    explicit = np.linalg.norm(beta * gk + (1 - beta) * gp) ** 2
    assert mixed_sq_norm(beta, dk, dp, cos) == pytest.approx(explicit, rel=1e-9, abs=1e-9)
    est = predict_delta(0.01, gk, gp)
    assert est.delta == pytest.approx(-0.01 * np.linalg.norm(est.beta * gk + (1 - est.beta) * gp) ** 2, rel=1e-6)


def test_direction_memory_latest_vs_first_and_round_trip():
    for visit, expected in (("latest", [0.0, 2.0]), ("first", [1.0, 0.0])):
        m = DirectionMemory(visit)
        m.record(3, np.array([1.0, 0.0]))
        m.record(5, np.array([0.0, 1.0]))
        m.record(3, np.array([0.0, 2.0]))
        assert m.by_cluster[3].tolist() == expected and m.previous.tolist() == [0.0, 2.0]
        again = DirectionMemory.from_state(m.state_dict())
        assert again.estimate(3, 0.1) == m.estimate(3, 0.1)
    with pytest.raises(ValueError):
        DirectionMemory("middle")


# ----------------------------------------------------------------------------- EXP3


@given(log_w=st.lists(st.floats(-700, 700), min_size=1, max_size=12), gamma=st.floats(0.01, 1))
def test_probabilities_sum_to_one_with_floor(log_w, gamma):
    b = Exp3Bandit(len(log_w), gamma)
    b.log_w = np.array(log_w)
    p = b.probabilities()
    assert p.sum() == pytest.approx(1.0) and (p >= gamma / len(log_w) - 1e-12).all()


def test_zero_reward_leaves_weights_and_only_pulled_arm_changes():
    b = Exp3Bandit(7, 0.1)
    b.update(2, 0.5, 1 / 7)  # first reward is used raw
    w = b.log_w.copy()
    assert (w[np.arange(7) != 2] == 0).all() and w[2] > 0
    b.update(4, 0.5, 0.2)  # history [0.5, 0.5]: all equal → normalised 0
    assert (b.log_w == w).all()
    b.update(4, 1.5, 0.2)
    assert (b.log_w[np.arange(7) != 4] == w[np.arange(7) != 4]).all() and b.log_w[4] > 0


@given(history=st.lists(finite, max_size=30), raw=finite)
def test_normalised_reward_in_range_and_never_crashes(history, raw):
    r = normalise_reward(history, raw)
    if history:
        assert -1 - 1e-9 <= r <= 1 + 1e-9
    else:
        assert r == raw


def test_best_bernoulli_arm_wins_over_20_seeds():
    means = np.linspace(0.2, 0.8, 7)
    shares = []
    for seed in range(20):
        rng, b = np.random.default_rng(seed), Exp3Bandit(7, 0.1)
        b.rewards = [0.0, 1.0]  # rewards live in [0, 1]: normalisation then leaves them as 2r − 1
        pulls = np.zeros(7)
        for _ in range(3000):
            arm, p = b.draw(rng)
            pulls[arm] += 1
            b.update(arm, float(rng.random() < means[arm]), p[arm])
        assert pulls.argmax() == 6, (seed, pulls)
        shares.append(pulls[6] / pulls.sum())
    assert np.mean(shares) > 1 / 7 + 0.2


def test_draw_respects_allowed_arms_and_round_trips():
    b = Exp3Bandit(3, 0.1)
    rng = np.random.default_rng(0)
    allowed = np.array([False, True, False])
    assert all(b.draw(rng, allowed)[0] == 1 for _ in range(20))
    b.update(1, 0.3, 0.5)
    again = Exp3Bandit.from_state(b.state_dict())
    assert (again.probabilities() == b.probabilities()).all() and again.rewards == b.rewards


# ----------------------------------------------------------------------------- selection


@settings(max_examples=200)
@given(
    seed=st.integers(0, 10_000),
    n=st.integers(0, 300),
    groups=st.integers(1, 6),
    rho=st.floats(0.0, 1.0),
    cap=st.integers(1, 4),
)
def test_stratified_top_k_with_cap(seed, n, groups, rho, cap):
    rng = np.random.default_rng(seed)
    u = rng.integers(0, 5, n).astype(float)  # many ties: the id decides
    use = rng.integers(0, 5, n)
    task = rng.integers(0, groups, n)
    picked = select_round(u, use, task, rho, cap)
    assert len(set(picked.tolist())) == len(picked) and (use[picked] < cap).all()
    for g in range(groups):
        members = np.flatnonzero((task == g) & (use < cap))
        k = int(np.floor(rho * len(members)))
        mine = picked[task[picked] == g]
        assert len(mine) == k
        expected = sorted(members.tolist(), key=lambda i: (-u[i], i))[:k]  # ties by position = by id
        assert sorted(mine.tolist()) == sorted(expected)


def test_selection_is_seeded_and_min_per_group():
    u, use, task = np.arange(10.0), np.zeros(10, int), np.array([0] * 5 + [1] * 5)
    a = select_round(u, use, task, 0.5, 4, np.random.default_rng(1))
    b = select_round(u, use, task, 0.5, 4, np.random.default_rng(1))
    assert (a == b).all() and sorted(a.tolist()) == [3, 4, 8, 9]
    assert select_round(u, use, task, 0.5, 4).tolist() == [4, 3, 9, 8]  # unshuffled: task, then U
    assert sorted(select_round(u, use, task, 0.0, 4, min_per_group=1).tolist()) == [4, 9]


@settings(max_examples=100)
@given(
    seed=st.integers(0, 10_000),
    n=st.integers(1, 400),
    arms=st.integers(1, 7),
    groups=st.integers(1, 5),
    rho=st.floats(0.0, 1.0),
    min_per_group=st.integers(0, 3),
)
def test_first_round_sizes_are_what_a_first_pull_selects(seed, n, arms, groups, rho, min_per_group):
    rng = np.random.default_rng(seed)
    cluster, task, u = rng.integers(0, arms, n), rng.integers(0, groups, n), rng.random(n)
    sizes = first_round_sizes(cluster, task, rho, min_per_group)
    assert set(sizes) == set(np.unique(cluster).tolist())
    for arm, k in sizes.items():
        members = np.flatnonzero(cluster == arm)
        picked = select_round(
            u[members], np.zeros(len(members), int), task[members], rho, 4, min_per_group=min_per_group
        )
        assert len(picked) == k


def test_first_round_sizes_show_tiny_arms():
    cluster = np.array([0] * 100 + [1] * 9)
    task = np.array([0, 1] * 50 + [0] * 9)
    assert first_round_sizes(cluster, task, 0.1) == {0: 10, 1: 0}
    assert first_round_sizes(cluster, task, 0.1, min_per_group=2) == {0: 10, 1: 2}


# ----------------------------------------------------------------------------- utility table and shards


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(1, 400), shards=st.integers(1, 4), rho=st.floats(0.01, 1.0))
def test_sharded_tables_select_exactly_what_one_table_selects(seed, n, shards, rho):
    rng = np.random.default_rng(seed)
    iu0 = rng.integers(0, 6, n).astype(np.float32)  # ties everywhere
    cluster, task = rng.integers(0, 3, n), rng.integers(0, 4, n)
    whole = UtilityTable(iu0, cluster, task)
    cuts = np.linspace(0, n, shards + 1).astype(int)
    parts = [UtilityTable(iu0[a:b], cluster[a:b], task[a:b], offset=a) for a, b in zip(cuts[:-1], cuts[1:])]
    for k in range(3):
        counts = {}
        for p in parts:
            for g, c in p.eligible_counts(k, 4).items():
                counts[g] = counts.get(g, 0) + c
        assert counts == whole.eligible_counts(k, 4)
        quotas = quotas_for(counts, rho)
        merged = merge_top_k([p.top_k(k, quotas, 4) for p in parts], quotas)
        members = np.flatnonzero(cluster == k)
        expected = members[select_round(iu0[members], np.zeros(len(members), int), task[members], rho, 4)]
        assert merged.tolist() == expected.tolist()


def test_table_updates_only_trained_samples_and_round_trips():
    t = UtilityTable(np.array([5.0, 4.0, 3.0, 2.0]), np.zeros(4, int), np.zeros(4, int), offset=10)
    before = t.u.copy()
    drop, n = t.apply(np.array([11, 13]), np.array([1.0, np.nan]), -0.5, 0.1, round_=0)
    assert n == 1 and drop == pytest.approx(4.0 - (0.9 * (1.0 - 0.5) + 0.1 * 4.0))
    assert t.u[[0, 2, 3]].tolist() == before[[0, 2, 3]].tolist()  # untrained and NaN-loss samples: bit-exact
    t.mark_used(np.array([11, 11, 12]))
    again = UtilityTable.from_bytes(t.to_bytes())
    for f in ("u", "use_count", "last_loss", "last_round", "cluster", "task"):
        assert np.array_equal(getattr(again, f), getattr(t, f), equal_nan=True)
    assert again.offset == 10 and t.nbytes() == 4 * (19 + 4)


@given(seed=st.integers(0, 1000), n=st.integers(1, 200), k=st.integers(0, 250))
def test_top_k_by_u_matches_full_sort(seed, n, k):
    u = np.random.default_rng(seed).integers(0, 4, n).astype(np.float32)
    pos = np.arange(n)
    assert top_k_by_u(u, pos, k).tolist() == sorted(pos.tolist(), key=lambda i: (-u[i], i))[:k]


@given(u=st.lists(st.floats(1, 10), min_size=1, max_size=20), drop=st.floats(0.01, 1), b=st.floats(0, 0.9))
def test_reward_is_positive_when_trained_losses_fall(u, drop, b):
    """Spec §12 'reward sign': losses below the stored U (ΔL̂′ ≤ 0) make the mean U decrease positive."""
    t = UtilityTable(np.array(u), np.zeros(len(u), int), np.zeros(len(u), int))
    total, n = t.apply(np.arange(len(u)), np.array(u) - drop, -0.001, b, round_=0)
    assert n == len(u) and total / n > 0


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.tuples(st.floats(-5, 5, allow_nan=False), st.booleans()), min_size=0, max_size=40), st.integers(0, 45)
)
def test_trim_to_budget_caps_new_samples(items, remaining):
    from lead_ray.core.select import trim_to_budget

    index = np.arange(100, 100 + len(items))
    u = np.array([x for x, _ in items], np.float32)
    new = np.array([n for _, n in items], bool)
    kept = trim_to_budget(index, u, new, remaining)
    pos = kept - 100
    assert int(new[pos].sum()) == min(remaining, int(new.sum()))  # exactly the budget's worth of new ones
    assert np.all(np.diff(pos) > 0)  # original order
    if 0 < len(kept) < len(index):  # everything kept ranks at or above everything dropped
        dropped = np.setdiff1d(np.arange(len(items)), pos)
        assert u[pos].min() >= u[dropped].max()


# ----------------------------------------------------------------------------- selection.trim_top


def test_trim_top_skips_the_highest_ranked_of_each_group_ties_by_position():
    # group 0: ten samples, U 9..0 with a tie at the skip boundary; group 1: five samples
    u = np.array([9, 8, 8, 7, 6, 5, 4, 3, 2, 1, 50, 40, 30, 20, 10], float)
    task = np.array([0] * 10 + [1] * 5)
    use = np.zeros(15, int)
    # τ = 0.2: group 0 skips ⌊2.0⌋ = 2 (U 9 and the first 8, by position), takes ⌊0.3·10⌋ = 3: the second 8, 7, 6;
    # group 1 skips ⌊1.0⌋ = 1 (U 50), takes ⌊1.5⌋ = 1: U 40
    assert select_round(u, use, task, 0.3, 4, trim_top=0.2).tolist() == [2, 3, 4, 11]
    # a skip never leaves less than the quota: ρ = 0.5 and τ = 0.6 of 5 → take 2 of the last 2 below a skip of 3
    assert select_round(u[10:], use[10:], task[10:] * 0, 0.5, 4, trim_top=0.6).tolist() == [3, 4]


@settings(max_examples=80, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(0, 300), groups=st.integers(1, 5), rho=st.floats(0.0, 1.0))
def test_trim_top_zero_is_todays_selection_bit_for_bit(seed, n, groups, rho):
    rng = np.random.default_rng(seed)
    u, use, task = rng.integers(0, 5, n).astype(float), rng.integers(0, 5, n), rng.integers(0, groups, n)
    today = select_round(u, use, task, rho, 3, np.random.default_rng(seed))
    assert select_round(u, use, task, rho, 3, np.random.default_rng(seed), trim_top=0.0).tolist() == today.tolist()


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    n=st.integers(1, 400),
    shards=st.integers(1, 4),
    rho=st.floats(0.01, 0.6),
    trim=st.floats(0.0, 0.39),
)
def test_sharded_trim_selects_exactly_what_one_table_selects(seed, n, shards, rho, trim):
    from lead_ray.core.select import skips_for

    rng = np.random.default_rng(seed)
    iu0 = rng.integers(0, 6, n).astype(np.float32)
    cluster, task = rng.integers(0, 3, n), rng.integers(0, 4, n)
    cuts = np.linspace(0, n, shards + 1).astype(int)
    parts = [UtilityTable(iu0[a:b], cluster[a:b], task[a:b], offset=a) for a, b in zip(cuts[:-1], cuts[1:])]
    for k in range(3):
        counts: dict[int, int] = {}
        for p in parts:
            for g, c in p.eligible_counts(k, 4).items():
                counts[g] = counts.get(g, 0) + c
        quotas = quotas_for(counts, rho)
        skips = skips_for(counts, quotas, trim)
        depth = {g: q + skips[g] for g, q in quotas.items()}
        merged = merge_top_k([p.top_k(k, depth, 4) for p in parts], quotas, skips)
        members = np.flatnonzero(cluster == k)
        ref = select_round(iu0[members], np.zeros(len(members), int), task[members], rho, 4, trim_top=trim)
        assert merged.tolist() == members[ref].tolist()
        assert len(merged) == sum(quotas.values())


def test_trim_top_and_rho_must_leave_something_to_take():
    from lead_ray.config import ConfigError, load_config

    assert load_config(None, ["selection.trim_top=0.15"]).selection.trim_top == 0.15
    with pytest.raises(ConfigError, match="'selection.trim_top' = 0.5 leaves nothing to take"):
        load_config(None, ["selection.rho=0.5", "selection.trim_top=0.5"])


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**16), n=st.integers(1, 30_000), dims=st.sampled_from([1, 7, 256, 4096]))
def test_a_sketch_is_linear_deterministic_and_never_longer_than_asked(seed, n, dims):
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=n).astype(np.float32), rng.normal(size=n).astype(np.float32)
    sa = idu.sketch(a, dims)
    assert sa.shape == (dims,) and np.array_equal(sa, idu.sketch(a.copy(), dims))
    assert np.allclose(idu.sketch(a + 2 * b, dims), sa + 2 * idu.sketch(b, dims), atol=1e-3)


def test_a_sketch_keeps_the_norms_and_angle_that_the_round_delta_reads():
    """ΔL̂′ of a round reads ‖g_k‖, ‖g_p‖ and their angle; a 4,096-number sketch of 300k-number directions keeps
    them within a few percent (spread ≈ √(2/4096) ≈ 2%), where the full ΔL̂′ differs between cluster pairs by far
    more."""
    rng = np.random.default_rng(0)
    g_k = rng.normal(size=300_000).astype(np.float32)
    g_p = (0.6 * g_k + 0.8 * rng.normal(size=g_k.size)).astype(np.float32)
    full, sketched = (
        idu.predict_delta(1e-3, g_k, g_p),
        idu.predict_delta(1e-3, idu.sketch(g_k, 4096), idu.sketch(g_p, 4096)),
    )
    assert sketched.delta == pytest.approx(full.delta, rel=0.05) and sketched.cos_phi == pytest.approx(
        full.cos_phi, abs=0.03
    )
    assert sketched.d_k == pytest.approx(full.d_k, rel=0.05) and sketched.beta == pytest.approx(full.beta, abs=0.1)
