"""What a multi-node GPU cluster needs that one CPU machine cannot show by itself, checked on the CPU:
selection state crosses nodes as bytes, GPUs are requested when asked for, an optimizer step sees
batch_size samples whatever the number of workers, full fine-tuning keeps float32 master weights,
and a checkpoint written on a GPU loads on a CPU."""

import os

import numpy as np
import pytest
import torch

from lead_ray.config import ConfigError, load_config
from lead_ray.runtime import plan_actors, train_scaling, wants_gpu

NO_GPU = {"CPU": 8.0}
TWO_GPUS = {"CPU": 16.0, "GPU": 2.0}


# ----------------------------------------------------------------------------- 1. state crosses nodes as bytes


def test_selection_actors_never_touch_the_callers_paths(ray_session, tmp_path):
    """Checkpoint and restore through a folder only the caller knows: the actors (which on a cluster run
    on another node) must neither read nor write anything there. Every file access inside the actor
    processes is recorded with an audit hook."""
    import ray

    from lead_ray.online.actors import UtilityClient, UtilityStore
    from lead_ray.online.bandit_actor import BanditActor, restore_bandit, save_bandit

    own_tmp = tmp_path / "actors-own-tmp"
    own_tmp.mkdir()
    env = {"env_vars": {"TMPDIR": str(own_tmp)}}

    def start():
        iu0, cluster, task = (
            np.linspace(5, 1, 10, dtype=np.float32),
            np.repeat([0, 1], 5).astype(np.int16),
            np.zeros(10, np.int32),
        )
        handles = [
            UtilityStore.options(runtime_env=env).remote(iu0[a:b], cluster[a:b], task[a:b], a)
            for a, b in ((0, 4), (4, 10))
        ]
        bandit = BanditActor.options(runtime_env=env).remote(2, 0.1, "latest", 0)
        ray.get([h.__ray_call__.remote(record_file_access) for h in [*handles, bandit]])
        return UtilityClient(handles, [0, 4, 10]), bandit

    def record_file_access(actor):  # runs inside the actor process
        import sys

        actor.file_access = []
        sys.addaudithook(
            lambda event, args: (
                actor.file_access.append(str(args[0]))
                if event in ("open", "os.rename", "os.replace", "os.remove", "os.mkdir", "os.listdir") and args
                else None
            )
        )

    store, bandit = start()
    ray.get(store.apply_async(np.array([1, 7]), np.array([0.5, 0.25]), -0.1, 0.1, 0))
    store.mark_used(np.array([1, 7]))
    ray.get(bandit.finish_round.remote(1, 0.5, 0.3, np.ones(4, np.float32)))
    checkpoint = tmp_path / "rank0-checkpoint" / "selection"
    checkpoint.mkdir(parents=True)
    store.save(checkpoint)
    save_bandit(bandit, checkpoint)
    assert sorted(p.name for p in checkpoint.iterdir()) == [
        "bandit.json",
        "bandit.json.directions.npz",
        "utility-000.npz",
        "utility-000.npz.rounds.json",
        "utility-001.npz",
        "utility-001.npz.rounds.json",
    ]

    store2, bandit2 = start()
    store2.restore(checkpoint)
    restore_bandit(bandit2, checkpoint)
    for k, v in store.columns().items():
        assert np.array_equal(v, store2.columns()[k], equal_nan=True), k
    assert store2.round_sums(0) == store.round_sums(0)
    assert ray.get(bandit2.state.remote())["json"] == ray.get(bandit.state.remote())["json"]
    assert ray.get(bandit2.estimate.remote(1, 1e-3)).d_p == ray.get(bandit.estimate.remote(1, 1e-3)).d_p

    touched = [
        p
        for a in [*store.handles, bandit, *store2.handles, bandit2]
        for p in ray.get(a.__ray_call__.remote(lambda actor: actor.file_access))
    ]
    assert not [p for p in touched if str(tmp_path) in p], touched


