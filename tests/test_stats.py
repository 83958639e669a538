"""The benchmark's confidence intervals: known distributions give the known intervals."""

import numpy as np
import pytest

from lead_ray.eval.stats import mean_ci, paired_diff, pooled_mean_ci, pooled_paired_diff, verdict


def test_mean_ci_of_a_normal_sample_is_the_textbook_interval():
    x = np.random.default_rng(0).normal(10.0, 2.0, 4000)
    got = mean_ci(x)
    half = 1.96 * x.std(ddof=1) / np.sqrt(len(x))  # ≈ 0.062
    assert got["mean"] == pytest.approx(x.mean())
    assert got["ci"][0] == pytest.approx(x.mean() - half, abs=0.01) and got["ci"][1] == pytest.approx(
        x.mean() + half, abs=0.01
    )
    assert got["n"] == 4000


def test_mean_ci_of_accuracy_and_degenerate_inputs():
    hits = np.r_[np.ones(300), np.zeros(700)]  # accuracy 0.3 over 1000 items: ±1.96·sqrt(.21/1000) ≈ ±0.028
    lo, hi = mean_ci(hits)["ci"]
    assert lo == pytest.approx(0.3 - 0.028, abs=0.006) and hi == pytest.approx(0.3 + 0.028, abs=0.006)
    assert mean_ci([np.nan, 2.0, 2.0])["ci"] == [2.0, 2.0]  # NaN items left out; no spread, no interval
    assert mean_ci([np.nan])["n"] == 0


def test_paired_difference_finds_a_shift_that_unpaired_noise_would_hide():
    rng = np.random.default_rng(1)
    item = rng.normal(3.0, 1.0, 300)  # item difficulty dominates the spread
    a = item + rng.normal(0, 0.05, 300)
    b = item + 0.03 + rng.normal(0, 0.05, 300)  # b is worse (higher NLL) by 0.03
    d = paired_diff(a, b, higher_is_better=False, names=("lead", "random"))
    assert d["mean"] == pytest.approx(-0.03, abs=0.01) and d["ci"][1] < 0 and d["better"] == "lead"
    assert mean_ci(a)["ci"][1] > mean_ci(b)["ci"][0]  # unpaired, the intervals overlap
    same = paired_diff(a, a + rng.normal(0, 0.05, 300), higher_is_better=False)
    assert same["ci"][0] < 0 < same["ci"][1] and same["better"] == "none"
    with pytest.raises(ValueError, match="same items"):
        paired_diff(a, b[:-1], higher_is_better=False)


def test_verdict_follows_the_metric_direction():
    assert verdict([0.01, 0.05], higher_is_better=True, names=("lead", "random")) == "lead"
    assert verdict([0.01, 0.05], higher_is_better=False, names=("lead", "random")) == "random"
    assert verdict([-0.01, 0.05], higher_is_better=True, names=("lead", "random")) == "none"


def test_pooled_difference_widens_with_seed_noise():
    rng = np.random.default_rng(2)
    item = rng.normal(3.0, 1.0, 200)
    a = np.stack([item + rng.normal(0, 0.05, 200) for _ in range(5)])
    b = a + 0.02  # same runs, b worse by exactly 0.02 everywhere
    tight = pooled_paired_diff(a, b, higher_is_better=False, names=("lead", "random"))
    assert tight["mean"] == pytest.approx(-0.02) and tight["ci"] == pytest.approx([-0.02, -0.02])
    assert tight["better"] == "lead" and tight["seeds"] == 5 and tight["n"] == 200
    # seed effects of ±0.05 on b: the same mean shift is no longer resolved with 5 seeds
    noisy = b + rng.choice([-0.05, 0.05], size=(5, 1))
    wide = pooled_paired_diff(a, noisy, higher_is_better=False)
    assert wide["ci"][1] - wide["ci"][0] > 0.04 and len(wide["per_seed"]) == 5
    # items no run could score are left out of every seed
    a2 = a.copy()
    a2[0, :10] = np.nan
    assert pooled_paired_diff(a2, b, higher_is_better=False)["n"] == 190


