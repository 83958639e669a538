"""`lead-ray export`: a run's selected subset in the formats the next tool reads.

Always:
  selected.parquet          id, source, messages, final U, IU₀, use count, rounds picked, clusters
`--to` (comma-separated; default `source`):
  source    selected.jsonl: every sample as its original input record (the JSONL line as it was, a
            JSON array's element, or a Parquet row), in selection order
  messages  selected_messages.jsonl: {"messages": [{role, content}, ...]}, the conversational format
            Hugging Face TRL's SFTTrainer reads
  sharegpt  selected_sharegpt.json: [{"conversations": [{from, value}], "system"}], and
  alpaca    selected_alpaca.json: [{instruction, input, output, system, history}], each with its entry
            in dataset_info.json, the way LLaMA-Factory (and its data/dataset_info.json) declares a dataset
  hf        hf/: a Hugging Face `datasets` folder (`datasets.load_from_disk`) with a `messages` column
`--with-scores` adds lead-ray's per-sample columns (SCORE_COLUMNS) to messages, sharegpt, alpaca and hf.
"""

from __future__ import annotations

from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from lead_ray.files import atomic_path, require, write_bytes_atomic, write_parquet_atomic


def write_source_format(run_dir: Path) -> Path:
    """RUN_DIR/selected.jsonl from RUN_DIR/selected.parquet: what `lead-ray run` leaves beside it."""
    sel = pq.read_table(
        require(Path(run_dir) / "selected.parquet", None, "selected subset", "run"), columns=["file", "line"]
    )
    export_source_format(sel, Path(run_dir) / "selected.jsonl")
    return Path(run_dir) / "selected.jsonl"


EXPORT_FORMATS = ("source", "messages", "sharegpt", "alpaca", "hf")
SCORE_COLUMNS = ("u", "iu0", "ifd", "use_count", "difficulty_cluster", "task_cluster")
SHAREGPT_ROLE = {"user": "human", "assistant": "gpt"}


def export_run(
    run_dir: Path, out: Path, min_use: int = 1, to: tuple[str, ...] = ("source",), with_scores: bool = False
) -> int:
    """The selected subset of a finished run (samples used at least `min_use` times) into `out`, as
    Parquet and in every format of `to`; returns the number of samples."""
    unknown = set(to) - set(EXPORT_FORMATS)
    if unknown:
        raise ValueError(f"export formats {sorted(unknown)} unknown; choose from {', '.join(EXPORT_FORMATS)}")
    sel = pq.read_table(require(Path(run_dir) / "selected.parquet", None, "selected subset", "run"))
    sel = sel.filter(pc.greater_equal(sel["use_count"], min_use))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_parquet_atomic(sel, out / "selected.parquet")
    if "source" in to:
        export_source_format(sel, out / "selected.jsonl")
    rows = _rows(sel, with_scores) if set(to) - {"source"} else []
    if "messages" in to:
        write_bytes_atomic(out / "selected_messages.jsonl", b"".join(orjson.dumps(r) + b"\n" for r in rows))
    tool_formats = [f for f in ("sharegpt", "alpaca") if f in to]
    for fmt in tool_formats:
        records = [{**(to_sharegpt if fmt == "sharegpt" else to_alpaca)(r["messages"]), **_scores(r)} for r in rows]
        write_bytes_atomic(out / f"selected_{fmt}.json", orjson.dumps(records, option=orjson.OPT_INDENT_2))
    if tool_formats:
        info = {f"lead_ray_{fmt}": dataset_info_entry(fmt, f"selected_{fmt}.json") for fmt in tool_formats}
        write_bytes_atomic(out / "dataset_info.json", orjson.dumps(info, option=orjson.OPT_INDENT_2))
    if "hf" in to:
        import datasets

        with atomic_path(out / "hf") as tmp:
            datasets.Dataset.from_list(rows).save_to_disk(str(tmp))
    return sel.num_rows


def _rows(sel: pa.Table, with_scores: bool) -> list[dict]:
    keep = ["messages", *(c for c in SCORE_COLUMNS if with_scores and c in sel.column_names)]
    return sel.select(keep).to_pylist()


