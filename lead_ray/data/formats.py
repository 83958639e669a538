"""Input formats: turn one raw record into the pool's canonical `messages`.

Every reader takes a decoded JSON object (a dict) and returns `(messages, task)`, where messages is
a list of `{"role", "content"}` with roles system/user/assistant, or raises `Reject` naming the
field that is wrong. No Ray here: the ingest pipeline calls these inside its tasks.

Formats (detected per file from the first record's keys, or forced by `ingest.format`):

| format            | fields                                             | becomes                              |
|-------------------|----------------------------------------------------|--------------------------------------|
| alpaca            | instruction, input?, output or response            | user: instruction (+ input);         |
|                   |                                                    | assistant: output                    |
| prompt_completion | prompt, completion (T0 style; `<|endoftext|>` cut) | user: prompt; assistant: completion  |
| question_answer   | question, answer (GSM8K)                           | user: question; assistant: answer    |
| sharegpt          | conversations: [{from, value}]                     | human→user, gpt→assistant, system    |
| messages          | messages: [{role, content}] (OpenAI style)         | as is                                |
| self_instruct     | instruction, instances: [{input, output}]          | one sample per instance              |
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

ENDOFTEXT = "<|endoftext|>"
ROLES = ("system", "user", "assistant")
SHAREGPT_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "chatgpt": "assistant",
    "bard": "assistant",
    "bing": "assistant",
    "model": "assistant",
    "system": "system",
}
# Characters that never belong in training text; everything else (tabs, newlines, any script) is kept.
FORBIDDEN_CHARS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


class Reject(Exception):
    """A record that cannot enter the pool. `reason` is a stable code; `field` the JSON path."""

    def __init__(self, reason: str, field: str | None, message: str):
        super().__init__(message)
        self.reason, self.field, self.message = reason, field, message


def detect_format(record) -> str | None:
    """The format a record's keys say it is in, or None."""
    if not isinstance(record, dict):
        return None
    if "conversations" in record:
        return "sharegpt"
    if "messages" in record:
        return "messages"
    if "instruction" in record and "instances" in record:
        return "self_instruct"
    if "instruction" in record and ("output" in record or "response" in record):
        return "alpaca"
    if "prompt" in record and "completion" in record:
        return "prompt_completion"
    if "question" in record and "answer" in record:
        return "question_answer"
    return None


def _text(record: dict, key: str, path: str | None = None, required: bool = True) -> str:
    path = path or key
    if key not in record or record[key] is None:
        if required:
            raise Reject("missing_field", path, f"missing field '{path}'")
        return ""
    value = record[key]
    if not isinstance(value, str):
        raise Reject("wrong_type", path, f"field '{path}' must be a string, got {type(value).__name__}")
    return value


def _pair(prompt: str, response: str, prompt_field: str, response_field: str) -> list[dict]:
    return [
        {"role": "user", "content": prompt, "_field": prompt_field},
        {"role": "assistant", "content": response, "_field": response_field},
    ]


def read_alpaca(r: dict) -> list[list[dict]]:
    instruction = _text(r, "instruction")
    extra = _text(r, "input", required=False)
    out_key = "response" if "output" not in r and "response" in r else "output"
    if r.get(out_key) is None:
        raise Reject("missing_field", out_key, f"missing field '{out_key}' (alpaca needs 'output' or 'response')")
    prompt = instruction.strip() + ("\n\n" + extra.strip() if extra.strip() else "")
    return [_pair(prompt, _text(r, out_key), "instruction", out_key)]


def read_prompt_completion(r: dict) -> list[list[dict]]:
    completion = _text(r, "completion")
    if completion.rstrip().endswith(ENDOFTEXT):
        completion = completion.rstrip()[: -len(ENDOFTEXT)]
    return [_pair(_text(r, "prompt"), completion, "prompt", "completion")]


def read_question_answer(r: dict) -> list[list[dict]]:
    return [_pair(_text(r, "question"), _text(r, "answer"), "question", "answer")]


def _turns(r: dict, key: str, role_key: str, text_key: str, role_map: dict) -> list[list[dict]]:
    turns = r.get(key)
    if turns is None:
        raise Reject("missing_field", key, f"missing field '{key}'")
    if not isinstance(turns, list):
        raise Reject("wrong_type", key, f"field '{key}' must be a list, got {type(turns).__name__}")
    messages = []
    for i, turn in enumerate(turns):
        where = f"{key}[{i}]"
        if not isinstance(turn, dict):
            raise Reject("wrong_type", where, f"field '{where}' must be an object, got {type(turn).__name__}")
        role = _text(turn, role_key, f"{where}.{role_key}")
        mapped = role_map.get(role.strip().lower())
        if mapped is None:
            raise Reject("bad_role", f"{where}.{role_key}", f"field '{where}.{role_key}' has unknown role {role!r}")
        messages.append(
            {"role": mapped, "content": _text(turn, text_key, f"{where}.{text_key}"), "_field": f"{where}.{text_key}"}
        )
    return [messages]


