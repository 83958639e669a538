"""A run's checkpoint as files: what rank 0 writes, what a restart and the driver read back.

MANIFEST.json         every file of the checkpoint with its size, written last
trainer.pt            trainable weights, optimizer, LR schedule, next round (memory-mapped when read back); under
                      train.strategy=fsdp only the schedule and round, the rest sharded in trainer_dcp/
model/                the final checkpoint only: the LoRA adapter or full model (`save_pretrained`), what
                      `lead-ray eval` and users load; a checkpoint a run resumes from needs only trainer.pt
selection/            the UtilityStore shards, the bandit, and the round log (rounds.json)

Rank 0 writes each one under the run folder (run/staging/: on the shared storage the run uses, not a node's
small /tmp), Ray Train moves it to run/ray_train/ and keeps the latest train.keep_checkpoints of them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lead_ray.files import write_text_atomic

ROUND_LOG = "rounds.json"  # the round log, in a checkpoint's selection/ folder


MANIFEST = "MANIFEST.json"


def write_manifest(folder: Path) -> None:
    """Every file of a checkpoint with its size, written last (write, then rename)."""
    files = {str(f.relative_to(folder)): f.stat().st_size for f in sorted(folder.rglob("*")) if f.is_file()}
    write_text_atomic(folder / MANIFEST, json.dumps(files, indent=1))


@dataclass
class TrainerState:
    """What rank 0 checkpoints of the training side."""

    model: Any  # the unwrapped model (a PEFT model with LoRA)
    tokenizer: Any
    optimizer: Any
    scheduler: Any
    next_round: int


def write_checkpoint(
    folder: Path,
    trainer: TrainerState,
    store,
    bandit,
    round_log: list[dict],
    with_model: bool = True,
    sharded_weights: dict | None = None,
) -> None:
    """Every file of a checkpoint into `folder`, the manifest last. `store`: a UtilityClient, `bandit`: the
    BanditActor; both hand their state over as bytes and this process writes them, on its node. `with_model`:
    also model/ (the final checkpoint's; the others hold the weights once, in trainer.pt). `sharded_weights`: a
    sharded model's gathered weights for model/ (its trainer_dcp/ already written by every worker)."""
    from lead_ray.online.bandit_actor import save_bandit

    write_trainer_state(folder, trainer, with_model, sharded_weights)
    (folder / "selection").mkdir()
    store.save(folder / "selection")
    save_bandit(bandit, folder / "selection")
    write_text_atomic(folder / "selection" / ROUND_LOG, json.dumps(round_log))
    write_manifest(folder)


def write_trainer_state(folder: Path, trainer: TrainerState, with_model: bool, sharded_weights: dict | None) -> None:
    """A checkpoint's training part: model/ (with_model) and trainer.pt (trainable weights, unless sharded, the
    optimizer and the LR schedule). bench/gpu/check.py times it alone."""
    import torch

    sharded = sharded_weights is not None
    if with_model:  # the LoRA adapter, or the full model
        extra = {"state_dict": sharded_weights} if sharded else {}
        trainer.model.save_pretrained(folder / "model", safe_serialization=True, **extra)
        trainer.tokenizer.save_pretrained(folder / "model")
    state = {"scheduler": trainer.scheduler.state_dict(), "next_round": trainer.next_round, "sharded": sharded}
    if not sharded:
        state["trainable"] = {n: p.detach().cpu() for n, p in trainer.model.named_parameters() if p.requires_grad}
        state["optimizer"] = trainer.optimizer.state_dict()
    torch.save(state, folder / "trainer.pt")


def load_checkpoint(folder: Path, model, optimizer, scheduler) -> int:
    """A verified checkpoint's trainable weights, optimizer and LR schedule into the training objects; returns
    the round to start at."""
    verify_checkpoint(folder)
    state = load_trainer_state(folder)
    if state.get("sharded"):  # every worker reads its own shards
        from lead_ray.online.fsdp import load_sharded

        load_sharded(folder, model, optimizer)
    else:
        model.load_state_dict(state["trainable"], strict=False)
        optimizer.load_state_dict(state["optimizer"])  # moves the state to each parameter's device
    scheduler.load_state_dict(state["scheduler"])
    return state["next_round"]


def restore_selection(folder: Path, store, bandit) -> list[dict]:
    """Rank 0 after a restart: the UtilityStore shards and the bandit as checkpointed; returns the round log."""
    from lead_ray.online.bandit_actor import restore_bandit

    store.restore(folder / "selection")
    restore_bandit(bandit, folder / "selection")
    return read_round_log(folder)


def report_with_checkpoint(
    metrics: dict, trainer: TrainerState, store, bandit, round_log: list[dict], staging: Path, final: bool
) -> None:
    """Rank 0's `ray.train.report`: the metrics with a checkpoint of the model, optimizer and selection state,
    written under `staging` (the run folder's), model/ only when `final`."""
    import tempfile

    import ray.train

    Path(staging).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=staging) as tmp:
        write_checkpoint(Path(tmp), trainer, store, bandit, round_log, with_model=final)
        ray.train.report(
            {**metrics, "next_round": trainer.next_round}, checkpoint=ray.train.Checkpoint.from_directory(tmp)
        )


