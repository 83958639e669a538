"""`lead-ray eval`: the set readers, the metrics, and in-process vs Ray Data giving the same numbers."""

import json
import math

import numpy as np
import pytest

from lead_ray.config import load_config
from lead_ray.eval.evaluate import evaluate, per_item, summarise
from lead_ray.eval.sets import EvalDataError, final_number, load_sets, mmlu
from lead_ray.models.load import materialize_model
from tests.conftest import write_jsonl
from tests.test_online import toy_pool


def fake_eval_dir(root):
    write_jsonl(
        root / "gsm8k" / "test.jsonl",
        [
            {"question": f"What is {a} + {a}?", "answer": f"{a} + {a} = <<{a}+{a}={2 * a}>>{2 * a}\n#### {2 * a:,}"}
            for a in (2, 600, 7)
        ],
    )
    write_jsonl(
        root / "self_instruct_user_oriented" / "user_oriented_instructions.jsonl",
        [
            {"id": "t0", "motivation_app": "x", "instruction": "Say hi.", "instances": [{"input": "", "output": "hi"}]},
            {
                "id": "t1",
                "motivation_app": "x",
                "instruction": "Echo.",
                "instances": [{"input": "abc", "output": "abc"}],
            },
        ],
    )
    for subject in ("anatomy", "virology"):
        f = root / "mmlu" / "test" / f"{subject}_test.csv"
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text("".join(f'"{subject} q{i}?",w,x,y,z,{"ABCD"[i % 4]}\n' for i in range(3)))
    return root


def test_final_number():
    assert final_number("so 3 + 4 = 7\n#### 1,234") == "1234"
    assert final_number("the answer is 12 then 18.") == "18"
    assert final_number("#### -5.0") == "-5"
    assert final_number("no digits") is None


def test_mmlu_takes_subjects_in_turn_and_names_bad_lines(tmp_path):
    root = fake_eval_dir(tmp_path)
    items = mmlu(root, "test", 3)
    assert [it["subject"] for it in items] == ["anatomy", "virology", "anatomy"]
    assert len(items[0]["choices"]) == 4 and items[1]["answer"] == 0
    (root / "mmlu" / "test" / "virology_test.csv").write_text("q,a,b,c,d,A\nbroken,row\n")
    with pytest.raises(EvalDataError, match=r"virology_test.csv:2"):
        mmlu(root, "test", 0)
    with pytest.raises(EvalDataError, match="eval file not found"):
        load_sets(["gsm8k"], tmp_path / "nowhere", 0, "test", [])


def test_offsets_skip_the_items_an_earlier_comparison_saw(tmp_path):
    root = fake_eval_dir(tmp_path)
    first = load_sets(["gsm8k", "mmlu"], root, 0, "test", [], {"gsm8k": 1, "mmlu": 3})
    fresh = load_sets(["gsm8k", "mmlu"], root, 0, "test", [], {"gsm8k": 1, "mmlu": 3}, {"gsm8k": 1, "mmlu": 3})
    assert [it["line"] for it in first["gsm8k"]] == [1] and [it["line"] for it in fresh["gsm8k"]] == [2]
    seen = {(it["subject"], it["line"]) for it in first["mmlu"]}
    assert len(fresh["mmlu"]) == 3 and seen.isdisjoint((it["subject"], it["line"]) for it in fresh["mmlu"])
    rest = load_sets(["gsm8k"], root, 0, "test", [], None, {"gsm8k": 2})  # size 0 = all: every item after 2
    assert [it["line"] for it in rest["gsm8k"]] == [3]
    with pytest.raises(EvalDataError, match="set_offsets.gsm8k = 3 skips all 3 items"):
        load_sets(["gsm8k"], root, 0, "test", [], None, {"gsm8k": 3})
    with pytest.raises(EvalDataError, match="set_offsets names sets that are not in eval.sets: mmlu"):
        load_sets(["gsm8k"], root, 0, "test", [], None, {"mmlu": 1})


def test_summaries():
    items = [{"answer": 1}, {"answer": 3}]
    m = summarise("mmlu", items, {"losses": [2, 1, 3, 4, 1, 2, 3, 0.5]})
    assert m["accuracy"] == 1.0 and m["nll"] == pytest.approx(0.75)
    m = summarise("gsm8k", [{"target": "4"}, {"target": "9"}], {"losses": [1.0, np.nan], "generated": ["= 4", "8"]})
    assert m["exact_match"] == 0.5 and m["nll"] == 1.0 and m["unscored"] == 1
    scores = per_item("mmlu", items, {"losses": [2, 1, 3, 4, 1, 2, 3, 0.5]})
    assert scores["nll"] == [1.0, 0.5] and scores["correct"] == [1.0, 1.0]
    assert scores["choice_nll"][0] == pytest.approx(1 + math.log(sum(math.exp(-x) for x in (2, 1, 3, 4))))


