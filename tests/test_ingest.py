"""`prepare` end to end on a local Ray: formats, rejects, counts, ids, dedup, strict, chunking."""

import gzip
import json
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lead_ray.cli import main
from lead_ray.config import load_config
from lead_ray.data.ingest import IngestError, prepare
from tests.conftest import FIXTURES, write_jsonl


def run(inputs, out, *overrides, runner=None):
    cfg = load_config(
        None,
        ["ingest.inputs=" + json.dumps([str(i) for i in inputs]), "ingest.out=" + json.dumps(str(out)), *overrides],
    )
    return prepare(cfg, run_stage=runner)


def pool_table(out):
    return pq.read_table(out / "pool").sort_by("id")


def rejects(out):
    return [json.loads(line) for line in (out / "rejects.jsonl").read_text().split("\n") if line]


def assert_counts_add_up(stats):
    assert stats["input_rows"] == stats["accepted"] + stats["rejected"] + stats["duplicates"]
    for source, s in stats["by_source"].items():
        assert s["input_rows"] == s["accepted"] + s["rejected"] + s["duplicates"], source
    assert sum(stats["reject_reasons"].values()) == stats["rejected"]


@pytest.fixture
def corpus(tmp_path):
    """One small file per format and container."""
    d = tmp_path / "corpus"
    d.mkdir()
    (d / "alpaca.json").write_text(
        json.dumps([{"instruction": f"Double {i}.", "input": "", "output": str(2 * i)} for i in range(5)])
    )
    with gzip.open(d / "alpaca_resp.jsonl.gz", "wt") as f:
        for i in range(3):
            f.write(json.dumps({"instruction": "Echo", "input": f"word{i}", "response": f"word{i}"}) + "\n")
    write_jsonl(d / "t0.jsonl", [{"prompt": f"Q{i}?\n", "completion": f" A{i}<|endoftext|>"} for i in range(4)])
    pq.write_table(pa.table({"question": ["1+1?", "2+2?"], "answer": ["2", "4"]}), d / "gsm.parquet")
    shutil.copy(FIXTURES / "sharegpt_chat.json", d / "chat.json")
    shutil.copy(FIXTURES / "messages_chat.jsonl", d / "msgs.jsonl")
    write_jsonl(
        d / "seed.jsonl",
        [
            {
                "instruction": "Sentiment?",
                "instances": [{"input": "good", "output": "pos"}, {"input": "bad", "output": "neg"}],
            }
        ],
    )
    (d / "README.md").write_text("not data")
    return d


def test_every_format_lands_in_one_pool(ray_session, corpus, tmp_path):
    out = tmp_path / "out"
    stats = run([corpus], out)
    assert stats["formats"] == {
        "corpus/alpaca.json": "alpaca",
        "corpus/alpaca_resp.jsonl.gz": "alpaca",
        "corpus/chat.json": "sharegpt",
        "corpus/gsm.parquet": "question_answer",
        "corpus/msgs.jsonl": "messages",
        "corpus/seed.jsonl": "self_instruct",
        "corpus/t0.jsonl": "prompt_completion",
    }
    assert stats["skipped_files"] == [str(corpus / "README.md")]
    assert (stats["input_rows"], stats["accepted"], stats["rejected"], stats["duplicates"]) == (24, 24, 0, 0)
    assert stats["trimmed_turns"] == 1
    assert_counts_add_up(stats)
    table = pool_table(out)
    assert table.num_rows == 24 and len(set(table["id"].to_pylist())) == 24
    rows = {r["source"] + ":" + str(r["line"]): r for r in table.to_pylist()}
    assert rows["corpus/t0.jsonl:2"]["messages"] == [
        {"role": "user", "content": "Q1?"},
        {"role": "assistant", "content": "A1"},
    ]
    assert rows["corpus/gsm.parquet:2"]["messages"][1]["content"] == "4"
    assert rows["corpus/alpaca_resp.jsonl.gz:1"]["messages"][0]["content"] == "Echo\n\nword0"
    assert rows["corpus/msgs.jsonl:4"]["task"] == "creative_writing"
    assert rows["corpus/chat.json:1"]["n_turns"] == 5
    assert {r["format"] for r in rows.values()} >= {"alpaca", "sharegpt", "messages", "self_instruct"}
    assert all(r["prompt_chars"] > 0 and r["response_chars"] > 0 for r in rows.values())


