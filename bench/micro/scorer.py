"""The scorer's speed and exactness on the real model: what scoring and evaluation cost per token.

    python bench/micro/scorer.py [--samples 256] [--max-length 256]   → bench/results/scorer.json

SmolLM2-135M-Instruct (../shared/models, de-quantised once) scores the same conversations from the
pool (bench/quality/run.py's stratified slice) four ways, side by side in this run:
  fp32 full          float32, logits at every position (the scorer before response-only logits)
  fp32 response      float32, logits from the first response position on (`logits_to_keep`)
  bf16 autocast      float32 weights, the forward under CPU bf16 autocast, response-only
  bf16 weights       bfloat16 weights, response-only
Each: tokens/s over the batches, and per-sample NLL against fp32 full (mean and largest relative
difference). bf16 is worth using on CPU only if its NLL stays within 1% of float32.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared"


def conversations(n: int) -> list:
    """n conversations over every source of the pool, read straight from the files (no Ray)."""
    import hashlib

    import pyarrow as pa

    from bench.quality.pool_slice import stratified_slice
    from lead_ray.data.plan import open_input

    rows = []
    for path in sorted((SHARED / "data" / "pool").rglob("*")):
        if path.is_file() and "noncommercial" not in path.parts and path.suffix in (".json", ".jsonl"):
            rows += [
                {"source": str(path.relative_to(SHARED / "data" / "pool")), "raw": r}
                for r in _records(open_input, path)
            ]
    ids = [hashlib.blake2b(r["raw"].encode(), digest_size=8).hexdigest() for r in rows]  # a stable, uniform order
    table = pa.Table.from_pylist([{"id": i, **r} for i, r in zip(ids, rows)])
    return [_messages(json.loads(r)) for r in stratified_slice(table, n)["raw"].to_pylist()]


def _records(open_input, path: Path, per_file: int = 200) -> list[str]:
    with open_input(str(path)) as f:
        data = f.read()
    if data.lstrip().startswith(b"["):
        return [json.dumps(r) for r in json.loads(data)[:per_file]]
    return [line.decode() for line in data.split(b"\n")[:per_file] if line.strip()]


def _messages(record: dict) -> list[dict]:
    from lead_ray.data.formats import READERS, detect_format

    return READERS[detect_format(record)](record)[0]


def score(model, encoded, pad_id, response_only: bool, autocast: bool) -> tuple[np.ndarray, float, int]:
    import torch

    from lead_ray.models.loss import collate, length_buckets, sample_losses

    losses = np.full(len(encoded), np.nan)
    tokens, t0 = 0, time.perf_counter()
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        for idx in length_buckets([len(e.input_ids) for e in encoded], 16384, 64):
            batch = collate([encoded[i] for i in idx], pad_id)
            tokens += int(batch["attention_mask"].sum())
            loss = sample_losses(model, batch, response_only=response_only).loss
            losses[idx] = loss.double().numpy()
    return losses, time.perf_counter() - t0, tokens


def main() -> None:
    import torch

    from lead_ray.config import load_config
    from lead_ray.models.load import load_model, materialize_model
    from lead_ray.models.template import encode_conversation

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=256)
    ap.add_argument("--max-length", type=int, default=256)
    args = ap.parse_args()
    torch.set_num_threads(2)
    cfg = load_config(ROOT / "configs" / "smollm2.yaml", [f"model.max_length={args.max_length}"])
    folder = materialize_model(cfg.model, ROOT / "bench" / "work" / "models" / "smollm2", cfg.seed)
    model, tok = load_model(folder, cfg.model)
    model.eval()
    encoded = [encode_conversation(tok, c, args.max_length) for c in conversations(args.samples)]
    variants = {}
    reference = None
    for name, response_only, autocast, dtype in (
        ("fp32 full", False, False, torch.float32),
        ("fp32 response", True, False, torch.float32),
        ("bf16 autocast", True, True, torch.float32),
        ("bf16 weights", True, False, torch.bfloat16),
    ):
        model.to(dtype)
        losses, seconds, tokens = score(model, encoded, tok.pad_token_id, response_only, autocast)
        reference = losses if reference is None else reference
        ok = np.isfinite(losses) & np.isfinite(reference)
        rel = np.abs(losses[ok] - reference[ok]) / np.abs(reference[ok])
        variants[name] = {
            "seconds": round(seconds, 2),
            "tokens": tokens,
            "tokens_per_s": round(tokens / seconds, 1),
            "mean_nll": float(losses[ok].mean()),
            "mean_rel_diff": float(rel.mean()),
            "max_rel_diff": float(rel.max()),
            "mean_nll_rel_diff": float(abs(losses[ok].mean() / reference[ok].mean() - 1)),
        }
        print(name, variants[name], flush=True)
    result = {
        "model": cfg.model.base,
        "samples": len(encoded),
        "max_length": args.max_length,
        "threads": torch.get_num_threads(),
        "variants": variants,
    }
    out = ROOT / "bench" / "results" / "scorer.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