def test_a_run_folder_the_node_cannot_see_is_named(tmp_path):
    from lead_ray.online.checkpoint import shared_run_path

    (tmp_path / "rows").mkdir()
    assert shared_run_path(tmp_path, "rows") == tmp_path / "rows"
    with pytest.raises(FileNotFoundError, match="work_dir must be on storage that every node mounts"):
        shared_run_path(tmp_path / "elsewhere", "rows")


# ----------------------------------------------------------------------------- 2. GPUs requested when asked for


def test_gpu_settings_request_gpus_on_a_cluster_that_has_none_yet():
    # an autoscaling cluster before its first GPU node: only an explicit request makes one start
    assert wants_gpu(True, NO_GPU) and not wants_gpu("auto", NO_GPU) and not wants_gpu(False, TWO_GPUS)
    assert wants_gpu("auto", TWO_GPUS)
    cfg = load_config(None, ["train.use_gpu=true", "train.num_workers=2", "train.micro_batch_size=4"])
    assert train_scaling(cfg.train, NO_GPU) == {"num_workers": 2, "use_gpu": True, "resources_per_worker": {"CPU": 1}}
    cfg = load_config(None, ["train.use_gpu=false", "train.num_workers=2", "train.micro_batch_size=4"])
    assert train_scaling(cfg.train, TWO_GPUS) == {
        "num_workers": 2,
        "use_gpu": False,
        "resources_per_worker": {"CPU": 7.75},
    }
    # score/eval actor pools: one GPU each, at least one actor when none is there yet
    assert (plan_actors(True, 0, NO_GPU, units=10).num_gpus, plan_actors(True, 0, NO_GPU, units=10).actors) == (1, 1)
    assert plan_actors(True, 3, NO_GPU, units=10).actors == 3
    assert plan_actors("auto", 0, TWO_GPUS, units=10).actors == 2
    cpu = plan_actors(False, 0, TWO_GPUS, units=10)
    assert cpu.num_gpus == 0 and cpu.actors == 8 and cpu.threads == 2
    assert plan_actors("auto", 0, TWO_GPUS, units=1).actors == 1  # never more actors than units


@pytest.mark.parametrize("key", ["train.use_gpu", "warmup.use_gpu", "score.use_gpu", "eval.use_gpu"])
def test_every_gpu_stage_has_a_use_gpu_setting(key):
    section, name = key.split(".")
    for text, value in (("true", True), ("false", False), ("auto", "auto")):
        assert getattr(getattr(load_config(None, [f"{key}={text}"]), section), name) == value
    with pytest.raises(ConfigError, match=f"'{key}' must be one of auto, true, false; got 'yes please'"):
        load_config(None, [f"{key}=yes please"])


# ----------------------------------------------------------------------------- 3. the effective batch


def test_batch_size_is_what_one_optimizer_step_sees_whatever_the_workers():
    from lead_ray.models.optim import build_optimizer

    model = torch.nn.Linear(2, 2)
    for workers, micro, accum in ((1, 4, 2), (2, 4, 1), (2, 2, 2), (4, 2, 1)):
        cfg = load_config(
            None, ["train.batch_size=8", f"train.micro_batch_size={micro}", f"train.num_workers={workers}"]
        )
        assert build_optimizer(model, cfg.train, workers)[2] == accum
        assert accum * micro * workers == cfg.train.batch_size
    with pytest.raises(
        ConfigError, match=r"'train.batch_size' = 8 is not a multiple of .* 4 × 4 = 16.*micro_batch_size 2 or 1"
    ):
        load_config(None, ["train.num_workers=4"])  # micro 4 × 4 workers: a step would see 16
    with pytest.raises(ConfigError, match=r"'warmup.batch_size' = 8 .*multiple of 3"):
        load_config(None, ["warmup.num_workers=3", "warmup.micro_batch_size=1"])
    cfg = load_config(None, [])
    with pytest.raises(ConfigError, match="'train.batch_size'"):  # a world size the config did not say
        build_optimizer(model, cfg.train, 4)


# ----------------------------------------------------------------------------- 4. float32 master weights


