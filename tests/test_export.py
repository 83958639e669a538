"""`lead-ray export --to ...`: each format loads in the library that reads it in practice, and gives the
selected conversations back."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lead_ray.cli import main
from lead_ray.export import exchanges, to_alpaca, to_sharegpt

CONVERSATIONS = [
    [{"role": "user", "content": "What is 2 + 2?"}, {"role": "assistant", "content": "4"}],
    [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Name a colour."},
        {"role": "assistant", "content": "Red."},
        {"role": "user", "content": "Another?"},
        {"role": "assistant", "content": "Blue."},
    ],
]


@pytest.fixture
def run_dir(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"messages": m}) + "\n" for m in CONVERSATIONS))
    folder = tmp_path / "run"
    folder.mkdir()
    table = pa.table(
        {
            "id": ["a", "b"], "file": [str(src)] * 2, "line": [1, 2], "messages": CONVERSATIONS,
            "u": [1.5, 2.5], "iu0": [3.0, 4.0], "ifd": [0.4, 0.7], "use_count": [1, 2],
            "difficulty_cluster": [0, 3], "task_cluster": [1, 1],
        }
    )  # fmt: skip
    pq.write_table(table, folder / "selected.parquet")
    return folder


def back_to_messages(system: str, pairs) -> list[dict]:
    head = [{"role": "system", "content": system}] if system else []
    return head + [m for u, a in pairs for m in ({"role": "user", "content": u}, {"role": "assistant", "content": a})]


def test_every_format_loads_where_it_is_used_and_round_trips(run_dir, tmp_path):
    import datasets

    out = tmp_path / "out"
    assert (
        main(["export", str(run_dir), "--out", str(out), "--to", "source,messages,sharegpt,alpaca,hf", "--with-scores"])
        == 0
    )
    # TRL's SFTTrainer: a `messages` column of role/content turns, loaded with datasets' JSON loader
    trl = datasets.load_dataset("json", data_files=str(out / "selected_messages.jsonl"), split="train")
    assert trl["messages"] == CONVERSATIONS and trl["u"] == [1.5, 2.5]
    # LLaMA-Factory: its dataset_info.json entries, and files its JSON loader reads
    info = json.loads((out / "dataset_info.json").read_text())
    share, alpaca = info["lead_ray_sharegpt"], info["lead_ray_alpaca"]
    assert share["formatting"] == "sharegpt" and share["columns"]["messages"] == "conversations"
    assert share["tags"] == {"role_tag": "from", "content_tag": "value", "user_tag": "human", "assistant_tag": "gpt"}
    assert alpaca["formatting"] == "alpaca" and set(alpaca["columns"]) == {
        "prompt",
        "query",
        "response",
        "system",
        "history",
    }
    for entry in (share, alpaca):
        assert (out / entry["file_name"]).exists()
    rows = datasets.load_dataset("json", data_files=str(out / share["file_name"]), split="train")
    for row, conv in zip(rows, CONVERSATIONS):
        turns = row["conversations"]
        assert [t["from"] for t in turns] == ["human", "gpt"] * (len(turns) // 2)  # alternating, human first
        pairs = [(turns[i]["value"], turns[i + 1]["value"]) for i in range(0, len(turns), 2)]
        assert back_to_messages(row["system"], pairs) == conv
    rows = datasets.load_dataset("json", data_files=str(out / alpaca["file_name"]), split="train")
    for row, conv in zip(rows, CONVERSATIONS):
        pairs = [tuple(h) for h in row["history"]] + [(row["instruction"], row["output"])]
        assert row["input"] == "" and back_to_messages(row["system"], pairs) == conv
    # a Hugging Face datasets folder
    hf = datasets.load_from_disk(str(out / "hf"))
    assert hf["messages"] == CONVERSATIONS and hf["use_count"] == [1, 2]
    # the original records, as before
    assert [json.loads(x)["messages"] for x in (out / "selected.jsonl").read_text().splitlines()] == CONVERSATIONS


def test_scores_only_when_asked_and_formats_checked(run_dir, tmp_path, capsys):
    assert main(["export", str(run_dir), "--out", str(tmp_path / "o"), "--to", "messages"]) == 0
    row = json.loads((tmp_path / "o" / "selected_messages.jsonl").read_text().splitlines()[0])
    assert set(row) == {"messages"} and not (tmp_path / "o" / "selected.jsonl").exists()
    assert main(["export", str(run_dir), "--out", str(tmp_path / "o"), "--to", "messages,jsonl"]) == 2
    assert "unknown format(s) jsonl" in capsys.readouterr().err


def test_exchanges_keep_turns_alternating():
    odd = [
        {"role": "user", "content": "a"},
        {"role": "user", "content": "b"},
        {"role": "assistant", "content": "c"},
        {"role": "assistant", "content": "d"},
    ]
    assert exchanges(odd) == ("", [("a\n\nb", "c\n\nd")])
    assert exchanges([{"role": "assistant", "content": "x"}]) == ("", [("", "x")])
    assert to_alpaca(CONVERSATIONS[1])["history"] == [["Name a colour.", "Red."]]
    assert to_sharegpt(CONVERSATIONS[0]) == {
        "conversations": [{"from": "human", "value": "What is 2 + 2?"}, {"from": "gpt", "value": "4"}],
        "system": "",
    }
