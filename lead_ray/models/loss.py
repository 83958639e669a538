"""IU(θ, x): the one per-sample loss. Scoring, IFD, training and evaluation all call this.

    IU(θ, x) = −(1/T) Σ_j log p_θ(y_j | x, y_<j)     over the T supervised (response) tokens

and, from the same token losses, the mean over the supervised tokens other than the end-of-turn token
(`content`: what `selection.end_token: skip` ranks by; docs/ALGORITHM.md §12). Computed with the next-token
shift done right (ALGORITHM.md §4.3 and §10 D1: logits at position j predict token j+1). For a padded batch
it returns one value per sample, equal to the single-sample value within float tolerance whatever the padding
side, because padding is masked out of attention, positions restart at each sample's first real token, and
padded labels are IGNORE.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from lead_ray.models.template import IGNORE, Encoded


class SampleNLL(NamedTuple):
    """Per-sample losses of one forward pass (tensors, or arrays from score_encoded)."""

    loss: torch.Tensor  # IU: mean NLL over the supervised tokens (NaN where there are none); training's loss
    n: torch.Tensor  # supervised tokens
    content: torch.Tensor  # the mean over supervised tokens other than end_id (NaN: none); = loss without it


def collate(encoded: list[Encoded], pad_id: int, padding_side: str = "right") -> dict[str, torch.Tensor]:
    """Pad a list of encoded samples into input_ids, attention_mask, position_ids, labels."""
    width = max(len(e.input_ids) for e in encoded)
    ids = torch.full((len(encoded), width), pad_id, dtype=torch.long)
    labels = torch.full((len(encoded), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(encoded), width), dtype=torch.long)
    for row, e in enumerate(encoded):
        n = len(e.input_ids)
        span = slice(0, n) if padding_side == "right" else slice(width - n, width)
        ids[row, span] = torch.tensor(e.input_ids)
        labels[row, span] = torch.tensor(e.labels)
        mask[row, span] = 1
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    return {"input_ids": ids, "attention_mask": mask, "position_ids": positions, "labels": labels}


def per_sample_nll(logits: torch.Tensor, labels: torch.Tensor, end_id: int | None = None) -> SampleNLL:
    """Each sample's mean NLL over its supervised tokens, their number, and (end_id given) the mean over
    those whose label is not end_id: one cross-entropy, two masked means."""
    shift_logits = logits[:, :-1, :].float()
    shift_labels = labels[:, 1:]
    nll = F.cross_entropy(shift_logits.transpose(1, 2), shift_labels, ignore_index=IGNORE, reduction="none")
    supervised = shift_labels != IGNORE
    loss, n = _masked_mean(nll, supervised)
    if end_id is None:
        return SampleNLL(loss, n, loss)
    return SampleNLL(loss, n, _masked_mean(nll, supervised & (shift_labels != end_id))[0])


def end_token_nll(encoded: list[Encoded], out: SampleNLL, end_id: int) -> np.ndarray:
    """Each sample's mean NLL over its supervised end-of-turn tokens, from a score_encoded(end_id) result: the
    token losses' total, n·loss, less the others', (n − k)·content, over k (NaN where no end token is
    supervised). A high value is an answer that stops where the model is sure it goes on (cluster.end_nll_above)."""
    k = np.array([sum(1 for x in e.labels[1:] if x == end_id) for e in encoded], dtype=np.float64)
    n = np.asarray(out.n, dtype=np.float64)
    others = np.where(n > k, (n - k) * np.nan_to_num(np.asarray(out.content, dtype=np.float64)), 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(k > 0, (n * np.asarray(out.loss, dtype=np.float64) - others) / k, np.nan)


def _masked_mean(nll: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row mean of nll over mask (NaN where the mask is empty), and the mask's count."""
    n = mask.sum(dim=1)
    return (nll * mask).sum(dim=1) / n.clamp(min=1) + torch.where(n == 0, float("nan"), 0.0), n