def test_full_fine_tuning_keeps_float32_weights_that_a_small_step_moves(tmp_path):
    from lead_ray.models.load import load_for_training, materialize_model, training_autocast
    from lead_ray.models.loss import collate, sample_losses
    from lead_ray.models.template import encode_conversation

    cfg = load_config(
        None,
        [
            "model.dtype=bfloat16",
            "model.tiny.hidden_size=64",
            "model.tiny.intermediate_size=128",
            "model.max_length=64",
            "train.lora.enabled=false",
            "train.lr=2e-5",
        ],
    )
    folder = materialize_model(cfg.model, tmp_path / "base", 0)
    conv = [{"role": "user", "content": "ping"}, {"role": "assistant", "content": "pong pong"}]

    def one_step(model, autocast_dtype):
        tok_ids = encode_conversation(tok, conv, 64)
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.train.lr, weight_decay=0.0)
        with training_autocast(torch.device("cpu"), autocast_dtype):
            losses, *_ = sample_losses(model, collate([tok_ids], tok.pad_token_id))
        losses.mean().backward()
        opt.step()
        moved = [(p.detach() != before[n]) for n, p in model.named_parameters() if p.grad is not None]
        return sum(int(m.sum()) for m in moved) / sum(m.numel() for m in moved)  # share of weights moved

    model, tok, autocast_dtype = load_for_training(folder, cfg.model, cfg.train.lora, torch.device("cpu"))
    assert autocast_dtype == torch.bfloat16
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    assert one_step(model, autocast_dtype) > 0.95  # (nearly) every weight with a gradient moved
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    # what it replaces: the same step on bf16 weights rounds most updates away
    pure_bf16 = load_for_training(folder, cfg.model, cfg.train.lora, torch.device("cpu"))[0].to(torch.bfloat16)
    moved_in_bf16 = one_step(pure_bf16, None)
    assert moved_in_bf16 < 0.5, moved_in_bf16


def test_lora_keeps_its_frozen_base_in_the_compute_dtype_and_adapters_in_float32(tmp_path):
    from lead_ray.models.load import load_for_training, materialize_model

    cfg = load_config(
        None,
        ["model.dtype=bfloat16", "model.tiny.hidden_size=64", "model.tiny.intermediate_size=128", "train.lora.r=4"],
    )
    model = load_for_training(
        materialize_model(cfg.model, tmp_path / "base", 0), cfg.model, cfg.train.lora, torch.device("cpu")
    )[0]
    assert {p.dtype for p in model.parameters() if p.requires_grad} == {torch.float32}
    assert {p.dtype for p in model.parameters() if not p.requires_grad} == {torch.bfloat16}


# ----------------------------------------------------------------------------- 5. the suite on a GPU host


def test_the_default_suite_sees_no_gpu(ray_session):
    assert os.environ["CUDA_VISIBLE_DEVICES"] == ""
    assert not torch.cuda.is_available() and ray_session.cluster_resources().get("GPU", 0) == 0


def test_a_gpu_that_torch_cannot_use_is_refused():
    from lead_ray.models.load import assigned_device

    assert assigned_device([]) == torch.device("cpu")
    with pytest.raises(RuntimeError, match=r"Ray assigned GPU\(s\) \[0\].*install a CUDA build of torch"):
        assigned_device([0])  # what a CPU-only torch on a GPU node would otherwise hide


# ----------------------------------------------------------------------------- 6. resume across devices


def test_a_checkpoint_written_on_a_gpu_resumes_on_a_cpu(tmp_path):
    """trainer.pt whose tensors are tagged cuda:0 (as a GPU worker writes them) loads on this CPU host."""
    import torch.serialization as serialization

    from lead_ray.online.checkpoint import load_trainer_state

    def on_gpu0(storage):
        return "cuda:0"

    serialization.register_package(1, on_gpu0, lambda storage, location: None)
    try:
        torch.save(
            {
                "trainable": {"w": torch.ones(3)},
                "optimizer": {"state": {0: {"exp_avg": torch.full((3,), 0.5)}}},
                "next_round": 4,
            },
            tmp_path / "trainer.pt",
        )
    finally:
        serialization._package_registry[:] = [p for p in serialization._package_registry if p[1] is not on_gpu0]
    with pytest.raises(RuntimeError, match="CUDA"):  # what a plain torch.load does here
        torch.load(tmp_path / "trainer.pt", weights_only=True)
    state = load_trainer_state(tmp_path)
    assert state["next_round"] == 4 and state["trainable"]["w"].device.type == "cpu"
    assert state["optimizer"]["state"][0]["exp_avg"].tolist() == [0.5] * 3