def test_every_reject_reason_names_file_line_and_field(ray_session, tmp_path):
    d = tmp_path / "in"
    good = {"instruction": "Say hi", "output": "hi"}
    write_jsonl(
        d / "mixed.jsonl",
        [
            good,  # 1 ok
            b'{"instruction": "broken", "output": ',  # 2 malformed_json
            b'{"instruction": "caf\xe9", "output": "x"}',  # 3 invalid_utf8 (latin-1 byte)
            b"[1, 2]",  # 4 not_an_object
            {"instruction": "no output here"},  # 5 missing_field output
            {"instruction": ["a"], "output": "x"},  # 6 wrong_type instruction
            {"instruction": "  ", "output": "x"},  # 7 empty_prompt
            {"instruction": "x", "output": "\n"},  # 8 empty_response
            {"instruction": "ctl \x1b[31m", "output": "x"},  # 9 control_character
            {"instruction": "long", "output": "z" * 500},  # 10 too_long
            b"   ",  # 11 blank: not a row
            good,  # 12 duplicate of line 1
            {"instruction": "Say hi ", "output": " hi"},  # 13 duplicate after normalisation
        ],
    )
    write_jsonl(d / "other.jsonl", [{"text": "no known format"}, {"text": "still none"}])
    (d / "truncated.json").write_text('[{"instruction": "a", "output": "b"}, {"instr')
    (d / "object.json").write_text(json.dumps({"data": [good, good]}, indent=2))
    out = tmp_path / "out"
    stats = run([d], out, "ingest.max_sample_chars=200")
    assert_counts_add_up(stats)
    assert (stats["input_rows"], stats["accepted"], stats["rejected"], stats["duplicates"]) == (16, 1, 13, 2)
    got = {(r["source"], r["line"], r["reason"], r["field"]) for r in rejects(out)}
    assert got == {
        ("in/mixed.jsonl", 2, "malformed_json", None),
        ("in/mixed.jsonl", 3, "invalid_utf8", None),
        ("in/mixed.jsonl", 4, "not_an_object", None),
        ("in/mixed.jsonl", 5, "missing_field", "output"),
        ("in/mixed.jsonl", 6, "wrong_type", "instruction"),
        ("in/mixed.jsonl", 7, "empty_prompt", "instruction"),
        ("in/mixed.jsonl", 8, "empty_response", "output"),
        ("in/mixed.jsonl", 9, "control_character", "instruction"),
        ("in/mixed.jsonl", 10, "too_long", None),
        ("in/other.jsonl", 1, "unknown_format", None),
        ("in/other.jsonl", 2, "unknown_format", None),
        ("in/truncated.json", 1, "malformed_json", None),
        ("in/object.json", 1, "not_an_array", None),
    }
    assert all(r["message"] and r["file"].endswith(r["source"].split("/")[-1]) for r in rejects(out))
    assert stats["by_source"]["in/mixed.jsonl"] == {"input_rows": 12, "accepted": 1, "rejected": 9, "duplicates": 2}
    assert pool_table(out)["line"].to_pylist() == [1]  # the first copy is the one kept


def test_forced_format_and_strict_mode(ray_session, tmp_path, capsys):
    d = tmp_path / "in"
    write_jsonl(d / "a.jsonl", [{"instruction": "q", "output": "a"}, {"instruction": "q2", "output": 3}])
    out = tmp_path / "out"
    stats = run([d], out, "ingest.format=question_answer")
    assert stats["rejected"] == 2 and {r["field"] for r in rejects(out)} == {"question"}
    with pytest.raises(
        IngestError, match=r"a\.jsonl:2: field 'output': field 'output' must be a string, got int \[wrong_type\]"
    ):
        run([d], out, "ingest.strict=true")
    assert main(["prepare", str(d), "--out", str(out), "--strict"]) == 1
    assert "a.jsonl:2: field 'output'" in capsys.readouterr().err


def test_ids_and_pool_are_stable_across_runs_and_layouts(ray_session, corpus, tmp_path):
    """Two runs agree; splitting big JSONL files into many chunks or using several buckets changes nothing."""
    big = corpus / "big.jsonl"
    write_jsonl(
        big,
        [{"prompt": f"Item {i % 300}?", "completion": f"Answer {i % 300}"} if i % 7 else b"{oops" for i in range(2000)],
    )
    a = run([corpus], tmp_path / "a")
    b = run([corpus], tmp_path / "b")
    c = run([corpus], tmp_path / "c", "ingest.chunk_mb=0.01", "ingest.dedup_buckets=3")
    assert c["chunks"] > a["chunks"] and c["dedup_buckets"] == 3
    ta, tb, tc = (pool_table(tmp_path / x) for x in "abc")
    assert ta.equals(tb) and ta.equals(tc)
    strip = [
        {
            k: v
            for k, v in s.items()
            if k not in ("seconds", "chunks", "dedup_buckets", "pool", "rejects", "task_seconds")
        }
        for s in (a, b, c)
    ]
    assert strip[0] == strip[1] == strip[2]
    assert (tmp_path / "a" / "rejects.jsonl").read_bytes() == (tmp_path / "c" / "rejects.jsonl").read_bytes()
    # line numbers survive chunk boundaries: every 7th line of big.jsonl is broken
    assert sorted(r["line"] for r in rejects(tmp_path / "c") if r["source"].endswith("big.jsonl")) == list(
        range(1, 2001, 7)
    )
    assert a["by_source"]["corpus/big.jsonl"]["accepted"] == 300


def test_rerun_into_the_same_folder_replaces_outputs(ray_session, corpus, tmp_path):
    out = tmp_path / "out"
    run([corpus], out)
    run([corpus / "t0.jsonl"], out)
    assert pool_table(out).num_rows == 4


def test_missing_input_and_empty_config(ray_session, tmp_path):
    with pytest.raises(IngestError, match="no such file or folder"):
        run([tmp_path / "nope.jsonl"], tmp_path / "out")
    (tmp_path / "x.csv").write_text("a,b\n")
    with pytest.raises(IngestError, match="unsupported file type"):
        run([tmp_path / "x.csv"], tmp_path / "out")
    assert main(["prepare", "--out", str(tmp_path / "o")]) == 2  # no inputs anywhere