def report_sharded(
    metrics: dict, trainer: TrainerState, store, bandit, round_log: list[dict], staging: Path, final: bool
) -> None:
    """Every worker of a sharded model: its shards into a folder rank 0 makes under `staging` (and, when `final`,
    its part of gathering model/); rank 0 then writes the rest and reports the checkpoint, the others report."""
    import shutil
    import tempfile

    import ray.train
    import torch.distributed as dist

    from lead_ray.online.collective import broadcast_from_rank0
    from lead_ray.online.fsdp import full_weights, save_sharded

    rank, world = dist.get_rank(), dist.get_world_size()
    if rank == 0:
        Path(staging).mkdir(parents=True, exist_ok=True)
    folder = Path(broadcast_from_rank0(tempfile.mkdtemp(dir=staging) if rank == 0 else None, world))
    save_sharded(folder, trainer.model, trainer.optimizer)
    weights = full_weights(trainer.model) if final else {}  # a collective: on rank 0's CPU, empty elsewhere
    if rank != 0:
        ray.train.report(metrics)
        return
    try:
        write_checkpoint(folder, trainer, store, bandit, round_log, with_model=final, sharded_weights=weights)
        checkpoint = ray.train.Checkpoint.from_directory(folder)
        ray.train.report({**metrics, "next_round": trainer.next_round}, checkpoint=checkpoint)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def verify_checkpoint(folder: Path) -> None:
    """Refuse a checkpoint that is incomplete: no manifest, or a file missing or of the wrong size."""
    manifest = folder / MANIFEST
    if not manifest.exists():
        raise RuntimeError(f"checkpoint {folder} has no {MANIFEST}: it was not completely written; not loading it")
    for rel, size in json.loads(manifest.read_text()).items():
        f = folder / rel
        if not f.is_file() or f.stat().st_size != size:
            raise RuntimeError(
                f"checkpoint {folder}: {rel} is missing or truncated ({MANIFEST} says {size} bytes); not loading it"
            )


def read_round_log(checkpoint_dir: Path) -> list[dict]:
    """The round log of a checkpoint (the final checkpoint holds every round of the run)."""
    return json.loads((Path(checkpoint_dir) / "selection" / ROUND_LOG).read_text())


def load_trainer_state(folder: Path) -> dict:
    """trainer.pt of a checkpoint, onto the CPU: it may have been written on a GPU, and be read on a host
    without one (a resume with train.use_gpu=false) or by a worker whose GPU is not the writer's GPU 0.
    load_state_dict then moves each tensor to its parameter's device. Memory-mapped: the tensors stay in the
    file's pages until load_state_dict copies them to the device, and the ranks of one node share those pages,
    so a resume does not hold one host copy of the weights and optimizer state per rank."""
    import torch

    return torch.load(folder / "trainer.pt", map_location="cpu", weights_only=True, mmap=True)


def shared_run_path(run_dir: Path, name: str) -> Path:
    """A path under the run folder that the driver wrote; a clear error where this node cannot see it."""
    path = run_dir / name
    if not path.exists():
        import socket

        raise FileNotFoundError(
            f"{path} was written by the driver but does not exist on this node ({socket.gethostname()}): on a "
            f"multi-node cluster, work_dir must be on storage that every node mounts at the same path "
            f"(NFS/EFS, a ReadWriteMany volume); see docs/CLUSTER.md, 'Before your first GPU cluster run'"
        )
    return path