def test_mmlu_choice_nll_ignores_how_much_mass_the_letters_hold():
    """The correct letter's NLL renormalised over the four letters: log 4 when the letters are equally likely,
    however unlikely letters are; the plain NLL when the letters hold all the mass."""
    items = [{"answer": 0}, {"answer": 2}]
    even = [9.0] * 4  # letters equally (and very) unlikely
    whole = [-math.log(p) for p in (0.1, 0.2, 0.6, 0.1)]  # the letters hold all the mass
    m = summarise("mmlu", items, {"losses": even + whole})
    scores = per_item("mmlu", items, {"losses": even + whole})
    assert scores["choice_nll"] == pytest.approx([math.log(4), -math.log(0.6)])
    assert scores["nll"] == pytest.approx([9.0, -math.log(0.6)])
    assert m["choice_nll"] == pytest.approx((math.log(4) - math.log(0.6)) / 2) and m["choice_nll_chance"] == math.log(4)
    far = per_item("mmlu", items[:1], {"losses": [900.0, 901.0, 901.0, 901.0]})  # exp(-900) underflows to 0
    assert far["choice_nll"] == pytest.approx([-math.log(1 / (1 + 3 * math.exp(-1)))])


def test_in_process_and_ray_data_agree(ray_session, tmp_path):
    toy_pool(tmp_path)
    data = fake_eval_dir(tmp_path / "eval")
    overrides = [
        f"work_dir={tmp_path}",
        "model.max_length=64",
        "model.tiny.hidden_size=32",
        "model.tiny.intermediate_size=64",
        f"eval.data_dir={data}",
        "eval.holdout_fraction=0.1",
        "eval.max_new_tokens=4",
    ]
    cfg = load_config(None, overrides + ["eval.generate=true"])
    model = materialize_model(cfg.model, tmp_path / "models" / "base", cfg.seed)
    local = evaluate(cfg, tmp_path / "run", model_dir=model, out=tmp_path / "local.json")
    cfg_ray = load_config(None, overrides + ["eval.ray_min_samples=1", "eval.generate=true", "eval.actors=2"])
    remote = evaluate(cfg_ray, tmp_path / "run", model_dir=model, out=tmp_path / "ray.json")
    assert local["mode"] == "in_process" and remote["mode"] == "ray_data (2 CPU actors)"  # eval.actors, not auto
    assert set(local["sets"]) == {"holdout", "gsm8k", "self_instruct", "mmlu"}
    assert local["sets"]["mmlu"]["n"] == 6 and local["sets"]["gsm8k"]["n_generated"] == 3
    for name, m in local["sets"].items():
        assert m["nll"] == pytest.approx(remote["sets"][name]["nll"], rel=1e-5), name
        assert m["nll"] > 0
    assert local["sets"]["holdout"]["n"] == remote["sets"]["holdout"]["n"] > 0
    assert (
        json.loads((tmp_path / "local.json").read_text())["sets"]["mmlu"]["accuracy"]
        == local["sets"]["mmlu"]["accuracy"]
    )
    # per-item scores beside it, in the same order in both modes: what paired comparisons read
    items, items_ray = (json.loads((tmp_path / f).read_text()) for f in ("local_items.json", "ray_items.json"))
    assert len(items["mmlu"]["correct"]) == 6 and len(items["gsm8k"]["exact_match"]) == 3
    assert np.nanmean(items["holdout"]["nll"]) == pytest.approx(local["sets"]["holdout"]["nll"])
    assert np.allclose(items["self_instruct"]["nll"], items_ray["self_instruct"]["nll"], rtol=1e-5, equal_nan=True)


def test_mmlu_in_one_pass_reads_the_letter_a_full_forward_would_score(tmp_path):
    """−log p(letter) from the prompt's last position equals that token's NLL in the whole conversation."""
    import torch

    from lead_ray.eval.evaluate import EvalWorker
    from lead_ray.models.template import IGNORE, encode_conversation

    cfg = load_config(None, ["model.max_length=128", "model.tiny.hidden_size=32", "model.tiny.intermediate_size=64"])
    model = materialize_model(cfg.model, tmp_path / "base", 0)
    worker = EvalWorker(str(model), None, cfg.model, 4096, 8, 4, 2)
    items = mmlu(fake_eval_dir(tmp_path / "eval"), "test", 0)
    got = np.array(worker.letter_nll(items)).reshape(-1, 4)
    for q, it in enumerate(items):
        for c, conv in enumerate(it["choices"]):
            e = encode_conversation(worker.tok, conv, 1 << 30)
            pos = next(i for i, x in enumerate(e.labels) if x != IGNORE)
            with torch.inference_mode():
                logits = worker.model(input_ids=torch.tensor([e.input_ids])).logits[0, pos - 1]
            assert got[q, c] == pytest.approx(float(-torch.log_softmax(logits, -1)[e.input_ids[pos]]), abs=1e-4)
    assert per_item("mmlu", items, {"losses": got.reshape(-1).tolist()})["correct"] == [
        float(np.argmin(row) == it["answer"]) for row, it in zip(got, items)
    ]


class _SlowFirst:
    """A unit worker whose first unit finishes last."""

    def __init__(self, delay: float):
        self.delay = delay

    def process(self, i: int) -> dict:
        import time

        time.sleep(self.delay if i == 0 else 0.0)
        return {"i": i}


def test_unit_results_come_back_in_the_units_order(ray_session):
    """Eval pairs each result with its unit (lead_ray/eval/evaluate.py `_merge_units`): with two actors the first
    unit finishes after the others, and the results must still come back in the units' order, from actors and
    from tasks."""
    from lead_ray.stages import run_units, run_units_on_actors

    units = [{"i": i} for i in range(6)]
    got = run_units_on_actors(units, _SlowFirst, {"delay": 1.5}, actors=2, num_cpus=0.5)
    assert [r["i"] for r in got] == list(range(6))
    assert [r["i"] for r in run_units(units, lambda i: {"i": i}, {}, "Identity")] == list(range(6))
