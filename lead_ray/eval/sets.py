"""The evaluation sets, read into one shape: a list of items with `messages` (and task fields).

  holdout        the run's held-out split of the pool (never selectable, never warmed up on)
  gsm8k          eval/gsm8k/test.jsonl: question → worked answer; `target` = the number after ####
  self_instruct  eval/self_instruct_user_oriented/: instruction (+ first instance input) → output
  mmlu           eval/mmlu/<split>/*.csv (no header: question, A, B, C, D, answer): `choices` holds
                 four conversations, one per answer letter, `answer` the right one's position

`max_samples` keeps the first items in file order; for MMLU it takes subjects in turn, so a small
sample still spans every subject. A missing or unreadable file is an error naming it.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import orjson

from lead_ray.data.formats import Reject, read_question_answer, read_self_instruct

LETTERS = "ABCD"


class EvalDataError(ValueError):
    """An eval file is missing or a record in it is malformed (the message names file and line)."""


def _jsonl(path: Path):
    if not path.is_file():
        raise EvalDataError(f"{path}: eval file not found (set eval.data_dir, or leave this set out of eval.sets)")
    for n, line in enumerate(path.read_bytes().split(b"\n"), start=1):
        if line.strip():
            try:
                yield n, orjson.loads(line)
            except orjson.JSONDecodeError as e:
                raise EvalDataError(f"{path}:{n}: not valid JSON ({e})") from None


def final_number(text: str) -> str | None:
    """GSM8K's answer: the number after '####', else the last number in the text; commas dropped."""
    tail = text.split("####")[-1] if "####" in text else text
    nums = re.findall(r"-?\d[\d,]*(?:\.\d+)?", tail)
    if not nums:
        return None
    value = nums[0 if "####" in text else -1].replace(",", "")
    return value[:-2] if value.endswith(".0") else value


def gsm8k(data_dir: Path, limit: int) -> list[dict]:
    path = data_dir / "gsm8k" / "test.jsonl"
    out = []
    for n, r in _jsonl(path):
        try:
            messages = read_question_answer(r)[0]
        except Reject as e:
            raise EvalDataError(f"{path}:{n}: field '{e.field}': {e.message}") from None
        out.append({"messages": messages, "target": final_number(r["answer"]), "line": n})
        if limit and len(out) >= limit:
            break
    return out


def self_instruct(data_dir: Path, limit: int) -> list[dict]:
    path = data_dir / "self_instruct_user_oriented" / "user_oriented_instructions.jsonl"
    out = []
    for n, r in _jsonl(path):
        try:
            messages = read_self_instruct({**r, "instances": r.get("instances", [])[:1]})[0]
        except Reject as e:
            raise EvalDataError(f"{path}:{n}: field '{e.field}': {e.message}") from None
        out.append({"messages": messages, "line": n})
        if limit and len(out) >= limit:
            break
    return out


def mmlu(data_dir: Path, split: str, limit: int) -> list[dict]:
    folder = data_dir / "mmlu" / split
    files = sorted(folder.glob("*.csv"))
    if not files:
        raise EvalDataError(f"{folder}: no MMLU CSV files (set eval.data_dir or eval.mmlu_split)")
    per_subject = []
    for f in files:
        subject = f.stem.rsplit("_", 1)[0].replace("_", " ")
        rows = []
        with open(f, newline="", encoding="utf-8") as fh:
            for n, row in enumerate(csv.reader(fh), start=1):
                if len(row) != 6 or row[5].strip() not in LETTERS:
                    raise EvalDataError(f"{f}:{n}: expected question, A, B, C, D, answer (A-D); got {len(row)} fields")
                question = (
                    f"The following is a multiple choice question about {subject}.\n\n{row[0]}\n"
                    + "".join(f"{L}. {row[1 + i]}\n" for i, L in enumerate(LETTERS))
                    + "Answer:"
                )
                rows.append(
                    {
                        "choices": [
                            [{"role": "user", "content": question}, {"role": "assistant", "content": L}]
                            for L in LETTERS
                        ],
                        "answer": LETTERS.index(row[5].strip()),
                        "subject": subject,
                        "line": n,
                    }
                )
        per_subject.append(rows)
    out, i = [], 0
    while any(i < len(r) for r in per_subject) and not (limit and len(out) >= limit):
        for rows in per_subject:  # round-robin over subjects
            if i < len(rows) and not (limit and len(out) >= limit):
                out.append(rows[i])
        i += 1
    return out


def load_sets(
    names: list[str],
    data_dir: str | Path,
    limit: int,
    mmlu_split: str,
    holdout: list[list[dict]],
    sizes: dict[str, int] | None = None,
    offsets: dict[str, int] | None = None,
) -> dict[str, list[dict]]:
    """`limit` items per set, or `sizes[name]` for the sets it names (0 = all), after skipping `offsets[name]`."""
    data_dir = Path(data_dir)
    sizes, offsets = sizes or {}, offsets or {}
    for key, given in (("set_sizes", sizes), ("set_offsets", offsets)):
        unknown = set(given) - set(names)
        if unknown:
            raise EvalDataError(f"eval.{key} names sets that are not in eval.sets: {', '.join(sorted(unknown))}")
    sets = {}
    for name in names:
        n, skip = sizes.get(name, limit), offsets.get(name, 0)
        if skip < 0:
            raise EvalDataError(f"eval.set_offsets.{name} = {skip}: must be 0 or more")
        wanted = n + skip if n else 0
        if name == "holdout":
            items = [{"messages": m} for m in (holdout[:wanted] if wanted else holdout)]
        elif name == "gsm8k":
            items = gsm8k(data_dir, wanted)
        elif name == "self_instruct":
            items = self_instruct(data_dir, wanted)
        elif name == "mmlu":
            items = mmlu(data_dir, mmlu_split, wanted)
        if skip and len(items) <= skip:
            raise EvalDataError(f"eval.set_offsets.{name} = {skip} skips all {len(items)} items of {name}")
        sets[name] = items[skip:]
    return sets
