"""The command line: help texts, and the generated config reference kept current."""

import re
import subprocess
import sys

import pytest

from lead_ray.cli_args import build_parser
from lead_ray.config import reference_markdown
from tests.conftest import REPO


def test_help_lists_subcommands_and_each_has_help():
    out = subprocess.run(
        [sys.executable, "-m", "lead_ray.cli", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for cmd in ("prepare", "warmup", "score", "cluster", "run", "pipeline", "demo", "config"):
        assert cmd in out
        sub = subprocess.run(
            [sys.executable, "-m", "lead_ray.cli", cmd, "--help"], capture_output=True, text=True, check=True
        )
        assert "--set" in sub.stdout and "--config" in sub.stdout


def test_unknown_subcommand_is_an_error():
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args(["train-everything"])
    assert e.value.code == 2


def test_config_reference_doc_is_current():
    doc = (REPO / "docs" / "CONFIG.md").read_text()
    assert reference_markdown() in doc, "docs/CONFIG.md is stale: regenerate it with `make docs`"


def test_export_copies_the_selection(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from lead_ray.cli import main

    src = tmp_path / "in.jsonl"
    src.write_text('{"instruction": "a", "output": "b"}\n{"instruction": "c", "output": "d"}\n')
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    pq.write_table(
        pa.table({"id": ["x", "y"], "file": [str(src)] * 2, "line": [1, 2], "use_count": [1, 3]}),
        run_dir / "selected.parquet",
    )
    assert main(["export", str(run_dir), "--out", str(tmp_path / "out"), "--min-use", "2"]) == 0
    assert (tmp_path / "out" / "selected.jsonl").read_text() == '{"instruction": "c", "output": "d"}\n'
    assert pq.read_table(tmp_path / "out" / "selected.parquet")["id"].to_pylist() == ["y"]


def test_a_missing_input_is_one_line_naming_the_stage_that_makes_it(tmp_path, capsys):
    from lead_ray.cli import main

    assert main(["export", str(tmp_path / "not-a-run"), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert (
        err.strip()
        == f"lead-ray: no selected subset at {tmp_path / 'not-a-run' / 'selected.parquet'}: run `lead-ray run` first"
    )
    assert main(["prepare", str(tmp_path / "no-such-file.jsonl")]) == 1  # named before Ray starts
    assert "no-such-file.jsonl: no such file or folder" in capsys.readouterr().err


def test_a_failure_is_one_line_and_the_traceback_waits_for_verbose(tmp_path, capsys, monkeypatch):
    from lead_ray import cli

    def broken(args, overrides):
        raise RuntimeError("remote traceback line\n  File x\nValueError: the actual cause")

    monkeypatch.setitem(cli.COMMANDS, "report", broken)
    # setenv first: monkeypatch then restores the variable as it was before the test, although --verbose sets it
    monkeypatch.setenv("LEAD_RAY_VERBOSE", "0")
    assert cli.main(["report", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["lead-ray: RuntimeError: ValueError: the actual cause (run again with --verbose for the traceback)"]
    with pytest.raises(RuntimeError):
        cli.main(["--verbose", "report", str(tmp_path)])
    monkeypatch.setenv("LEAD_RAY_VERBOSE", "0")
    with pytest.raises(RuntimeError):
        cli.main(["report", str(tmp_path), "--verbose"])  # after the command too


def test_export_help_names_every_format_and_every_score_column():
    from lead_ray.export import EXPORT_FORMATS, SCORE_COLUMNS

    export = next(a for a in build_parser()._subparsers._group_actions[0].choices.items() if a[0] == "export")[1]
    text = export.format_help()
    words = set(re.findall(r"[a-z_0-9]+", text))
    assert set(EXPORT_FORMATS) <= words and set(SCORE_COLUMNS) <= words
