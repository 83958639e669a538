"""The one chat template used for IU₀ scoring, IFD, training and evaluation (LEAD ALGORITHM.md §10 D11).

Tulu format, which LEAD's evaluation uses:

    <|system|>\\n{content}\\n<|user|>\\n{content}\\n<|assistant|>\\n{content}<eos>\\n

Only assistant contents and the EOS after them are supervised (label = token id); every other token
has label -100. Each segment is tokenised on its own and the ids concatenated, so the supervised span
is exact whatever the tokenizer does at segment boundaries, and scoring, training and evaluation
agree token for token because they all call `encode_conversation`.
"""

from __future__ import annotations

from dataclasses import dataclass

IGNORE = -100
ROLE_TAGS = {"system": "<|system|>\n", "user": "<|user|>\n", "assistant": "<|assistant|>\n"}


@dataclass
class Encoded:
    input_ids: list[int]
    labels: list[int]
    truncated: bool  # the conversation did not fit in max_length
    prompt_too_long: bool  # the text before the first supervised token already fills max_length

    @property
    def n_supervised(self) -> int:
        return sum(1 for x in self.labels if x != IGNORE)


def _ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"] if text else []


def encode_conversation(tokenizer, messages: list[dict], max_length: int, supervise: str = "all") -> Encoded:
    """Token ids and labels for one conversation.

    supervise="all": every assistant turn is supervised (training, IU).
    supervise="last": only the last assistant turn (IFD's conditioned loss: the answer given everything before).
    """
    last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
    ids: list[int] = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    labels: list[int] = [IGNORE] * len(ids)
    for i, m in enumerate(messages):
        tag = _ids(tokenizer, ROLE_TAGS[m["role"]])
        ids += tag
        labels += [IGNORE] * len(tag)
        body = _ids(tokenizer, m["content"])
        if m["role"] == "assistant":
            body = body + [tokenizer.eos_token_id]
            sup = supervise == "all" or i == last
            labels += body if sup else [IGNORE] * len(body)
        else:
            labels += [IGNORE] * len(body)
        ids += body
        newline = _ids(tokenizer, "\n")
        ids += newline
        labels += [IGNORE] * len(newline)
    first_sup = next((k for k, x in enumerate(labels) if x != IGNORE), len(labels))
    return Encoded(ids[:max_length], labels[:max_length], len(ids) > max_length, first_sup >= max_length)


def encode_answer_only(tokenizer, messages: list[dict], max_length: int) -> Encoded:
    """IFD's unconditioned input: the last assistant turn alone, with its role tag."""
    answer = [m for m in messages if m["role"] == "assistant"][-1]
    return encode_conversation(tokenizer, [answer], max_length)


def prompt_text(messages: list[dict]) -> str:
    """The instruction side of a sample (everything before the last assistant turn), for embeddings."""
    last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
    return "\n".join(m["content"] for m in messages[:last])


def encode_prompt(tokenizer, messages: list[dict], max_length: int) -> list[int]:
    """Ids of a conversation up to and including the assistant tag: what generation continues from.

    Keeps the last max_length tokens (the question's end and the tag matter most)."""
    ids: list[int] = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    for m in messages:
        ids += _ids(tokenizer, ROLE_TAGS[m["role"]]) + _ids(tokenizer, m["content"]) + _ids(tokenizer, "\n")
    ids += _ids(tokenizer, ROLE_TAGS["assistant"])
    return ids[-max_length:]