def test_a_run_the_cluster_cannot_hold_says_so_at_once_and_stops_after_its_timeout(capsys, monkeypatch):
    """Ray Train v2 retries an unplaceable start forever; lead-ray waits `placement_timeout_s` at most, saying
    at once what it asked for and what the cluster has, and asks the autoscaler meanwhile (here: a fake clock,
    a fake node list, the request recorded)."""
    from lead_ray import runtime

    asked = []
    monkeypatch.setattr(runtime, "_request", lambda bundles: asked.append(bundles))
    monkeypatch.setattr(runtime.time, "sleep", lambda s: now.append(now[-1] + s))
    now = [0.0]
    cpu_node = [{"Alive": True, "Resources": {"CPU": 8.0, "memory": 1e10}}]
    scaling = {"num_workers": 2, "use_gpu": True, "resources_per_worker": {"CPU": 1}}
    with pytest.raises(RuntimeError, match=r"cannot hold 2 worker\(s\) of \{'CPU': 1.0, 'GPU': 1.0\} after 30 s"):
        runtime.wait_for_workers(scaling, 30, "train", nodes=lambda: cpu_node, clock=lambda: now[-1])
    said = capsys.readouterr().err
    assert "train: waiting for 2 worker(s)" in said and "'GPU'" in said and "1 node(s): [{'CPU': 8.0}]" in said
    assert asked == [[{"CPU": 1.0, "GPU": 1.0}] * 2, None]  # asked the autoscaler, then withdrew the request
    # a GPU node arrives while it waits: it goes on, and withdraws the request
    nodes = iter([cpu_node, cpu_node + [{"Alive": True, "Resources": {"CPU": 96.0, "GPU": 8.0}}]])
    now[:] = [0.0]
    waited = runtime.wait_for_workers(scaling, 600, "train", nodes=lambda: next(nodes), clock=lambda: now[-1])
    assert waited == runtime.POLL_S and asked[-1] is None
    # dead nodes and too few GPUs per node do not count
    dead = [{"Alive": False, "Resources": {"GPU": 8.0, "CPU": 8.0}}]
    assert runtime.placeable_workers(dead + [{"Resources": {"GPU": 1.0, "CPU": 0.5}}], {"CPU": 1.0, "GPU": 1.0}) == 0
    assert runtime.placeable_workers([{"Resources": {"GPU": 8.0, "CPU": 96.0}}], {"CPU": 1.0, "GPU": 1.0}) == 8


def test_a_gpu_run_on_the_cpu_test_cluster_stops_with_a_message_not_a_hang(ray_session, tmp_path):
    from lead_ray.online.run import run
    from tests.test_online import toy_config, toy_pool

    toy_pool(tmp_path)
    cfg = toy_config(tmp_path, 1)
    cfg.train.use_gpu, cfg.train.placement_timeout_s = True, 1
    with pytest.raises(RuntimeError, match=r"train: the cluster cannot hold 1 worker\(s\) of .*'GPU': 1.0"):
        run(cfg)


