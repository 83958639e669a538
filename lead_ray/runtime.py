"""Starting or joining Ray, the same way for the CLI, jobs/ and tests."""
from __future__ import annotations

import logging
import os

from lead_ray.config import RayConfig

# Passed to every Ray worker: wandb never needs an account unless the user turns it on.
WORKER_ENV = {"WANDB_MODE": os.environ.get("WANDB_MODE", "offline"), "HF_HUB_OFFLINE": "1",
              "TOKENIZERS_PARALLELISM": "false",
              # one progress line per stage (Ray's), not one bar per worker per weight file
              "HF_HUB_DISABLE_PROGRESS_BARS": "1", "TRANSFORMERS_VERBOSITY": "error"}


def init_ray(rc: RayConfig) -> None:
    """Join `ray.address` (or RAY_ADDRESS) when given, else start an embedded local Ray.

    Idempotent: inside a Ray job, or when the caller already called ray.init, this does nothing.
    """
    import ray

    if ray.is_initialized():
        return
    address = rc.address or os.environ.get("RAY_ADDRESS")
    kwargs = dict(runtime_env={"env_vars": WORKER_ENV}, logging_level=logging.WARNING, log_to_driver=True)
    if address:
        ray.init(address=address, **kwargs)
    else:
        mem = rc.object_store_memory_mb and rc.object_store_memory_mb * 2**20
        ray.init(address="local", num_cpus=rc.num_cpus, object_store_memory=mem, **kwargs)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = os.environ.get("LEAD_RAY_PROGRESS", "1") != "0"
