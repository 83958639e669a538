"""Baselines: the static subsets (pure), and every method through the same trainer and accounting (Ray)."""

import numpy as np
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lead_ray.core.baselines import repeat_passes, round_slices, static_subset
from lead_ray.online.run import run
from tests.test_online import toy_config, toy_pool


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 300),
    budget=st.integers(1, 400),
    seed=st.integers(0, 10),
    method=st.sampled_from(["random", "ppl", "ifd", "length"]),
)
def test_static_subsets_respect_the_budget(n, budget, seed, method):
    rng = np.random.default_rng(seed)
    iu0 = rng.normal(3, 1, n)
    iu0[rng.random(n) < 0.1] = np.nan
    ifd = rng.uniform(0, 1.3, n)
    ifd[rng.random(n) < 0.1] = 0.0
    tokens = rng.integers(0, 50, n)  # many ties
    chosen = static_subset(method, budget, np.random.default_rng(seed), iu0=iu0, ifd=ifd, response_tokens=tokens)
    assert len(chosen) == min(budget, n) and len(set(chosen.tolist())) == len(chosen)
    assert chosen.min() >= 0 and chosen.max() < n
    if method == "length":  # nothing left out is longer than anything taken
        rest = np.setdiff1d(np.arange(n), chosen)
        assert not len(rest) or tokens[rest].max() <= tokens[chosen].min()
    again = static_subset(method, budget, np.random.default_rng(seed), iu0=iu0, ifd=ifd, response_tokens=tokens)
    assert chosen.tolist() == again.tolist()  # seeded


def test_ranked_baselines_take_the_top():
    iu0 = np.array([1.0, 5.0, np.nan, 3.0, 4.0])
    ifd = np.array([0.5, 1.2, 0.9, 0.0, 0.7])
    rng = np.random.default_rng(0)
    assert sorted(static_subset("ppl", 2, rng, iu0=iu0, ifd=ifd)) == [1, 4]
    assert sorted(static_subset("ifd", 3, rng, iu0=iu0, ifd=ifd)) == [0, 2, 4]  # IFD ≥ 1 and unscored 0 left out
    assert sorted(static_subset("ifd", 4, rng, iu0=iu0, ifd=ifd)) == [0, 1, 2, 4]  # ... until the budget needs them
    assert sorted(static_subset("full", 1, rng, iu0=iu0, ifd=ifd)) == [0, 1, 2, 3, 4]
    assert static_subset("ppl", 3, rng, iu0=iu0, ifd=ifd, shuffle=False).tolist() == [1, 4, 3]
    tokens = np.array([3, 90, 12, 90, 40])
    assert static_subset("length", 3, rng, response_tokens=tokens, shuffle=False).tolist() == [1, 3, 4]
    with pytest.raises(ValueError, match="not a static method"):
        static_subset("lead", 1, rng, iu0=iu0)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 200), passes=st.integers(1, 4) | st.floats(1, 4), shuffle=st.booleans(), seed=st.integers(0, 5))
def test_passes_train_each_whole_pass_once_and_a_fraction_of_one_more(n, passes, shuffle, seed):
    order = np.random.default_rng(seed).permutation(1000)[:n]
    trained = repeat_passes(order, passes, np.random.default_rng(seed), shuffle)
    whole, extra = int(passes), round((passes - int(passes)) * n)
    assert len(trained) == whole * n + extra and abs(len(trained) - passes * n) <= 0.5
    assert trained[:n].tolist() == order.tolist()  # the first pass is the subset's own order
    for p in range(whole):
        assert sorted(trained[p * n : (p + 1) * n].tolist()) == sorted(order.tolist())
    tail = trained[whole * n :]
    assert len(set(tail.tolist())) == len(tail) and set(tail.tolist()) <= set(order.tolist())
    if whole == passes:  # a whole number of passes: exactly the construction before fractions existed
        rng = np.random.default_rng(seed)
        old = [order] + [rng.permutation(order) if shuffle else order for _ in range(whole - 1)]
        assert trained.tolist() == np.concatenate(old).tolist()


def test_round_slices_cover_the_subset_once():
    for n, rounds, batch in [(10, 3, 1), (7, 10, 1), (100, 12, 1), (1, 1, 1), (100, 12, 8), (19, 10, 8)]:
        slices = round_slices(n, rounds, batch)
        cover = [i for s in slices for i in range(n)[s]]
        assert cover == list(range(n)) and len(slices) <= rounds
        assert all((s.stop - s.start) % batch == 0 for s in slices[:-1])  # whole optimizer batches


def _rounds(work):
    return pq.read_table(work / "run" / "rounds.parquet").to_pylist()


@pytest.mark.parametrize("method,passes", [("random", 1.5), ("full", 1), ("length", 1)])
def test_static_baseline_trains_exactly_its_subset(ray_session, tmp_path, method, passes):
    toy_pool(tmp_path)
    cfg = toy_config(tmp_path, 1)
    cfg.selection.method, cfg.selection.budget_fraction, cfg.selection.max_rounds = method, 0.25, 4
    cfg.selection.static_passes = passes  # random: its subset, then half of it again (a token-matched control)
    cfg.train.batch_size = cfg.train.micro_batch_size = 2
    stats = run(cfg)
    expected = 160 if method == "full" else 40  # 25% of the toy pool's 160
    trained = round(expected * passes)
    assert stats["budget"] == expected and stats["unique_selected"] == expected
    assert stats["samples_trained"] == trained and stats["pool_forward_samples"] == 0
    rounds = _rounds(tmp_path)
    assert [r["round"] for r in rounds] == list(range(4)) and all(r["arm"] == -1 for r in rounds)
    per_round = [np.load(tmp_path / "run" / "selections" / f"round-{t:05d}.npy") for t in range(4)]
    seen = np.concatenate(per_round)
    assert len(seen) == trained and len(set(seen.tolist())) == expected
    first, again = seen[:expected], seen[expected:]
    assert len(set(first.tolist())) == expected  # the first pass covers the subset once
    assert len(set(again.tolist())) == len(again) == trained - expected  # then part of it again, no repeats
    if len(again):
        assert not np.array_equal(first[: len(again)], again)  # reshuffled
    assert all(r["forward_samples"] - r["padding_samples"] == r["size"] for r in rounds)
    if method == "length":  # the toy pool's long answers are arm 1's 8 letters (arm 0 answers "pong")
        assert all(one.min() >= 80 for one in per_round)


def test_rescore_scores_the_whole_pool_every_round_and_lead_never_does(ray_session, tmp_path):
    lead, rescore = tmp_path / "lead", tmp_path / "rescore"
    stats = {}
    for work, method in ((lead, "lead"), (rescore, "rescore")):
        toy_pool(work)
        cfg = toy_config(work, 1)
        cfg.selection.method, cfg.selection.max_rounds, cfg.selection.budget_samples = method, 3, 200
        stats[method] = run(cfg)
    assert stats["lead"]["pool_forward_samples"] == 0
    assert all(r["pool_forward_samples"] == 0 for r in _rounds(lead))
    assert stats["rescore"]["rounds"] == 3
    assert all(r["pool_forward_samples"] == 160 for r in _rounds(rescore))  # every sample, every round
    # rescore's U is the fresh loss (no ΔL̂′, no smoothing)
    assert all(r["delta"] == 0.0 for r in _rounds(rescore))