def test_resuming_maps_the_trainer_state_instead_of_reading_it_into_memory(tmp_path):
    """8 ranks per node each loading the weights and optimizer state into host RAM would fill a 64 GiB pod at
    the paper's scale: load_trainer_state memory-maps trainer.pt (measured in a fresh process: 64 MB of state
    raise its resident memory by far less than 64 MB until the tensors are used)."""
    import subprocess
    import sys

    torch.save({"model": {"w": torch.ones(16 * 2**20)}, "round": 3}, tmp_path / "trainer.pt")
    probe = (
        "import psutil, sys; from pathlib import Path; from lead_ray.online.checkpoint import load_trainer_state\n"
        "import torch; before = psutil.Process().memory_info().rss\n"
        "state = load_trainer_state(Path(sys.argv[1]))\n"
        "print((psutil.Process().memory_info().rss - before) / 2**20, state['round'], float(state['model']['w'][7]))"
    )
    out = subprocess.run([sys.executable, "-c", probe, str(tmp_path)], capture_output=True, text=True, check=True)
    grown_mb, round_, value = out.stdout.split()
    assert float(grown_mb) < 16 and round_ == "3" and float(value) == 1.0


def test_ddp_all_reduces_once_per_optimizer_step_under_accumulation(tmp_path):
    """online/collective.py `accumulating`, as the round loop uses it: 8 micro-batches at accumulation 4 give 2
    all-reduces (a comm hook on a one-process gloo DDP counts them), not 8. In a fresh process: a process group."""
    import subprocess
    import sys

    probe = """
import os, torch, torch.distributed as dist
os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=os.environ["PORT"])
dist.init_process_group("gloo", rank=0, world_size=1)
from torch.nn.parallel import DistributedDataParallel as DDP
from lead_ray.online.collective import accumulating
calls = []
def count(state, bucket):
    calls.append(1)
    done = torch.futures.Future()
    done.set_result(bucket.buffer())
    return done
for accum, n_micro in ((4, 8), (4, 6), (1, 3)):
    model = DDP(torch.nn.Linear(4, 2))
    model.register_comm_hook(None, count)
    calls.clear()
    for j in range(n_micro):
        with accumulating(model, steps_now=(j + 1) % accum == 0 or j == n_micro - 1):
            model(torch.randn(3, 4)).sum().backward()
    print(len(calls))
dist.destroy_process_group()
"""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PORT": str(port)}
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.split() == ["2", "2", "3"]  # a partial last group still syncs; no accumulation: every one


def test_gradient_checkpointing_gives_the_same_loss_and_gradients_and_refuses_per_sample_deltas(tmp_path):
    from lead_ray.models.load import load_for_training, materialize_model
    from lead_ray.models.loss import collate, sample_losses
    from lead_ray.models.template import encode_conversation
    from lead_ray.online.run import run

    cfg = load_config(None, ["model.tiny.hidden_size=64", "model.tiny.intermediate_size=128", "model.max_length=64"])
    folder = materialize_model(cfg.model, tmp_path / "base", 0)
    conv = [{"role": "user", "content": "ping"}, {"role": "assistant", "content": "pong pong"}]
    grads = []
    for checkpointing in (False, True):
        torch.manual_seed(0)  # the same LoRA initialisation
        model, tok, _ = load_for_training(folder, cfg.model, cfg.train.lora, torch.device("cpu"), checkpointing)
        assert any(getattr(m, "gradient_checkpointing", False) for m in model.modules()) == checkpointing
        model.train()
        torch.manual_seed(0)  # the same LoRA dropout masks (recomputation replays the RNG state)
        losses = sample_losses(model, collate([encode_conversation(tok, conv, 64)] * 2, tok.pad_token_id)).loss
        losses.mean().backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and grads[0]
    for name, g in grads[0].items():
        torch.testing.assert_close(grads[1][name], g, rtol=1e-4, atol=1e-6)
    bad = load_config(None, [f"work_dir={tmp_path}", "train.gradient_checkpointing=true", "selection.delta=sample"])
    with pytest.raises(ConfigError, match="gradient_checkpointing.*selection.delta=sample"):
        run(bad)


def test_train_runs_get_ray_trains_own_logging_config(monkeypatch):
    import ray.train

    from lead_ray.console import train_logging

    monkeypatch.setenv("LEAD_RAY_VERBOSE", "0")
    got = train_logging()["logging_config"]
    assert type(got) is ray.train.LoggingConfig and got.log_level == "WARNING"
    monkeypatch.setenv("LEAD_RAY_VERBOSE", "1")
    assert train_logging() == {}
