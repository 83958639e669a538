"""cluster.end_z_above's pure part (core/gate.py): each source group judged against its own iu0_end spread."""

import numpy as np
import pytest

from lead_ray.core.gate import END_FLOOR, MIN_GROUP, group_thresholds, keep_below, robust_sigma


def test_a_threshold_fine_for_one_source_drops_only_the_others_outliers():
    # source 0 (GSM8K-like): every answer ends where the base model does not expect, ~10 nats; source 1: ~3 nats,
    # with three answers cut off mid-sentence at 12 nats
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.normal(10, 1, 200), rng.normal(3, 1, 200), [12.0, 12.5, 13.0]])
    groups = np.array([0] * 200 + [1] * 203)
    keep = keep_below(values, groups, group_thresholds(values, groups, 2, z=3.5))
    assert keep[:200].all()  # no GSM8K-like answer dropped
    assert not keep[-3:].any() and keep[200:400].all()  # exactly the other source's outliers
    absolute = values <= 11.0  # one absolute threshold that catches the three drops the first source's tail
    assert (~absolute[:200]).sum() > 5


def test_small_groups_use_the_pool_and_nan_is_kept_and_the_floor_holds():
    values = np.array([1.0] * 40 + [2.0] * 40 + [30.0, np.nan])
    groups = np.array([0] * 40 + [1] * 40 + [2, 2])  # group 2 has one scored pair: judged against the pool
    thresholds = group_thresholds(values, groups, 3, z=3.5)
    # groups 0 and 1: every value equal, MAD 0 and mean deviation 0: the floor decides
    assert thresholds[0] == thresholds[1] == pytest.approx(END_FLOOR)
    median, sigma = robust_sigma(values)
    assert thresholds[2] == pytest.approx(max(END_FLOOR, median + 3.5 * sigma))
    keep = keep_below(values, groups, thresholds)
    assert keep[:80].all() and not keep[80] and keep[81]  # 30 nats is out; NaN (no end token) stays
    assert MIN_GROUP > 1


def test_robust_sigma_falls_back_to_the_mean_deviation_when_the_mad_is_zero():
    x = np.array([5.0] * 9 + [15.0])  # MAD 0; mean absolute deviation 1.0
    assert robust_sigma(x) == pytest.approx((5.0, 1.2533))
    assert robust_sigma(np.array([1.0, 2.0, 3.0, 4.0, 100.0])) == pytest.approx((3.0, 1.4826))
    assert np.isnan(robust_sigma(np.array([np.nan]))[0])
