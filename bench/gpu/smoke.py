"""The GPU path, end to end, on one GPU machine: writes bench/results/gpu_smoke.json.

    python bench/gpu/smoke.py                      # on a host with a CUDA GPU (H200: demo ~200 s, run ~80 s)
    python bench/gpu/smoke.py --cpu --rounds 2     # the same steps on the CPU: checks the script, no GPU numbers

Steps, cheapest first, each timed, each recorded (and the JSON rewritten) as soon as it ends, failed or not:
  demo      `lead-ray demo` (every stage's use_gpu=true): prepare, warm-up, GPU scoring actors, cluster, run
  run       `lead-ray run` on the demo's clustered pool with train.use_gpu=true in bf16 autocast
  loop      tokens/s of lead-ray's training loop (the run's train_s over the tokens it trained) against a
            plain PyTorch loop over the same samples in the same micro-batches on the same model, dtype
            and device, in one process (goal: lead-ray / plain >= 0.9)
  score     `lead-ray score` again into a fresh folder, score.use_gpu=true: tokens/s of the GPU scoring actors
  tests     `pytest -m gpu`
GPU memory: the peak of nvidia-smi's memory.used over the whole script, sampled every 0.5 s (all processes).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


class GpuMemoryPeak(threading.Thread):
    """Largest memory.used of GPU 0 seen while running (MiB), from nvidia-smi: every process counts."""

    def __init__(self):
        super().__init__(daemon=True)
        self.peak_mib, self.stop = 0, threading.Event()

    def run(self):
        while not self.stop.is_set():
            try:
                out = subprocess.run(
                    ["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                    capture_output=True,
                    text=True,
                    timeout=10,
                ).stdout.split()
                self.peak_mib = max([self.peak_mib, *map(int, out[:1])])
            except (OSError, ValueError, subprocess.TimeoutExpired):
                return
            self.stop.wait(0.5)


def lead_ray(*args: str, log: Path) -> dict:
    """One `lead-ray` command; rc, seconds and where its output went."""
    t0 = time.perf_counter()
    with open(log, "w") as out:
        rc = subprocess.run(
            [sys.executable, "-m", "lead_ray.cli", *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env={**os.environ, "WANDB_MODE": "offline"},
        ).returncode
    return {"rc": rc, "seconds": round(time.perf_counter() - t0, 1), "log": str(log)}


def gpu_settings(cpu: bool) -> list[str]:
    flag = "false" if cpu else "true"
    return [f"--set={stage}.use_gpu={flag}" for stage in ("warmup", "score", "train", "eval")]


def plain_loop_tokens_per_s(run_dir: Path, base_dir: Path, cfg, device) -> dict:
    """The run's rounds again, as a plain PyTorch loop: same model, samples, order, micro-batches, optimizer
    and autocast; the loss is Hugging Face's own mean token cross-entropy. Returns both rates."""
    import pyarrow.parquet as pq
    import torch

    from lead_ray.data.rows import RoundRows
    from lead_ray.models.load import compute_dtype, load_model
    from lead_ray.models.loss import collate
    from lead_ray.models.template import encode_conversation

    rounds = pq.read_table(run_dir / "rounds.parquet").to_pylist()
    rows, dtype = RoundRows(run_dir / "rows"), compute_dtype(cfg.model.dtype, device)
    model, tok = load_model(base_dir, cfg.model, device, master_float32=True)  # lead-ray's weights, as it trains them
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.train.lr, weight_decay=0.0)
    micro, accum = cfg.train.micro_batch_size, cfg.train.batch_size // cfg.train.micro_batch_size
    tokens = plain_s = 0.0
    for r in rounds:
        index = np.load(run_dir / "selections" / f"round-{r['round']:05d}.npy")
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()  # like lead-ray's train_s: reading and encoding the round count too
        enc = [encode_conversation(tok, m, cfg.model.max_length) for m in rows.messages(index)]
        tokens += sum(len(e.input_ids) for e in enc)
        for j in range(0, len(enc), micro):
            batch = {k: v.to(device) for k, v in collate(enc[j : j + micro], tok.pad_token_id).items()}
            with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
                loss = model(**batch, use_cache=False).loss
            (loss / accum).backward()
            if (j // micro + 1) % accum == 0 or j + micro >= len(enc):
                opt.step(), opt.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        plain_s += time.perf_counter() - t0
    lead_s = sum(r["train_s"] for r in rounds)
    return {
        "tokens": int(tokens),
        "lead_ray_train_s": round(lead_s, 2),
        "plain_train_s": round(plain_s, 2),
        "lead_ray_tokens_per_s": round(tokens / lead_s, 1),
        "plain_tokens_per_s": round(tokens / plain_s, 1),
        "ratio": round(plain_s / lead_s, 3),
        "goal": 0.9,
        "peak_memory_mib_plain_loop": round(torch.cuda.max_memory_allocated() / 2**20)
        if device.type == "cuda"
        else None,
    }


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cpu", action="store_true", help="run every step on the CPU (checks the script; no GPU numbers)")
    ap.add_argument("--work", default=str(ROOT / "bench" / "work" / "gpu_smoke"), help="working folder")
    ap.add_argument("--rounds", type=int, default=12, help="rounds of the `run` step")
    ap.add_argument("--result", default="gpu_smoke", help="bench/results/<name>.json")
    ap.add_argument("--no-tests", action="store_true", help="skip `pytest -m gpu` (a short device lease)")
    return ap


def run_step(work: Path, demo: Path, rounds: int, settings: list[str]) -> dict:
    """`lead-ray run` on the demo's clustered pool, with its run_stats when it finished."""
    run_dir = work / "run"
    step = lead_ray(
        "run",
        "--config",
        "configs/demo.yaml",
        "--work-dir",
        str(demo),
        "--out",
        str(run_dir),
        f"--set=selection.max_rounds={rounds}",
        "--set=selection.budget_fraction=0.5",
        *settings,
        log=work / "run.log",
    )
    if step["rc"] == 0:
        step["stats"] = json.loads((run_dir / "run_stats.json").read_text())
    return step


def score_step(work: Path, demo: Path, settings: list[str]) -> dict:
    """`lead-ray score` into a fresh folder that links the demo's prepared pool and models: scoring throughput."""
    rescore = work / "score_again"
    for stage in ("prepared", "models"):
        if not (rescore / stage).exists():
            rescore.mkdir(exist_ok=True)
            os.symlink(demo / stage, rescore / stage)
    step = lead_ray(
        "score", "--config", "configs/demo.yaml", "--work-dir", str(rescore), *settings, log=work / "score.log"
    )
    if step["rc"] == 0:
        stats = json.loads((rescore / "scored" / "score_stats.json").read_text())
        step.update(stats=stats, tokens_per_s=round(stats["tokens_scored_now"] / stats["actor_seconds"], 1))
    return step


def tests_step() -> dict:
    t0 = time.perf_counter()
    tests = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-m", "gpu", "tests/"], cwd=ROOT, capture_output=True, text=True
    )
    return {
        "rc": tests.returncode,
        "summary": tests.stdout.strip().splitlines()[-1:],
        "failed": [line for line in tests.stdout.splitlines() if line.startswith(("FAILED", "ERROR"))],
        "seconds": round(time.perf_counter() - t0, 1),
    }


