"""The README's main command, `lead-ray demo`, on the repo's sample: every stage, through `run`, leaves its outputs."""

import json

import pyarrow.parquet as pq

from lead_ray.cli import main


def test_demo_runs_every_stage_on_the_repo_sample(ray_session, tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out)]) == 0
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
    assert clusters["difficulty_k"] == 7 and min(clusters["difficulty_sizes"].values()) > 0
    assert pq.read_table(out / "clustered" / "pool").num_rows == clusters["rows_out"]
    stats = json.loads((out / "run" / "run_stats.json").read_text())
    assert stats["unique_selected"] >= stats["budget"] and stats["rounds"] >= 1
    selected = pq.read_table(out / "run" / "selected.parquet")
    assert selected.num_rows == stats["unique_selected"]
    assert len((out / "run" / "selected.jsonl").read_text().splitlines()) == selected.num_rows
    assert pq.read_table(out / "run" / "rounds.parquet").num_rows == stats["rounds"]
    printed = capsys.readouterr().out
    assert "demo finished" in printed and "clustered pool:" in printed
    # the demo ends with its report and the commands to run next
    assert (out / "run" / "report.html").stat().st_size > 10_000
    assert f"report: {out / 'run' / 'report.html'}" in printed and "lead-ray export" in printed