def _scores(row: dict) -> dict:
    return {k: v for k, v in row.items() if k in SCORE_COLUMNS}


def exchanges(messages: list[dict]) -> tuple[str, list[tuple[str, str]]]:
    """(system prompt, [(user, assistant), ...]): consecutive turns of one role joined, so the turns
    alternate as LLaMA-Factory requires; an assistant turn with no user turn before it gets an empty one."""
    system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
    pairs: list[list] = []
    for m in messages:
        if m["role"] == "user" and pairs and pairs[-1][1] is None:
            pairs[-1][0] += "\n\n" + m["content"]  # consecutive user turns
        elif m["role"] == "user":
            pairs.append([m["content"], None])
        elif m["role"] == "assistant" and not pairs:
            pairs.append(["", m["content"]])
        elif m["role"] == "assistant" and pairs[-1][1] is None:
            pairs[-1][1] = m["content"]
        elif m["role"] == "assistant":
            pairs[-1][1] += "\n\n" + m["content"]  # consecutive assistant turns
    return system, [(u, a or "") for u, a in pairs]


def to_sharegpt(messages: list[dict]) -> dict:
    """ShareGPT as LLaMA-Factory reads it: human/gpt turns alternating, the system prompt apart."""
    system, pairs = exchanges(messages)
    turns = [t for u, a in pairs for t in ({"from": "human", "value": u}, {"from": "gpt", "value": a})]
    return {"conversations": turns, "system": system}


def to_alpaca(messages: list[dict]) -> dict:
    """Alpaca as LLaMA-Factory reads it: the last exchange as instruction/output, earlier ones as history."""
    system, pairs = exchanges(messages)
    history = [list(p) for p in pairs[:-1]]
    return {"instruction": pairs[-1][0], "input": "", "output": pairs[-1][1], "system": system, "history": history}


def dataset_info_entry(fmt: str, file_name: str) -> dict:
    """The dataset_info.json entry LLaMA-Factory needs to load a file of this format."""
    if fmt == "sharegpt":
        return {
            "file_name": file_name,
            "formatting": "sharegpt",
            "columns": {"messages": "conversations", "system": "system"},
            "tags": {"role_tag": "from", "content_tag": "value", "user_tag": "human", "assistant_tag": "gpt"},
        }
    return {
        "file_name": file_name,
        "formatting": "alpaca",
        "columns": {
            "prompt": "instruction",
            "query": "input",
            "response": "output",
            "system": "system",
            "history": "history",
        },
    }


def export_source_format(sel: pa.Table, dest: Path) -> None:
    """Each selected sample as its original input record (JSONL line, JSON-array element or Parquet row)."""
    wanted: dict[str, set[int]] = {}
    for f, line in zip(sel["file"].to_pylist(), sel["line"].to_pylist()):
        wanted.setdefault(f, set()).add(line)
    records: dict[tuple[str, int], bytes] = {}
    for f, lines in wanted.items():
        records.update(_original_records(f, lines))
    with atomic_path(dest) as tmp, open(tmp, "wb") as out:
        for f, line in zip(sel["file"].to_pylist(), sel["line"].to_pylist()):
            out.write(records[(f, line)] + b"\n")


def _original_records(path: str, lines: set[int]) -> dict[tuple[str, int], bytes]:
    from lead_ray.data.plan import open_input

    if path.endswith(".parquet"):
        rows = pq.read_table(path).to_pylist()
        return {(path, i): orjson.dumps(rows[i - 1], default=str) for i in lines}
    with open_input(path) as f:
        data = f.read()
    if data.lstrip().startswith(b"["):  # a JSON array: line = 1-based element
        array = orjson.loads(data)
        return {(path, i): orjson.dumps(array[i - 1]) for i in lines}
    out = {}
    for i, raw in enumerate(data.split(b"\n"), start=1):  # JSONL: the line exactly as it was
        if i in lines:
            out[(path, i)] = raw.rstrip(b"\r")
    return out
