"""What per-sample ΔL̂′ costs: training steps with and without the ghost inner products, side by side.

    python bench/micro/delta_cost.py               # SmolLM2-135M + LoRA (configs/smollm2.yaml) and the tiny preset
    python bench/micro/delta_cost.py --models tiny       # the tiny preset only (full fine-tuning)

The same micro-batches of pool samples go through forward + backward + optimizer step, alternating between
`selection.delta: round` (no hooks at work) and `sample` (models/ghost.py: the products against a random
direction), repeated; the ratio of the median step times is the cost. Writes bench/results/delta_cost.json.
Goal (issue "Robust LEAD"): at most 5% of training time.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared"

MODELS = {
    "smollm2-lora": ("configs/smollm2.yaml", ["model.max_length=256"]),
    "tiny-full": ("configs/demo.yaml", ["model.max_length=256", "train.lora.enabled=false"]),
}


def conversations(n: int) -> list:
    """The first n GSM8K training conversations of the shared pool (real lengths; never eval data)."""
    from lead_ray.data.formats import read_question_answer

    with open(SHARED / "data" / "pool" / "gsm8k" / "train.jsonl") as f:
        return [read_question_answer(json.loads(line))[0] for line, _ in zip(f, range(n))]


def step_times(name: str, samples: int, micro: int, repeats: int) -> dict:
    import torch

    from lead_ray.config import load_config
    from lead_ray.models.ghost import GhostProducts, linear_params
    from lead_ray.models.load import load_for_training, materialize_model, training_autocast
    from lead_ray.models.loss import collate, masked_mean, sample_losses
    from lead_ray.models.template import encode_conversation
    from lead_ray.online.direction import direction_params

    config, overrides = MODELS[name]
    cfg = load_config(ROOT / config, overrides + [f"work_dir={ROOT / 'bench' / 'work' / 'delta_cost' / name}"])
    base = materialize_model(cfg.model, cfg.stage_dir("models") / "base", cfg.seed)
    device = torch.device("cpu")
    model, tok, dtype = load_for_training(base, cfg.model, cfg.train.lora, device)
    params = linear_params(model, direction_params(model, "last_layer"))
    ghost = GhostProducts(model, params)
    direction = np.random.default_rng(0).normal(size=sum(p.numel() for p in params.values())).astype(np.float32)
    encoded = [encode_conversation(tok, c, cfg.model.max_length) for c in conversations(samples)]
    batches = [encoded[i : i + micro] for i in range(0, len(encoded), micro)]
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    model.train()
    times = {"round": [], "sample": []}
    for r in range(repeats + 1):  # the first pass warms up and is not counted
        for mode in ("round", "sample") if r % 2 == 0 else ("sample", "round"):
            ghost.set_direction(direction if mode == "sample" else None, device)
            t0 = time.perf_counter()
            for batch in batches:
                with training_autocast(device, dtype):
                    losses = sample_losses(model, collate(batch, tok.pad_token_id)).loss
                masked_mean(losses).backward()
                if mode == "sample":
                    ghost.collect(np.full(len(batch), 1.0 / len(batch)))
                opt.step()
                opt.zero_grad(set_to_none=True)
            if r:
                times[mode].append(time.perf_counter() - t0)
    median = {k: statistics.median(v) for k, v in times.items()}
    tokens = sum(len(e.input_ids) for e in encoded)
    return {
        "config": config,
        "overrides": overrides,
        "samples": len(encoded),
        "tokens": tokens,
        "micro_batch": micro,
        "direction_params": len(direction),
        "seconds_round": times["round"],
        "seconds_sample": times["sample"],
        "median_round_s": round(median["round"], 3),
        "median_sample_s": round(median["sample"], 3),
        "overhead": round(median["sample"] / median["round"] - 1, 4),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, of {list(MODELS)}")
    ap.add_argument("--samples", type=int, default=32)
    ap.add_argument("--micro", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    import torch

    results = {name: step_times(name, args.samples, args.micro, args.repeats) for name in args.models.split(",")}
    out = {
        "command": " ".join(sys.argv),
        "torch_threads": torch.get_num_threads(),
        "goal": "overhead ≤ 0.05 (per-sample ΔL̂′ costs at most 5% of training time)",
        "models": results,
    }
    path = ROOT / "bench" / "results" / "delta_cost.json"
    path.write_text(json.dumps(out, indent=1) + "\n")
    for name, r in results.items():
        print(f"{name}: round {r['median_round_s']} s, sample {r['median_sample_s']} s, overhead {r['overhead']:+.1%}")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
