"""MMLU choice_nll for stored benchmark runs: bench/quality/mmlu_format.py's split and mmlu_rescore.py's
re-scoring."""


def test_mmlu_format_splits_the_nll_and_refuses_a_model_that_is_not_the_runs(tmp_path):
    import json
    import math

    import pytest

    from bench.quality.mmlu_format import parts, summary
    from bench.quality.mmlu_rescore import reproduced

    stored = {"mmlu": {"nll": [1.0, 2.0, 3.0]}}
    (tmp_path / "eval_items.json").write_text(json.dumps(stored))
    close = {"nll": [1.01, 1.99, 3.0], "choice_nll": [0.5, 1.0, math.log(4)], "correct": [1, 0, 0]}
    assert reproduced("run", tmp_path, close)["max_abs_item_diff"] == pytest.approx(0.01)
    with pytest.raises(SystemExit, match="not the benchmark's model"):
        reproduced("run", tmp_path, {**close, "nll": [1.1, 2.1, 3.1]})  # a mean 0.1 nats away
    split = parts(close)
    assert split["choice_nll"] + split["letter_mass"] == pytest.approx(split["nll"])  # nll = choice + letter mass
    other = parts({**close, "nll": [2.0, 3.0, 4.0]})  # one more nat of letter mass per item, the same choice
    result = summary({"lead+quantile-s42": split, "random-s42": other}, {"lead+quantile-s42": {}, "random-s42": {}})
    assert list(result["paired"]) == ["random-s42_vs_lead+quantile-s42"]  # each pair once
    gap = result["paired"]["random-s42_vs_lead+quantile-s42"]
    assert gap["letter_mass"]["mean"] == pytest.approx(1.0, abs=0.01) and gap["choice_nll"]["mean"] == 0.0


def _stored_run(run_dir, mmlu: dict) -> None:
    import json

    run_dir.mkdir(parents=True)
    (run_dir / "eval_items.json").write_text(json.dumps({"gsm8k": {"nll": [1.0, 2.0]}, "mmlu": mmlu}))
    stats = {"unique_selected": 2, "samples_trained": 2, "training_seconds": 1}
    (run_dir / "run_stats.json").write_text(json.dumps(stats))
    (run_dir / "bench_seconds.json").write_text(json.dumps({"run": 1, "eval": 1}))


def test_a_run_evaluated_before_choice_nll_takes_it_from_its_rescoring_or_goes_without(tmp_path):
    """A stored run without MMLU choice_nll gets it from mmlu_rescored.json (of as many items); where one seed of a
    method has none, the method reports no choice_nll and no pair compares it, and the other metrics stay."""
    import json

    import pytest

    from bench.quality.mmlu_rescore import RESCORED, run_mmlu
    from bench.quality.stats import item_scores, paired, summarise_methods

    old, new, base = tmp_path / "runs" / "a-s42", tmp_path / "runs" / "b-s42", tmp_path / "base"
    _stored_run(old, {"nll": [2.0, 3.0], "correct": [1, 0]})
    _stored_run(new, {"nll": [2.5, 3.5], "choice_nll": [1.0, 1.5], "correct": [1, 0]})
    _stored_run(base, {"nll": [3.0, 3.0], "choice_nll": [1.4, 1.4], "correct": [0, 0]})
    assert "mmlu_choice_nll" not in item_scores(old)
    runs = {"a": {42: old}, "b": {42: new}}
    methods = summarise_methods(runs, base)
    assert "mmlu_choice_nll" not in methods["a"]["sets"] and "mmlu_nll" in methods["a"]["sets"]
    result = paired(runs, methods, {"b_vs_a": ("b", "a")})
    assert "mmlu_choice_nll" not in result["b_vs_a"] and "mmlu_nll" in result["b_vs_a"]

    rescored = {"nll": [2.0, 3.0], "choice_nll": [0.5, 2.0], "correct": [1, 0]}
    (old / RESCORED).write_text(json.dumps({"mmlu": rescored, "model": "trained again", "mean_nll_diff": 0.0}))
    assert list(item_scores(old)["mmlu_choice_nll"]) == [0.5, 2.0]
    methods = summarise_methods(runs, base)
    assert paired(runs, methods, {"b_vs_a": ("b", "a")})["b_vs_a"]["mmlu_choice_nll"]["mean"] == pytest.approx(0.0)
    assert run_mmlu(tmp_path, old) == (rescored, {"model": "trained again", "mean_nll_diff": 0.0})  # no model needed
    assert run_mmlu(tmp_path, new)[1] == {"model": "the run's own evaluation"}
    (old / RESCORED).write_text(json.dumps({"mmlu": {**rescored, "choice_nll": [0.5]}, "model": "x"}))
    with pytest.raises(ValueError, match="1 MMLU items, the run's evaluation has 2"):
        item_scores(old)


def test_a_model_trained_again_is_reused_only_for_a_run_that_trains_the_same(tmp_path):
    """runs-fresh/<run> shares the model runs/<run> was trained again into: allowed when only the eval items differ."""
    import json

    import pytest
    import yaml

    from bench.quality.mmlu_rescore import model_of
    from bench.quality.regimes import ROOT
    from lead_ray.config import load_config, to_dict

    def save_config(cfg, path):
        path.write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))

    scratch, fresh = tmp_path / "runs-mmlu" / "x-s42", tmp_path / "runs-fresh" / "x-s42"
    for folder in (scratch, fresh):
        folder.mkdir(parents=True)
    save_config(load_config(ROOT / "configs" / "demo.yaml", ["seed=42"]), scratch / "config.yaml")
    (scratch / "run_stats.json").write_text(json.dumps({"checkpoint": str(scratch / "ckpt")}))
    items = ['eval.set_offsets={"mmlu": 285}', 'eval.set_sizes={"mmlu": 285}', "eval.generate=false"]
    save_config(load_config(ROOT / "configs" / "demo.yaml", ["seed=42", *items]), fresh / "config.yaml")
    (fresh / "run_stats.json").write_text(json.dumps({"checkpoint": str(fresh / "gone")}))
    assert model_of(fresh, scratch) == scratch / "ckpt" / "model"
    spelt = ["seed=42", "cluster.difficulty_bins=quantile", "selection.rank_by=mean", *items]  # the robust preset's
    save_config(load_config(ROOT / "configs" / "demo.yaml", spelt), fresh / "config.yaml")
    assert model_of(fresh, scratch) == scratch / "ckpt" / "model"  # the same switches, spelt by value
    for other in (["seed=43"], ["seed=42", "selection.rank_by=total"]):
        save_config(load_config(ROOT / "configs" / "demo.yaml", [*other, *items]), fresh / "config.yaml")
        with pytest.raises(SystemExit, match="trained with other settings"):
            model_of(fresh, scratch)
