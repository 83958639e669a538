"""The command line: help texts, and the generated config reference kept current."""
import subprocess
import sys

import pytest

from lead_ray.cli import build_parser
from lead_ray.config import reference_markdown
from tests.conftest import REPO


def test_help_lists_subcommands_and_each_has_help():
    out = subprocess.run([sys.executable, "-m", "lead_ray.cli", "--help"], capture_output=True, text=True, check=True).stdout
    for cmd in ("prepare", "warmup", "score", "cluster", "run", "pipeline", "demo", "config"):
        assert cmd in out
        sub = subprocess.run([sys.executable, "-m", "lead_ray.cli", cmd, "--help"], capture_output=True, text=True, check=True)
        assert "--set" in sub.stdout and "--config" in sub.stdout


def test_unknown_subcommand_is_an_error():
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args(["train-everything"])
    assert e.value.code == 2


def test_config_reference_doc_is_current():
    doc = (REPO / "docs" / "CONFIG.md").read_text()
    assert reference_markdown() in doc, "docs/CONFIG.md is stale: regenerate it with `make docs`"
