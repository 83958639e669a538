"""The GPU check (issue 34): what a lent GPU must tell, in one call of at most 9 minutes, the JSON written after
every step so that a call cut off by its lease still leaves what it measured.

    python bench/gpu/check.py                           # on a CUDA host: bench/results/gpu_check.json
    python bench/gpu/check.py --cpu                     # the CPU dry run: bench/results/gpu_check_cpu_dryrun.json

Model: SmolLM2-135M-Instruct (configs/smollm2.yaml: the GGUF in ../shared/models, de-quantised once), or where
that file is absent its layers with random weights (--model shape); LoRA and full fine-tuning. Steps, cheapest
and most telling first:
  header      git SHA (or LEAD_RAY_GIT_SHA), GPU, driver, CUDA, library versions, the config's hash
  load        the base model de-quantised and saved (once), then each model's load time (inside its step)
  precision   bf16 autocast against float32: each sample's IU on one fixed batch
  ghost       ghost products against torch.func per-sample gradients (goal: 1e-4 relative)
  train_lora  lead-ray's step against a plain PyTorch loop on identical batches, A/B/A: tokens/s real and
  train_full  padded, step median and p95, MFU, peak memory (torch.cuda.max_memory_allocated); goal ratio ≥ 0.9
  checkpoint  the full model's checkpoint (model/ and trainer.pt): size, write and restore seconds
  scoring     lead-ray's scorer in bf16: tokens/s and padding fraction
  ddp         two gloo DDP workers on one device against one worker: the loss of each step
On the CPU every step runs smaller (--cpu): the numbers check the script, they say nothing about a GPU.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def header(cfg, device) -> dict:
    """Where and with what the numbers were taken."""
    import peft
    import torch
    import transformers

    from lead_ray.config import to_dict

    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
        code = ["git", "status", "--porcelain", "--untracked-files=no", "--", "lead_ray", "bench", "configs"]
        changed = subprocess.run([*code, ":!bench/results"], cwd=ROOT, capture_output=True, text=True).stdout
    except OSError:
        sha, changed = "", ""
    try:
        import ray

        ray_version = ray.__version__
    except ImportError:
        ray_version = None
    smi = ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"]
    gpu = subprocess.run(smi, capture_output=True, text=True).stdout.strip() if device.type == "cuda" else None
    return {
        "git_sha": sha or os.environ.get("LEAD_RAY_GIT_SHA", "unknown"),
        "code_changed_since_commit": bool(changed.strip()) if sha else None,  # uncommitted code says so
        "device": torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu",
        "nvidia_smi": gpu,
        "cuda": torch.version.cuda,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
        "ray": ray_version,
        "python": sys.version.split()[0],
        "config_sha256": hashlib.sha256(json.dumps(to_dict(cfg), sort_keys=True).encode()).hexdigest()[:16],
    }


# SmolLM2-135M's layers (30 × 576 wide, MLP 1536, 9 heads) built as the tiny preset: random weights and the byte
# vocabulary, for a host the 98 MB GGUF cannot reach (a device transfer carries at most 64 MiB)
SHAPE = [
    "model.base=tiny",
    "model.tiny.hidden_size=576",
    "model.tiny.intermediate_size=1536",
    "model.tiny.num_layers=30",
    "model.tiny.num_heads=9",
]


def settings(cpu: bool, model: str) -> list[str]:
    """The check's config overrides: the model, and the GPU's sizes or small ones for the CPU dry run."""
    common = ["work_dir=bench/work/gpu_check", "train.lr=2.0e-5", *(SHAPE if model == "shape" else [])]
    if cpu:
        return common + ["model.max_length=128", "train.micro_batch_size=2", "train.batch_size=2", "model.dtype=auto"]
    return common + ["model.max_length=512", "train.micro_batch_size=8", "train.batch_size=8", "model.dtype=auto"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cpu", action="store_true", help="the CPU dry run: every step, small")
    ap.add_argument("--steps", type=int, default=None, help="timed steps per A/B/A phase (default 20 GPU, 3 CPU)")
    ap.add_argument(
        "--model",
        choices=("gguf", "shape"),
        default=None,
        help="gguf: SmolLM2-135M-Instruct from ../shared/models (the default where it exists); shape: its layers, "
        "random weights, the byte vocabulary",
    )
    args = ap.parse_args()
    gguf = ROOT.parent / "shared" / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
    model_kind = args.model or ("gguf" if gguf.exists() else "shape")
    import torch

    from bench.gpu import agreement, steps
    from lead_ray.config import load_config
    from lead_ray.models.load import materialize_model

    if not args.cpu and not torch.cuda.is_available():
        sys.exit("gpu check: no CUDA GPU visible to torch; --cpu runs the dry run")
    device = torch.device("cpu" if args.cpu else "cuda")
    n_steps = args.steps or (3 if args.cpu else 20)
    cfg = load_config(ROOT / "configs" / "smollm2.yaml", settings(args.cpu, model_kind))
    out = ROOT / "bench" / "results" / ("gpu_check_cpu_dryrun.json" if args.cpu else "gpu_check.json")
    result: dict = {
        "command": " ".join(["python bench/gpu/check.py", *sys.argv[1:]]),
        "model": model_kind,
        "steps_timed": n_steps,
    }

    def step(name: str, fn) -> object:
        """Run one step, record its result or its error and seconds, rewrite the JSON."""
        t0, value = time.perf_counter(), None
        try:
            value = fn()
            record = {k: v for k, v in value.items() if not k.startswith("_")} if isinstance(value, dict) else value
        except Exception as err:  # noqa: BLE001 - a failed step is recorded and the next one runs
            record = {"error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc()[-2000:]}
        result[name] = record
        result.setdefault("seconds", {})[name] = round(time.perf_counter() - t0, 1)
        out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"[gpu check] {name}: {json.dumps(record)[:400]}", flush=True)
        return value

    step("header", lambda: header(cfg, device))
    base = step("load", lambda: {"_dir": materialize_model(cfg.model, ROOT / cfg.work_dir / "models" / "base", 0)})
    base_dir = base["_dir"]
    lora = step("train_lora", lambda: steps.train_ab(base_dir, cfg, True, device, n_steps))
    if isinstance(lora, dict):
        model, tok = lora["_model"]
        batch = steps.encoded_batches(tok, cfg.model.max_length, cfg.train.micro_batch_size, 1, seed=3)[0]
        step("precision", lambda: agreement.precision(model, tok, batch, device))
        step("ghost", lambda: agreement.ghost(model, tok, batch[:4], device))
        del model, lora
    full = step("train_full", lambda: steps.train_ab(base_dir, cfg, False, device, n_steps))
    if isinstance(full, dict):
        step("checkpoint", lambda: steps.checkpoint(*full["_model"], cfg.train.lr))
        del full
    step("scoring", lambda: steps.scoring(base_dir, cfg, device, 64 if args.cpu else 1024))
    step("ddp", lambda: agreement.ddp(base_dir, cfg, device, steps=3))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
