"""Shared fixtures: one local Ray for the whole session (starting Ray costs seconds; never `ray stop`)."""

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("WANDB_MODE", "offline")


def pytest_configure(config):
    """The default suite runs on the CPU even on a GPU host: its tiny-model fixtures and 2-worker runs
    are CPU tests (on a 1-GPU host a 2-worker GPU run would wait for a second GPU forever). GPUs are
    hidden before torch or Ray is imported, unless the GPU tests are asked for: `pytest -m gpu`."""
    if "gpu" not in config.getoption("markexpr", "") or "not gpu" in config.getoption("markexpr", ""):
        os.environ["CUDA_VISIBLE_DEVICES"] = ""


def pytest_collection_modifyitems(config, items):
    """Every test that needs a Ray session (directly or through a fixture) is marked `ray`, so
    `pytest -m "not ray"` runs the pure tests alone; GPU tests are skipped where torch sees no GPU."""
    import torch

    skip = pytest.mark.skip(reason="needs a CUDA GPU (run `pytest -m gpu` on a GPU host)")
    for item in items:
        if "ray_session" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.ray)
        if "gpu" in item.keywords and not torch.cuda.is_available():
            item.add_marker(skip)


os.environ.setdefault("LEAD_RAY_PROGRESS", "0")

FIXTURES = Path(__file__).parent / "fixtures"
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def ray_session():
    import ray

    from lead_ray.config import RayConfig
    from lead_ray.runtime import init_ray

    init_ray(RayConfig(num_cpus=2, object_store_memory_mb=512))
    yield ray
    ray.shutdown()


def write_jsonl(path: Path, records) -> Path:
    """Records may be dicts (dumped as JSON) or raw bytes/str lines (written as they are)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        for r in records:
            line = r if isinstance(r, bytes) else (r.encode() if isinstance(r, str) else json.dumps(r).encode())
            f.write(line + b"\n")
    return path


def in_process(items, fn, fn_kwargs, name):
    """A stage runner without Ray: same task bodies, same driver logic, sequential."""
    return [fn(**json.loads(json.dumps(item)), **fn_kwargs) for item in items]
