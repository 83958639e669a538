"""`lead-ray eval-data --out DIR`: the eval sets `lead-ray eval` reads, fetched from the Hugging Face Hub with
`datasets` and written in the layout of eval/sets.py:

  DIR/gsm8k/test.jsonl                                           openai/gsm8k (main, test): question, answer
  DIR/mmlu/{test,val,dev}/<subject>_<split>.csv                  cais/mmlu (all): question, A, B, C, D, answer
  DIR/self_instruct_user_oriented/user_oriented_instructions.jsonl   yizhongw/self_instruct (human_eval)

Where the Hub cannot be reached, each set that could not be fetched is named with the files to put there by hand;
the sets that were fetched stay written. Files are written then renamed, so a rerun replaces them whole.
"""

from __future__ import annotations

import csv
import io
import json
from collections import defaultdict
from pathlib import Path

from lead_ray.eval.sets import LETTERS, EvalDataError
from lead_ray.files import write_text_atomic

SOURCES = {
    "gsm8k": ("openai/gsm8k", "main"),
    "mmlu": ("cais/mmlu", "all"),
    "self_instruct": ("yizhongw/self_instruct", "human_eval"),
}
MMLU_SPLITS = {"test": "test", "validation": "val", "dev": "dev"}  # the Hub's split name → lead-ray's folder
WHERE = {
    "gsm8k": "gsm8k/test.jsonl",
    "mmlu": "mmlu/<split>/<subject>_<split>.csv",
    "self_instruct": "self_instruct_user_oriented/user_oriented_instructions.jsonl",
}


def hub_unreachable(timeout_s: float = 5.0) -> str | None:
    """Why the Hub cannot be used right now (offline mode, no route, no name service), or None: one quick request,
    instead of `datasets`' minute of retries per set."""
    import os
    import urllib.request

    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0", "false"):
        return "HF_HUB_OFFLINE is set"
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")
    try:
        urllib.request.urlopen(f"{endpoint}/api/datasets/{SOURCES['gsm8k'][0]}", timeout=timeout_s).close()
    except Exception as e:  # URLError, timeouts, HTTP errors: the reason, in a line
        return f"{endpoint} did not answer ({str(e).splitlines()[0] if str(e) else type(e).__name__})"
    return None


def _hub_load(repo: str, config: str, split: str):
    from datasets import load_dataset

    return load_dataset(repo, config, split=split)


class _HubError(Exception):
    """A set the Hub did not give (no network, offline mode, a renamed dataset): its reason, in one line."""


def _guarded(load):
    def call(repo: str, config: str, split: str):
        try:
            return load(repo, config, split)
        except Exception as e:  # noqa: BLE001 - whatever `datasets` raises, said in a line
            raise _HubError(str(e).splitlines()[0] if str(e) else type(e).__name__) from e

    return call


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, text)


def _jsonl(records) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


def write_gsm8k(out: Path, load) -> int:
    rows = [{"question": r["question"], "answer": r["answer"]} for r in load(*SOURCES["gsm8k"], "test")]
    _write(out / WHERE["gsm8k"], _jsonl(rows))
    return len(rows)


def write_mmlu(out: Path, load) -> int:
    n = 0
    for hub_split, folder in MMLU_SPLITS.items():
        by_subject = defaultdict(list)
        for r in load(*SOURCES["mmlu"], hub_split):
            by_subject[r["subject"]].append([r["question"], *r["choices"], LETTERS[int(r["answer"])]])
        for subject, rows in by_subject.items():
            text = io.StringIO()
            csv.writer(text, lineterminator="\n").writerows(rows)
            _write(out / "mmlu" / folder / f"{subject}_{folder}.csv", text.getvalue())
            n += len(rows)
    return n


def _instances(value) -> list[dict]:
    """The Hub's `instances` is a list of {input, output} or, as `datasets` stores a sequence of dicts, a dict of
    lists."""
    if isinstance(value, dict):
        return [{"input": i, "output": o} for i, o in zip(value["input"], value["output"])]
    return [{"input": x["input"], "output": x["output"]} for x in value]


def write_self_instruct(out: Path, load) -> int:
    rows = [
        {"id": r["id"], "instruction": r["instruction"], "instances": _instances(r["instances"])}
        for r in load(*SOURCES["self_instruct"], "train")
    ]
    _write(out / WHERE["self_instruct"], _jsonl(rows))
    return len(rows)


WRITERS = {"gsm8k": write_gsm8k, "mmlu": write_mmlu, "self_instruct": write_self_instruct}


def fetch_eval_sets(out: str | Path, sets=tuple(WRITERS), load=_hub_load) -> dict[str, int]:
    """Fetch each set and write it under `out`; {set: items written}. Raises EvalDataError naming every set that
    could not be fetched, why, and where its files go, after writing the others."""
    out, written, failed = Path(out), {}, []
    unreachable = hub_unreachable() if load is _hub_load else None
    if unreachable:
        places = ", ".join(f"{name} at {out / WHERE[name]}" for name in sets)
        raise EvalDataError(f"the Hugging Face Hub cannot be reached: {unreachable}. Put {places} by hand")
    for name in sets:
        try:
            written[name] = WRITERS[name](out, _guarded(load))
        except _HubError as e:
            failed.append(f"{name} ({SOURCES[name][0]}): {e}; put it at {out / WHERE[name]}")
    if failed:
        raise EvalDataError("could not fetch from the Hugging Face Hub: " + " | ".join(failed))
    return written
