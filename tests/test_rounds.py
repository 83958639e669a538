"""online/rounds.py: a round's record, its progress line and the time-left estimate (pure, no Ray)."""

import numpy as np

from lead_ray.online.rounds import RoundPlan, RoundTotals, TrainedRound, eta_seconds, progress_line, round_record


def _record(round_, unique, elapsed_s):
    return {"round": round_, "unique": unique, "elapsed_s": elapsed_s}


def test_eta_counts_rounds_left_at_the_mean_round_time():
    # 4 rounds done in 40 s, 16 of 20 left: 160 s
    assert eta_seconds(_record(3, 40, 40.0), 0, 20, 10_000, paced_by_budget=True) == 160.0
    # resumed at round 2: only the 2 rounds run since count towards the pace
    assert eta_seconds(_record(3, 40, 40.0), 2, 20, 10_000, paced_by_budget=True) == 320.0


def test_eta_stops_where_the_budget_runs_out_unless_the_subset_is_fixed():
    # 10 new samples a round, 20 of a 60 budget used: 4 rounds left by the budget, not 16 by the limit
    assert eta_seconds(_record(1, 20, 20.0), 0, 18, 60, paced_by_budget=True) == 40.0
    assert eta_seconds(_record(1, 20, 20.0), 0, 18, 60, paced_by_budget=False) == 160.0
    assert eta_seconds(_record(17, 60, 180.0), 0, 18, 60, paced_by_budget=True) == 0.0  # the last round


def test_round_record_counts_and_per_sample_deltas():
    plan = RoundPlan(np.arange(6), 2, [0.2, 0.3, 0.5], 1e-4, -0.01, None, 0.05)
    trained = TrainedRound(8, 2, 3, None, 1.5, 0.1, 0.2, sample_deltas=np.array([0.1, 0.3]))
    totals = RoundTotals(8, 2, 0, 6, 12.0, 40, {0: 1.0})
    record = round_record(4, "lead", "update", plan, trained, totals, None, 50, 99.0)
    assert record["size"] == 6 and record["trained"] == 6 and record["mean_loss"] == 2.0
    assert record["delta_mode"] == "update" and np.isclose(record["delta_sample_mean"], 0.2)
    assert record["heldout_forward_samples"] == 0  # no held-out pass this round: none counted
    assert record["beta"] is None and record["unique"] == 40
    per_round = round_record(4, "lead", "update", plan, TrainedRound(8, 2, 3, None, 1.5, 0.1, 0.2), totals, 1.7, 50, 1)
    assert per_round["delta_mode"] == "round" and per_round["heldout_forward_samples"] == 50
    line = progress_line({**record, "reward_raw": 0.5, "reward_norm": 1.0}, plan, 20, 60, 12.0)
    assert "round 5/20: arm 2 (p=0.500)" in line and "unique 40/60" in line and "ETA 12 s" in line