def main() -> None:
    args = parser().parse_args()
    import torch

    from lead_ray.config import load_config

    if not args.cpu and not torch.cuda.is_available():
        sys.exit("gpu_smoke: no CUDA GPU visible to torch; use --cpu to check the script on a CPU")
    work = Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    memory = GpuMemoryPeak()
    if not args.cpu:
        memory.start()
    dtype = "float32" if args.cpu else "auto"
    settings = [*gpu_settings(args.cpu), f"--set=model.dtype={dtype}"]
    result = {
        "device": "cpu" if args.cpu else torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "bf16": (not args.cpu) and torch.cuda.is_bf16_supported(),
    }
    out = ROOT / "bench" / "results" / f"{args.result}.json"

    def save() -> None:  # after every step: a run cut off by its lease still leaves what it measured
        result["gpu_memory_peak_mib"] = memory.peak_mib if not args.cpu else None
        out.write_text(json.dumps(result, indent=2) + "\n")

    demo = work / "demo"
    result["demo"] = lead_ray("demo", "--out", str(demo), *settings, log=work / "demo.log")
    save()
    result["run"] = run_step(work, demo, args.rounds, settings)
    save()
    if result["run"]["rc"] == 0:
        cfg = load_config(ROOT / "configs" / "demo.yaml", [f"work_dir={demo}", f"model.dtype={dtype}"])
        device = torch.device("cpu" if args.cpu else "cuda")
        result["loop"] = plain_loop_tokens_per_s(work / "run", demo / "models" / "base", cfg, device)
        save()
    result["score"] = score_step(work, demo, settings)
    save()
    if not args.cpu and not args.no_tests:
        result["tests"] = tests_step()
    memory.stop.set()
    save()
    print(json.dumps({k: v for k, v in result.items() if k not in ("run", "score")}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
