"""The README's main command, `lead-ray demo`, as a user runs it (a subprocess, its own Ray, no terminal): every
stage leaves its outputs, the console stays short, and the report renders in a real browser."""

import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest

MAX_LINES = 60
OTHER_RAY = "Found multiple active Ray instances"


def without_other_ray(lines: list[str]) -> list[str]:
    """Ray Train 2.60's placement-group monitor thread dies with a traceback ending in OTHER_RAY when a second
    Ray runs on the machine, as the test session's own does; a user's single Ray never prints it. Drop exactly
    those blocks: from their first line to the line that names the cause."""
    kept, i = [], 0
    while i < len(lines):
        end = next((j for j in range(i, min(i + 40, len(lines))) if OTHER_RAY in lines[j]), None)
        starts = "PlacementGroupCleaner" in lines[i] or lines[i].startswith("Traceback (most recent call last)")
        if starts and end is not None:
            i = end + 1
            continue
        kept.append(lines[i])
        i += 1
    return kept


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "demo"
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "LEAD_RAY_VERBOSE")}
    done = subprocess.run(
        [sys.executable, "-m", "lead_ray.cli", "demo", "--out", str(out)],
        env={**env, "WANDB_MODE": "offline"},
        capture_output=True,
        text=True,
        timeout=1500,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return out, done.stdout, done.stderr


def test_demo_runs_every_stage_on_the_repo_sample(demo):
    out, printed, _ = demo
    prep = json.loads((out / "prepared" / "prepare_stats.json").read_text())
    assert prep["input_rows"] == prep["accepted"] + prep["rejected"] + prep["duplicates"]
    assert prep["accepted"] > 2500 and len(prep["by_source"]) >= 20
    assert set(prep["formats"].values()) == {
        "alpaca",
        "prompt_completion",
        "question_answer",
        "sharegpt",
        "messages",
        "self_instruct",
    }
    assert (out / "models" / "warmup" / "model.safetensors").exists()
    score = json.loads((out / "scored" / "score_stats.json").read_text())
    assert score["rows"] == prep["accepted"]
    clusters = json.loads((out / "clustered" / "clusters.json").read_text())
    assert clusters["rows_in"] == prep["accepted"]
    # the default's quantile arms: 7 asked for, fewer where tied IFD values (the zeroed IFD > 1 ones) merge edges
    assert clusters["difficulty_bins"] == "quantile" and clusters["difficulty_k_requested"] == 7
    assert 2 <= clusters["difficulty_k"] <= 7 and min(clusters["difficulty_sizes"].values()) > 0
    pool = pq.read_table(out / "clustered" / "pool", columns=["ifd", "difficulty_cluster"]).to_pandas()
    assert len(pool) == clusters["rows_out"]
    by_arm = pool.dropna().groupby("difficulty_cluster")["ifd"]
    assert (by_arm.min().to_numpy()[1:] >= by_arm.max().to_numpy()[:-1]).all()  # arms ordered by IFD
    stats = json.loads((out / "run" / "run_stats.json").read_text())
    assert stats["unique_selected"] >= stats["budget"] and stats["rounds"] >= 1
    selected = pq.read_table(out / "run" / "selected.parquet")
    assert selected.num_rows == stats["unique_selected"]
    assert len((out / "run" / "selected.jsonl").read_text().splitlines()) == selected.num_rows
    assert pq.read_table(out / "run" / "rounds.parquet").num_rows == stats["rounds"]
    assert "demo finished" in printed and "clustered pool:" in printed
    # the demo ends with its report and the commands to run next
    assert (out / "run" / "report.html").stat().st_size > 10_000
    assert f"report: {out / 'run' / 'report.html'}" in printed and "lead-ray export" in printed


def test_demo_console_is_short_and_keeps_every_stage_summary(demo):
    out, stdout, stderr = demo
    lines = [line for line in without_other_ray((stdout + stderr).splitlines()) if line.strip()]
    assert len(lines) <= MAX_LINES, "\n".join(lines)
    for stage in ("prepare:", "warmup:", "score:", "cluster:", "run:", "report:", "demo finished"):
        assert any(line.startswith(stage) for line in lines), stage
    rounds = [line for line in lines if re.match(r"\[lead-ray\] lead round \d+/", line)]
    stats = json.loads((out / "run" / "run_stats.json").read_text())
    assert len(rounds) == stats["rounds"] == len(set(rounds)), rounds  # each worker line once
    assert all("ETA" in line for line in rounds)
    assert not [line for line in lines if "logging_progress" in line or "Reporting training result" in line]


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


NO_BROWSER = "no Chromium on PATH: `make browser` installs it (as root, with apt-get), or install chromium yourself"


@pytest.mark.skipif(_chromium() is None, reason=NO_BROWSER)
def test_report_renders_in_a_real_browser(demo, tmp_path):
    from PIL import Image

    out, _, _ = demo
    page = out / "run" / "report.html"
    shot = tmp_path / "report.png"
    subprocess.run(
        [
            _chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            f"--screenshot={shot}",
            "--window-size=1400,4000",
            page.as_uri(),
        ],
        capture_output=True,
        timeout=120,
        check=True,
    )
    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    assert pixels.std() > 20  # not a blank page
    expected = page.read_text().count("<img ")
    assert expected >= 5
    assert rendered_images(pixels) == expected


def rendered_images(pixels: np.ndarray, min_width: int = 300) -> int:
    """Images drawn at their real size: each has a 1-px #ddd border (report.py's CSS), so two long horizontal
    #ddd segments (top and bottom). A broken image shrinks to its alt text and leaves no long segment."""
    border = np.all(np.abs(pixels - 221) <= 2, axis=2)
    segments = 0
    for row in border:
        runs = np.diff(np.concatenate([[0], row.astype(int), [0]]))
        starts, ends = np.flatnonzero(runs == 1), np.flatnonzero(runs == -1)
        segments += int(np.sum(ends - starts >= min_width))
    return segments // 2


def test_only_the_other_ray_traceback_is_dropped():
    block = ["Exception in thread PlacementGroupCleanerMonitor:", "Traceback (most recent call last):", "  File x"]
    lines = ["prepare: 3 rows", *block, f"ConnectionError: {OTHER_RAY}: {{a, b}}", "Traceback (most recent call last):"]
    assert without_other_ray(lines + ["ValueError: ours"]) == [
        "prepare: 3 rows",
        "Traceback (most recent call last):",
        "ValueError: ours",
    ]


def test_rendered_images_counts_borders():
    canvas = np.full((100, 1000, 3), 255)
    for left in (10, 500):  # two images side by side, and a broken one (short border)
        canvas[10, left : left + 400] = canvas[60, left : left + 400] = 221
    canvas[80, 10:60] = canvas[95, 10:60] = 221
    assert rendered_images(canvas) == 2
