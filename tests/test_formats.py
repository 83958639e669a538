"""Format readers and sample validation (no Ray)."""

import json

import pytest

from lead_ray.data.formats import READERS, Reject, detect_format, normalise, rows_in, sample_id
from tests.conftest import FIXTURES


def convert(record, fmt=None, max_chars=10_000):
    fmt = fmt or detect_format(record)
    return [normalise(c, max_chars) for c in READERS[fmt](record)]


def roles_contents(sample):
    return [(m["role"], m["content"]) for m in sample[0]]


def test_alpaca_with_and_without_input():
    (s,) = convert({"instruction": "Add the numbers.", "input": "2 and 3", "output": "5"})
    assert roles_contents(s) == [("user", "Add the numbers.\n\n2 and 3"), ("assistant", "5")]
    (s,) = convert({"instruction": "Say hi.", "input": "", "response": " Hi! "})
    assert roles_contents(s) == [("user", "Say hi."), ("assistant", "Hi!")]


def test_prompt_completion_strips_endoftext():
    (s,) = convert({"prompt": "Topic of: stocks fall\n", "completion": " Business<|endoftext|>"})
    assert roles_contents(s) == [("user", "Topic of: stocks fall"), ("assistant", "Business")]


def test_question_answer():
    (s,) = convert({"question": "1+1?", "answer": "2\n#### 2"})
    assert roles_contents(s) == [("user", "1+1?"), ("assistant", "2\n#### 2")]


def test_sharegpt_multi_turn_roles_and_trailing_question_cut():
    records = json.loads((FIXTURES / "sharegpt_chat.json").read_text())
    assert {detect_format(r) for r in records} == {"sharegpt"}
    (s,) = convert(records[0])
    assert [m["role"] for m in s[0]] == ["system", "user", "assistant", "user", "assistant"]
    (s,) = convert(records[1])  # ends with an unanswered human turn
    assert [m["role"] for m in s[0]] == ["user", "assistant"] and s[3] == 1
    (s,) = convert(records[2])  # 'chatgpt' speaker
    assert s[0][1]["role"] == "assistant"


def test_openai_messages_keep_turns():
    records = [json.loads(line) for line in (FIXTURES / "messages_chat.jsonl").read_text().splitlines()]
    (s,) = convert(records[2])
    assert roles_contents(s) == [
        ("user", "What is 12 times 12?"),
        ("assistant", "144"),
        ("user", "And 13 times 13?"),
        ("assistant", "169"),
    ]
    assert s[1] == len("What is 12 times 12?") + len("And 13 times 13?") and s[2] == 6


def test_self_instruct_expands_instances():
    r = {
        "instruction": "Classify the sentiment.",
        "instances": [{"input": "I love it", "output": "positive"}, {"input": "", "output": "neutral"}],
    }
    assert detect_format(r) == "self_instruct" and rows_in(r, "self_instruct") == 2
    a, b = convert(r)
    assert roles_contents(a) == [("user", "Classify the sentiment.\n\nI love it"), ("assistant", "positive")]
    assert roles_contents(b)[0] == ("user", "Classify the sentiment.")


@pytest.mark.parametrize(
    "record, reason, field",
    [
        ({"instruction": "x"}, "missing_field", "output"),  # forced alpaca below
        ({"instruction": "x", "output": 5}, "wrong_type", "output"),
        ({"instruction": "   ", "output": "y"}, "empty_prompt", "instruction"),
        ({"instruction": "x", "output": ""}, "empty_response", "output"),
        ({"prompt": "x", "completion": "<|endoftext|>"}, "empty_response", "completion"),
        ({"question": "x", "answer": None}, "missing_field", "answer"),
        ({"conversations": "hi"}, "wrong_type", "conversations"),
        ({"conversations": [{"from": "alien", "value": "x"}]}, "bad_role", "conversations[0].from"),
        ({"conversations": [{"from": "gpt", "value": "x"}]}, "no_prompt", "conversations[0].value"),
        ({"conversations": [{"from": "human", "value": "x"}]}, "empty_response", None),
        ({"conversations": [5]}, "wrong_type", "conversations[0]"),
        (
            {"messages": [{"role": "user", "content": ["a"]}, {"role": "assistant", "content": "b"}]},
            "wrong_type",
            "messages[0].content",
        ),
        (
            {"messages": [{"role": "user"}, {"role": "assistant", "content": "b"}]},
            "missing_field",
            "messages[0].content",
        ),
        ({"instruction": "x", "instances": []}, "wrong_type", "instances"),
        ({"instruction": "x", "instances": [{"input": "a"}]}, "missing_field", "instances[0].output"),
        ({"instruction": "bell \x07 here", "output": "y"}, "control_character", "instruction"),
        ({"instruction": "nul", "output": "y\x00"}, "control_character", "output"),
        ({"instruction": "x" * 60, "output": "y" * 50}, "too_long", None),
    ],
)
def test_rejects_name_reason_and_field(record, reason, field):
    fmt = detect_format(record) or "alpaca"
    with pytest.raises(Reject) as e:
        convert(record, fmt, max_chars=100)
    assert (e.value.reason, e.value.field) == (reason, field)
    if field:
        assert field in e.value.message


def test_detect_format_unknown():
    assert detect_format({"text": "hello"}) is None
    assert detect_format(["a", "b"]) is None


def test_ids_stable_under_trivial_differences_and_distinct_otherwise():
    a = convert({"instruction": "Caf\u00e9 menu?", "output": "Coffee."})[0][0]
    b = convert({"instruction": "  Cafe\u0301 menu?\n", "output": "Coffee. "})[0][0]  # NFD + whitespace
    c = convert({"instruction": "Café menu?", "output": "Tea."})[0][0]
    d = convert(
        {
            "messages": [
                {"role": "system", "content": "Café menu?"},
                {"role": "user", "content": "q"},
                {"role": "assistant", "content": "Coffee."},
            ]
        }
    )[0][0]
    assert sample_id(a) == sample_id(b)
    assert len({sample_id(a), sample_id(c), sample_id(d)}) == 3
    assert len(sample_id(a)) == 32 and int(sample_id(a), 16) >= 0
