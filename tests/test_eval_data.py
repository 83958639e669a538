"""`lead-ray eval-data`: the Hub's eval sets written in the layout `lead-ray eval` reads (a stand-in for the Hub:
this machine has no internet), and one clear error naming what is missing where the Hub cannot be reached."""

import pytest

from lead_ray.eval.fetch import fetch_eval_sets
from lead_ray.eval.sets import EvalDataError, load_sets

HUB = {
    ("openai/gsm8k", "test"): [{"question": "What is 2 + 3?", "answer": "2 + 3 = 5\n#### 5"}],
    ("cais/mmlu", "test"): [
        {"question": "2 + 2 =", "subject": "elementary_mathematics", "choices": ["3", "4", "5", "6"], "answer": 1},
        {
            "question": "H2O is",
            "subject": "college_chemistry",
            "choices": ["water", "salt", "air", "fire"],
            "answer": 0,
        },
    ],
    ("cais/mmlu", "validation"): [
        {"question": "1 + 1 =", "subject": "elementary_mathematics", "choices": ["2", "3", "4", "5"], "answer": 0}
    ],
    ("cais/mmlu", "dev"): [],
    ("yizhongw/self_instruct", "train"): [  # `datasets` gives a sequence of dicts as a dict of lists
        {"id": "t0", "instruction": "Shorten this.", "instances": {"input": ["a long text"], "output": ["short"]}},
        {"id": "t1", "instruction": "Say hi.", "instances": [{"input": "", "output": "hi"}]},
    ],
}


def stand_in(repo, config, split):
    return HUB[(repo, split)]


def test_the_fetched_sets_are_what_lead_ray_eval_reads(tmp_path):
    assert fetch_eval_sets(tmp_path, load=stand_in) == {"gsm8k": 1, "mmlu": 3, "self_instruct": 2}
    sets = load_sets(["gsm8k", "mmlu", "self_instruct"], tmp_path, 0, "test", [])
    assert sets["gsm8k"][0]["target"] == "5" and sets["gsm8k"][0]["messages"][0]["content"] == "What is 2 + 3?"
    assert sorted(item["answer"] for item in sets["mmlu"]) == [0, 1]  # B for 2 + 2, A for water
    assert {item["subject"] for item in sets["mmlu"]} == {"elementary mathematics", "college chemistry"}
    assert len(load_sets(["mmlu"], tmp_path, 0, "val", [])["mmlu"]) == 1
    assert [s["messages"][-1]["content"] for s in sets["self_instruct"]] == ["short", "hi"]


def test_a_set_the_hub_refuses_is_named_with_its_place_and_the_others_are_written(tmp_path):
    def no_mmlu(repo, config, split):
        if repo == "cais/mmlu":
            raise ConnectionError("Couldn't reach 'cais/mmlu' on the Hub\nretries exhausted")
        return stand_in(repo, config, split)

    with pytest.raises(EvalDataError, match=r"mmlu \(cais/mmlu\): Couldn't reach 'cais/mmlu' on the Hub; put it at "):
        fetch_eval_sets(tmp_path, load=no_mmlu)
    assert (tmp_path / "gsm8k" / "test.jsonl").exists() and not (tmp_path / "mmlu").exists()


def test_without_the_hub_one_line_names_every_set_and_where_it_goes(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(EvalDataError) as e:
        fetch_eval_sets(tmp_path)
    assert "HF_HUB_OFFLINE is set" in str(e.value) and "\n" not in str(e.value)
    for where in ("gsm8k/test.jsonl", "mmlu/<split>", "self_instruct_user_oriented/user_oriented_instructions.jsonl"):
        assert str(tmp_path / where) in str(e.value)