def test_pooled_mean_ci_over_seeds_and_items():
    rng = np.random.default_rng(3)
    x = rng.normal(0.5, 0.1, (4, 500)) + rng.normal(0, 0.05, (4, 1))  # item noise and a seed effect
    got = pooled_mean_ci(x)
    assert got["mean"] == pytest.approx(x.mean()) and got["seeds"] == 4 and got["n"] == 500
    assert got["ci"][0] < x.mean() < got["ci"][1]
    items_only = mean_ci(x.mean(axis=0))["ci"]
    assert got["ci"][1] - got["ci"][0] > items_only[1] - items_only[0]  # seed noise widens it
    one = pooled_mean_ci(x[:1])
    assert one["seeds"] == 1 and one["ci"] == pytest.approx(mean_ci(x[0])["ci"])


def test_seed_t_interval_is_the_textbook_one_and_both_intervals_must_agree():
    from lead_ray.eval.stats import seed_t_interval

    per_seed = [-0.10, -0.02, -0.06]  # mean −0.06, sd 0.04, t(0.975; 2) = 4.3027
    lo, hi = seed_t_interval(per_seed)
    assert (lo, hi) == pytest.approx((-0.06 - 4.3027 * 0.04 / np.sqrt(3), -0.06 + 4.3027 * 0.04 / np.sqrt(3)), abs=1e-4)
    # three seeds, one item effect each: the bootstrap over seeds × items excludes 0, the t-interval over the
    # three per-seed means does not, so the verdict is "none"
    rng = np.random.default_rng(5)
    a = rng.normal(2.0, 0.01, (3, 400))
    b = a - np.array([-0.10, -0.005, -0.06])[:, None]
    d = pooled_paired_diff(a, b, higher_is_better=False, names=("lead", "random"))
    assert d["ci"][1] < 0 and d["seed_t_interval"][0] < 0 < d["seed_t_interval"][1]
    assert d["better"] == "none" and 0.05 < d["seed_t_p"] < 1


def test_holm_adjusts_step_down_and_keeps_order():
    from lead_ray.eval.stats import holm

    got = holm({"a": 0.01, "b": 0.04, "c": 0.03, "d": 0.5})
    # sorted 0.01, 0.03, 0.04, 0.5 → ×4, ×3, ×2, ×1 with a running maximum
    assert got == pytest.approx({"a": 0.04, "c": 0.09, "b": 0.09, "d": 0.5})
    assert holm({"x": 0.6, "y": 0.7}) == pytest.approx({"x": 1.0, "y": 1.0})


def test_variance_components_recover_known_spreads_and_mde_matches_hand_sums():
    from scipy.stats import norm, t

    from lead_ray.eval.stats import mde, variance_components

    rng = np.random.default_rng(7)
    seeds, items = 400, 300
    d = rng.normal(0, 0.05, (seeds, 1)) + rng.normal(0, 0.2, (1, items)) + rng.normal(0, 0.1, (seeds, items))
    c = variance_components(d)
    assert c["seed"] == pytest.approx(0.05, rel=0.1) and c["item"] == pytest.approx(0.2, rel=0.1)
    assert c["interaction"] == pytest.approx(0.1, rel=0.02) and (c["seeds"], c["items"]) == (seeds, items)
    spread = {"seed": 0.03, "item": 0.2, "interaction": 0.15}
    got = mde(spread, seeds=5, items=200)
    t_hand = (t.ppf(0.975, 4) + t.ppf(0.8, 4)) * np.sqrt((0.03**2 + 0.15**2 / 200) / 5)
    z_hand = (norm.ppf(0.975) + norm.ppf(0.8)) * np.sqrt(0.03**2 / 5 + 0.2**2 / 200 + 0.15**2 / 1000)
    assert got["t"] == pytest.approx(t_hand) and got["bootstrap"] == pytest.approx(z_hand)
    assert got["nats"] == pytest.approx(max(t_hand, z_hand))
    assert mde(spread, seeds=10, items=200)["nats"] < got["nats"]  # more seeds: a smaller detectable difference