def sample_losses(
    model, batch: dict[str, torch.Tensor], response_only: bool = False, end_id: int | None = None
) -> SampleNLL:
    """Forward pass and IU per sample (per_sample_nll). Keeps the graph, so training backpropagates through
    the same call.

    response_only: compute the LM head (hidden × vocabulary, the largest matmul of a small model) only
    from the batch's first supervised position on, through Hugging Face's `logits_to_keep`; the prompt
    positions before it predict no supervised token. For scoring; training keeps every position."""
    device = next(model.parameters()).device
    labels = batch["labels"]
    first = 0
    if response_only:
        supervised = (labels[:, 1:] != IGNORE).any(0).nonzero()
        first = int(supervised[0]) if len(supervised) else labels.shape[1] - 1
    logits = model(
        input_ids=batch["input_ids"].to(device),
        attention_mask=batch["attention_mask"].to(device),
        position_ids=batch["position_ids"].to(device),
        use_cache=False,
        **({"logits_to_keep": labels.shape[1] - first} if response_only else {}),
    ).logits
    return per_sample_nll(logits, labels[:, first:].to(device), end_id)


def masked_mean(losses: torch.Tensor, zero_weight: bool = False) -> torch.Tensor:
    """The training loss of a micro-batch: the mean IU over samples with a supervised token. A sample with
    none (its prompt fills max_length) contributes nothing; a micro-batch with none, or a padding one
    (`zero_weight`), gives a zero loss that still backpropagates, so every DDP worker runs the same
    all-reduces."""
    valid = ~torch.isnan(losses)
    if valid.any() and not zero_weight:
        return losses[valid].mean()
    return losses.nan_to_num(0.0).sum() * 0.0


def length_buckets(lengths: list[int], max_tokens: int, max_batch: int) -> list[list[int]]:
    """Group sample indices into batches of similar length under a padded-token budget.

    Sorting by length first means each batch pads to a near-equal width, so padding wastes little compute.
    """
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    batches, current, width = [], [], 0
    for i in order:
        new_width = max(width, lengths[i])
        if current and (new_width * (len(current) + 1) > max_tokens or len(current) >= max_batch):
            batches.append(current)
            current, new_width = [], lengths[i]
        current.append(i)
        width = new_width
    if current:
        batches.append(current)
    return batches


# Most logits one scoring batch may hold (tokens × vocabulary): their float32 copy and the one
# cross-entropy makes are 4 bytes each, so 2^29 keeps a batch's loss under ~4 GiB whatever the vocabulary.
LOGITS_BUDGET = 2**29


def score_encoded(
    model,
    encoded: list[Encoded],
    pad_id: int,
    batch_tokens: int,
    max_batch: int,
    end_id: int | None = None,
    on_batch=None,
) -> SampleNLL:
    """IU of many samples without gradients, in length buckets: a SampleNLL of float64/int64 arrays in input
    order. `on_batch(rows, tokens, padded)`, when given, hears of every batch scored: its rows, their tokens, and
    the tokens the batch computed with its padding (rows × its longest)."""
    losses = np.full(len(encoded), np.nan, dtype=np.float64)
    content = losses.copy() if end_id is not None else losses  # without end_id, content is the loss itself
    counts = np.zeros(len(encoded), dtype=np.int64)
    vocab = model.get_output_embeddings().weight.shape[0]
    batch_tokens = max(1, min(batch_tokens, LOGITS_BUDGET // vocab))  # a 128k vocabulary: 4k tokens a batch
    with torch.inference_mode():
        for idx in length_buckets([len(e.input_ids) for e in encoded], batch_tokens, max_batch):
            out = sample_losses(model, collate([encoded[i] for i in idx], pad_id), response_only=True, end_id=end_id)
            losses[idx] = out.loss.double().cpu().numpy()
            if end_id is not None:
                content[idx] = out.content.double().cpu().numpy()
            counts[idx] = out.n.cpu().numpy()
            if on_batch is not None:
                lengths = [len(encoded[i].input_ids) for i in idx]
                on_batch(len(idx), sum(lengths), len(idx) * max(lengths))
    return SampleNLL(losses, counts, content)
