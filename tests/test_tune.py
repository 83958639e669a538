"""`lead-ray tune`: a 2-trial grid sweep on the toy pool, and Optuna 5 through Ray's OptunaSearch."""

import pyarrow.parquet as pq
import pytest

from lead_ray.config import ConfigError, load_config
from lead_ray.tune import param_space, tune_selection
from tests.test_online import toy_config, toy_pool


def test_grid_sweep_writes_best_config_table_and_plot(ray_session, tmp_path, monkeypatch):
    toy_pool(tmp_path)
    cfg = toy_config(tmp_path, 1)
    monkeypatch.chdir(tmp_path)
    cfg.work_dir = "."  # relative, as a user types it: each trial runs in a folder of its own
    cfg.selection.max_rounds, cfg.train.checkpoint_every = 4, 1  # a report (and ASHA decision point) every round
    cfg.eval.holdout_fraction, cfg.eval.inloop_samples = 0.1, 16
    # two trials (each is a TorchTrainer run); both keys reach every trial's config
    cfg.tune.space = {"selection.smoothing_b": {"grid": [0.0, 0.5]}, "selection.exp3_gamma": {"grid": [0.6]}}
    cfg.tune.grace_rounds = 2
    cfg.tracking.wandb = True  # Ray's WandbLoggerCallback, offline
    res = tune_selection(cfg)
    out = tmp_path / "tune" / res["name"]
    trials = pq.read_table(out / "trials.parquet").to_pylist()
    assert len(trials) == 2 and res["trials"] == 2
    assert {(t["selection.smoothing_b"], t["selection.exp3_gamma"]) for t in trials} == {(0.0, 0.6), (0.5, 0.6)}
    assert all(t["error"] is None and t["heldout_nll"] > 0 and 2 <= t["rounds_done"] <= 4 for t in trials)
    best = min(trials, key=lambda t: t["heldout_nll"])
    best_cfg = load_config(out / "best.yaml")  # ready to use as --config
    assert best_cfg.selection.smoothing_b == best["selection.smoothing_b"] == res["best"]["selection.smoothing_b"]
    assert best_cfg.selection.exp3_gamma == best["selection.exp3_gamma"]
    assert (out / "trials.csv").read_text().count("\n") == 3 and (out / "knobs.png").stat().st_size > 5000
    assert len(list((out / "wandb").glob("offline-run-*"))) >= 2  # one offline wandb run per trial


def test_space_errors_and_optuna_domains():
    from ray import tune

    space = param_space({"selection.rho": {"grid": [0.1, 0.2]}, "train.lr": {"loguniform": [1e-4, 1e-2]}}, "optuna")
    assert isinstance(space["selection.rho"], tune.search.sample.Categorical)  # Optuna cannot grid: a choice
    with pytest.raises(ConfigError, match="tune.space.selection.rho"):
        param_space({"selection.rho": {"between": [0, 1]}}, "grid")
    with pytest.raises(ConfigError, match=r"\[low, high\]"):
        param_space({"train.lr": {"uniform": [1]}}, "random")


def test_optuna_5_works_with_ray_optunasearch(ray_session, tmp_path):
    """Optuna 5 through Ray's OptunaSearch on a cheap function: the searcher runs and finds the minimum region."""
    import optuna
    from ray import tune
    from ray.tune.search.optuna import OptunaSearch

    assert int(optuna.__version__.split(".")[0]) >= 4
    tuner = tune.Tuner(
        lambda c: tune.report({"loss": (c["x"] - 0.3) ** 2}),
        param_space={"x": tune.uniform(0, 1)},
        tune_config=tune.TuneConfig(metric="loss", mode="min", num_samples=12, search_alg=OptunaSearch(seed=0)),
        run_config=tune.RunConfig(name="optuna-check", storage_path=str(tmp_path)),
    )
    best = tuner.fit().get_best_result()
    assert abs(best.config["x"] - 0.3) < 0.2


def test_failed_trials_are_one_line_each_and_all_failed_is_one_clear_error():
    from lead_ray.tune import TrialsFailed, failed_trials

    def row(b, nll, error=None):
        return {"selection.smoothing_b": b, "heldout_nll": nll, "rounds_done": 2, "error": error, "trial_dir": f"/{b}"}

    traceback = "Traceback (most recent call last):\n  File x\nFileNotFoundError: no clustered pool at runs/demo"
    lines = failed_trials([row(0.0, 3.1), row(0.3, None, traceback)], "heldout_nll")
    assert lines == ["trial 0.3 (selection.smoothing_b=0.3) failed: FileNotFoundError: no clustered pool at runs/demo"]
    with pytest.raises(TrialsFailed, match=r"none of the 2 trials finished with a heldout_nll; trial 0\.0 .*no clus"):
        failed_trials([row(0.0, None, traceback), row(0.3, float("nan"), None)], "heldout_nll")
