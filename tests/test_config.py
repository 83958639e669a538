"""The typed config: YAML, overrides, and the error messages users see."""

import pytest

from lead_ray.cli import DEMO_CONFIG, main
from lead_ray.config import Config, ConfigError, load_config, reference_markdown, resume_conflicts, to_dict


def test_relative_paths_resolve_against_the_current_folder(tmp_path, monkeypatch):
    from lead_ray.config import resolve_paths

    monkeypatch.chdir(tmp_path)
    cfg = resolve_paths(load_config(None, ["work_dir=w", "ingest.inputs=[a.jsonl, /abs/b.jsonl]", "model.base=m.gguf"]))
    assert cfg.work_dir == str(tmp_path / "w") and cfg.ingest.inputs == [str(tmp_path / "a.jsonl"), "/abs/b.jsonl"]
    assert cfg.model.base == str(tmp_path / "m.gguf") and cfg.model.tokenizer == "bytes"
    assert cfg.eval.data_dir == str((tmp_path / "../shared/data/eval").resolve())
    assert resolve_paths(load_config()).model.base == "tiny"


def test_defaults_and_demo_config_load():
    assert load_config() == Config()
    cfg = load_config(DEMO_CONFIG)
    assert cfg.ingest.inputs == ["data/sample"] and cfg.seed == 42


def test_yaml_then_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("seed: 7\ningest:\n  max_sample_chars: 100\n  inputs: a.jsonl\n")
    cfg = load_config(
        path,
        [
            "ingest.max_sample_chars=5000",
            "ingest.strict=true",
            "ray.num_cpus=2",
            'ingest.inputs=["x", "y"]',
            "ingest.chunk_mb=3",
        ],
    )
    assert cfg.seed == 7
    assert cfg.ingest.max_sample_chars == 5000 and cfg.ingest.strict is True
    assert cfg.ingest.inputs == ["x", "y"] and cfg.ray.num_cpus == 2
    assert cfg.ingest.chunk_mb == 3.0 and isinstance(cfg.ingest.chunk_mb, float)
    assert load_config(path).ingest.inputs == ["a.jsonl"]  # a single string becomes a one-item list


@pytest.mark.parametrize(
    "overrides, message",
    [
        (
            ["ingest.max_sample_char=10"],
            "unknown key 'ingest.max_sample_char' (did you mean 'ingest.max_sample_chars'?)",
        ),
        (["ingset.format=alpaca"], "unknown key 'ingset'"),
        (["ingest.max_sample_chars=lots"], "'ingest.max_sample_chars' must be int, got str 'lots'"),
        (["ingest.max_sample_chars=true"], "'ingest.max_sample_chars' must be int, got bool"),
        (["ingest.max_sample_chars=0"], "'ingest.max_sample_chars' must be ≥ 1, got 0"),
        (["seed=-1"], "'seed' must be ≥ 0, got -1"),
        (["ingest.chunk_mb=0"], "'ingest.chunk_mb' must be > 0"),
        (["ingest.format=csv"], "'ingest.format' must be one of auto, alpaca"),
        (["ingest.strict=maybe"], "'ingest.strict' must be bool"),
        (["ingest.inputs=3"], "'ingest.inputs' must be a list, got int 3"),
        (["ingest.inputs=[3]"], "'ingest.inputs[0]' must be str, got int"),
        (["ingest=3"], "'ingest' must be a mapping"),
        (["novalue"], "expected section.key=value"),
        (["selection.budget_fraction=-0.1"], "'selection.budget_fraction' must be > 0, got -0.1"),
        (["selection.budget_samples=-5"], "'selection.budget_samples' must be ≥ 0"),
        (["selection.method=best"], "'selection.method' must be one of lead, random"),
        (["eval.sets=[holdout, mmlu5]"], "'eval.sets[1]' must be one of holdout"),
        (["cluster.difficulty_k=0"], "'cluster.difficulty_k' must be ≥ 1"),
        (["train.max_failures=-2"], "'train.max_failures' must be ≥ -1"),
    ],
)
def test_bad_values_name_the_key(overrides, message):
    with pytest.raises(ConfigError) as e:
        load_config(None, overrides)
    assert message in str(e.value)


def test_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("ingest:\n  max_sample_chars: -5\n")
    with pytest.raises(ConfigError, match=f"{bad}: 'ingest.max_sample_chars' must be ≥ 1"):
        load_config(bad)
    bad.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(bad)
    bad.write_text("ingest: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "missing.yaml")


def test_cli_reports_config_errors_in_one_line(capsys):
    assert main(["config", "--set", "ingest.max_sample_chars=-1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "must be ≥ 1" in err
    assert main(["config", "--set", "seed=3"]) == 0
    assert "seed: 3" in capsys.readouterr().out


def test_nested_sections_keep_their_parents_defaults():
    cfg = load_config(None, ["train.lora.alpha=8"])
    assert (cfg.train.lora.r, cfg.train.lora.alpha, cfg.warmup.lora.r) == (64, 8, 32)


def test_reference_lists_every_key():
    ref = reference_markdown()
    for key in ("seed", "ray.address", "ingest.inputs", "ingest.max_sample_chars", "ingest.dedup_buckets"):
        assert f"| `{key}` |" in ref


def test_saved_config_round_trips_and_resume_conflicts_name_the_keys(tmp_path):
    import yaml

    cfg = load_config(DEMO_CONFIG, ["selection.rho=0.3"])
    saved = tmp_path / "config.yaml"
    saved.write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
    assert to_dict(load_config(saved)) == to_dict(cfg)  # a run's config.yaml repeats the run
    old = yaml.safe_load(saved.read_text())
    assert resume_conflicts(old, to_dict(cfg)) == []
    cfg.selection.max_rounds, cfg.train.num_workers, cfg.eval.max_samples = 99, 4, 7  # stop, hardware, eval: allowed
    assert resume_conflicts(old, to_dict(cfg)) == []
    cfg.selection.rho, cfg.train.lr, cfg.seed, cfg.model.tiny.num_layers = 0.5, 5.0, 7, 3
    assert resume_conflicts(old, to_dict(cfg)) == [
        "seed: 42 -> 7",
        "model.tiny.num_layers: 2 -> 3",
        "selection.rho: 0.3 -> 0.5",
        "train.lr: 0.001 -> 5.0",
    ]