def read_sharegpt(r: dict) -> list[list[dict]]:
    return _turns(r, "conversations", "from", "value", SHAREGPT_ROLES)


def read_messages(r: dict) -> list[list[dict]]:
    return _turns(r, "messages", "role", "content", {k: k for k in ROLES})


def read_self_instruct(r: dict) -> list[list[dict]]:
    """A seed task with n instances gives n samples (and counts as n input rows)."""
    instruction = _text(r, "instruction")
    instances = r.get("instances")
    if not isinstance(instances, list) or not instances:
        kind = "missing_field" if instances is None else "wrong_type"
        raise Reject(kind, "instances", "field 'instances' must be a non-empty list")
    out = []
    for i, inst in enumerate(instances):
        where = f"instances[{i}]"
        if not isinstance(inst, dict):
            raise Reject("wrong_type", where, f"field '{where}' must be an object")
        extra = _text(inst, "input", f"{where}.input", required=False)
        prompt = instruction.strip() + ("\n\n" + extra.strip() if extra.strip() else "")
        out.append(_pair(prompt, _text(inst, "output", f"{where}.output"), "instruction", f"{where}.output"))
    return out


READERS = {
    "alpaca": read_alpaca,
    "prompt_completion": read_prompt_completion,
    "question_answer": read_question_answer,
    "sharegpt": read_sharegpt,
    "messages": read_messages,
    "self_instruct": read_self_instruct,
}


def rows_in(record, fmt: str) -> int:
    """How many candidate samples a record stands for (self-instruct tasks expand per instance)."""
    if fmt == "self_instruct" and isinstance(record, dict) and isinstance(record.get("instances"), list):
        return max(1, len(record["instances"]))
    return 1


def normalise(messages: list[dict], max_chars: int) -> tuple[list[dict], int, int, int]:
    """Clean and validate one conversation; return (messages, prompt_chars, response_chars, trimmed).

    Contents are NFC-normalised with outer whitespace stripped, so that trivially different copies
    of a sample share one id. A conversation ending on unanswered turns (common in scraped chats)
    has them cut, since there is no response to supervise; `trimmed` counts them. Raises Reject for
    empty turns, forbidden characters, missing user/assistant turns, and samples over `max_chars`.
    """
    trimmed = 0
    while messages and messages[-1]["role"] != "assistant":
        messages, trimmed = messages[:-1], trimmed + 1
    out, prompt_chars, response_chars, seen_user = [], 0, 0, False
    for m in messages:
        text = unicodedata.normalize("NFC", m["content"]).strip()
        if not text:
            reason = "empty_response" if m["role"] == "assistant" else "empty_prompt"
            raise Reject(reason, m["_field"], f"field '{m['_field']}' is empty")
        bad = FORBIDDEN_CHARS.search(text)
        if bad:
            bad = bad.group()
            raise Reject("control_character", m["_field"], f"field '{m['_field']}' contains control character {bad!r}")
        if m["role"] == "assistant":
            if not seen_user:
                raise Reject("no_prompt", m["_field"], f"assistant turn '{m['_field']}' comes before any user turn")
            response_chars += len(text)
        else:
            seen_user = seen_user or m["role"] == "user"
            prompt_chars += len(text)
        out.append({"role": m["role"], "content": text})
    if not any(m["role"] == "assistant" for m in out):
        raise Reject("empty_response", None, "no assistant turn to supervise")
    if prompt_chars + response_chars > max_chars:
        raise Reject(
            "too_long",
            None,
            f"sample has {prompt_chars + response_chars} characters, over the cap of {max_chars} "
            f"(ingest.max_sample_chars)",
        )
    return out, prompt_chars, response_chars, trimmed


def sample_id(messages: list[dict]) -> str:
    """Stable id: 128-bit BLAKE2b of the normalised roles and contents."""
    # \x1f and \x1e cannot occur in a normalised content (they are FORBIDDEN_CHARS), so the
    # joined text is an unambiguous encoding of the conversation.
    text = "\x1e".join(m["role"] + "\x1f" + m["content"] for m in messages)
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()
