"""Random malformed rows thrown at ingest: it never crashes, and the counts always add up."""

import json
import random

import pyarrow.parquet as pq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lead_ray.config import load_config
from lead_ray.data.ingest import prepare
from tests.conftest import in_process

KNOWN_REASONS = {
    "malformed_json",
    "invalid_utf8",
    "not_an_object",
    "not_an_array",
    "unknown_format",
    "missing_field",
    "wrong_type",
    "empty_prompt",
    "empty_response",
    "bad_role",
    "no_prompt",
    "control_character",
    "too_long",
}
GOOD = {"instruction": "Name a colour.", "output": "Blue."}

text = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=40)
json_value = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | text,
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(text, kids, max_size=3),
    max_leaves=8,
)
alpaca_like = st.fixed_dictionaries(
    {"instruction": st.one_of(text, json_value)},
    optional={"input": st.one_of(text, json_value), "output": st.one_of(text, json_value), "response": json_value},
)
chat_like = st.fixed_dictionaries(
    {
        "conversations": st.one_of(
            json_value,
            st.lists(
                st.fixed_dictionaries(
                    {
                        "from": st.sampled_from(["human", "gpt", "system", "alien", ""]) | json_value,
                        "value": st.one_of(text, json_value),
                    }
                ),
                max_size=4,
            ),
        )
    }
)
seed_like = st.fixed_dictionaries(
    {
        "instruction": text,
        "instances": st.one_of(
            json_value,
            st.lists(
                st.fixed_dictionaries({"output": st.one_of(text, json_value)}, optional={"input": text}), max_size=3
            ),
        ),
    }
)


def line_of(value) -> bytes:
    return value if isinstance(value, bytes) else json.dumps(value).encode()


lines = st.lists(
    st.one_of(
        st.just(GOOD),
        alpaca_like,
        chat_like,
        seed_like,
        json_value,
        st.binary(max_size=60),  # broken JSON, invalid UTF-8, blank lines
        st.builds(lambda t: json.dumps(GOOD)[: len(t) % 30].encode(), text),  # truncated lines
        st.builds(lambda n: {"instruction": "x" * n, "output": "y"}, st.integers(0, 3000)),  # over-long
    ).map(line_of),
    min_size=1,
    max_size=60,
)


def check_run(tmp_path, runner, **over):
    out = tmp_path / "out"
    cfg = load_config(
        None,
        [
            "ingest.inputs=" + json.dumps([str(tmp_path / "in")]),
            "ingest.out=" + json.dumps(str(out)),
            "ingest.max_sample_chars=2000",
            *[f"ingest.{k}={v}" for k, v in over.items()],
        ],
    )
    stats = prepare(cfg, run_stage=runner)
    assert stats["input_rows"] == stats["accepted"] + stats["rejected"] + stats["duplicates"]
    for s in stats["by_source"].values():
        assert s["input_rows"] == s["accepted"] + s["rejected"] + s["duplicates"]
    rejects = [json.loads(x) for x in (out / "rejects.jsonl").read_text().split("\n") if x]
    assert sum(r["rows"] for r in rejects) == stats["rejected"]
    assert all(r["reason"] in KNOWN_REASONS and r["message"] and r["line"] >= 1 for r in rejects)
    pool = pq.read_table(out / "pool") if stats["accepted"] else None
    if pool is not None:
        assert pool.num_rows == stats["accepted"] and len(set(pool["id"].to_pylist())) == pool.num_rows
    return stats, rejects


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=lines, as_array=st.booleans())
def test_random_rows_never_lose_count(tmp_path_factory, body, as_array):
    tmp_path = tmp_path_factory.mktemp("fuzz")
    (tmp_path / "in").mkdir()
    first = json.dumps(GOOD).encode()
    if as_array:  # a JSON array is all-or-nothing: valid elements, or one reject for the whole file
        elems = b",".join([first, *body])
        (tmp_path / "in" / "f.json").write_bytes(b"[" + elems + b"]")
    else:
        (tmp_path / "in" / "f.jsonl").write_bytes(b"\n".join([first, *body]) + b"\n")
    stats, _ = check_run(tmp_path, in_process)
    if not as_array and set(stats["formats"].values()) == {"alpaca"}:
        assert stats["accepted"] >= 1  # the good first row survives whatever follows it


def test_ten_thousand_hostile_rows_on_ray(ray_session, tmp_path):
    """≥ 10,000 malformed rows mixed with good ones, through the real Ray Data pipeline (several chunks and
    buckets): broken JSON, invalid UTF-8, nulls, wrong types, wrong nesting, control characters, huge strings."""
    rng = random.Random(0)
    bad_alpaca = [
        b"{",
        b"\xff\xfe",
        b"null",
        b"[]",
        b'"str"',
        b'{"instruction": null, "output": "x"}',
        b'{"instruction": "a", "output": {"nested": 1}}',
        b'{"instruction": "\\u0000", "output": "x"}',
        b'{"instruction": "a\x07b", "output": "x"}',  # raw control char: not JSON
        b'{"instruction": "caf\xe9", "output": "x"}',  # invalid UTF-8 inside a string
        b'{"instruction": ["a", "b"], "output": "x"}',
        b'{"instruction": 12, "output": true}',
        b'{"conversations": [{"from": "gpt", "value": "first"}]}',
        b'{"instruction": "' + b"x" * 300_000 + b'", "output": "y"}',
    ]  # huge
    bad_chat = [
        b'{"conversations": {"from": "human", "value": "not a list"}}',  # wrong nesting
        b'{"conversations": [[{"from": "human", "value": "hi"}]]}',
        b'{"conversations": []}',
        b'{"conversations": [{"from": "alien", "value": "x"}, {"from": "gpt", "value": "y"}]}',
        b'{"conversations": [{"from": "human", "value": null}, {"from": "gpt", "value": "y"}]}',
        b'{"conversations": [{"from": "human"}, {"from": "gpt", "value": "y"}]}',
    ]

    def good_alpaca():
        return json.dumps({"instruction": f"Task {rng.randrange(3000)}", "output": "ok"}).encode()

    def good_chat():
        turns = [{"from": "human", "value": f"Hi {rng.randrange(3000)}"}, {"from": "gpt", "value": "Hello"}]
        return json.dumps({"conversations": turns}).encode()

    files = {
        "a.jsonl": (good_alpaca, bad_alpaca, 5000),
        "b.jsonl": (good_alpaca, bad_alpaca, 4000),
        "c.jsonl": (good_chat, bad_chat, 3000),
    }
    (tmp_path / "in").mkdir()
    expected_bad = 0
    for name, (good, bad, n) in files.items():
        rows = [good() for _ in range(8)]  # each file's head says its format
        for _ in range(n - 8):
            if rng.random() < 0.5:
                rows.append(good())
            else:
                rows.append(rng.choice(bad))
                expected_bad += 1
        (tmp_path / "in" / name).write_bytes(b"\n".join(rows) + b"\n")
    stats, rejects = check_run(tmp_path, None, chunk_mb=0.05, dedup_buckets=4)
    assert stats["chunks"] > 4 and stats["input_rows"] == 12_000
    assert stats["rejected"] == expected_bad  # every bad row rejected, no good row lost
    assert stats["accepted"] + stats["duplicates"] == 12_000 - expected_bad
    assert {r["reason"] for r in rejects} >= {
        "malformed_json",
        "invalid_utf8",
        "not_an_object",
        "missing_field",
        "wrong_type",
        "control_character",
        "too_long",
        "bad_role",
    }
    assert all(r["file"].endswith(".jsonl") and r["line"] >= 1 for r in rejects)
