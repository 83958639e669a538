"""cluster.yaml checked by Ray's own cluster-config validation; k8s/rayjob.yaml for what KubeRay requires;
every stage has a job entrypoint."""

import copy
from pathlib import Path

import pytest
import ray
import yaml

from lead_ray.config import load_config

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("prepare", "warmup", "score", "cluster", "run", "eval", "export", "tune", "pipeline")


def test_cluster_yaml_passes_ray_validation():
    from ray.autoscaler._private.util import prepare_config, validate_config

    raw = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    validate_config(prepare_config(copy.deepcopy(raw)))  # raises on any schema error
    nodes = raw["available_node_types"]
    gpu = [n for n, spec in nodes.items() if n != raw["head_node_type"]]
    assert gpu and nodes[gpu[0]]["max_workers"] >= nodes[gpu[0]]["min_workers"] >= 0
    assert "gpu" in raw["docker"]["image"] and ray.__version__ in raw["docker"]["image"]
    assert raw["docker"]["image"].split("/")[-1].startswith("lead-ray:")  # the image k8s/Dockerfile builds
    assert nodes[gpu[0]]["resources"].get("GPU", 0) == 8  # 8-GPU nodes: what a stage's request is matched against
    assert "," not in raw["provider"]["availability_zone"]  # one zone: multi-node NCCL does not cross zones
    # work_dir's shared storage: mounted on every host, passed into every container
    assert any("mount -t nfs4" in c and "/mnt/efs" in c for c in raw["initialization_commands"])
    assert "-v /mnt/efs:/mnt/shared" in raw["docker"]["run_options"]
    gpu_cfg = load_config(ROOT / "configs" / "gpu-cluster.yaml")
    assert gpu_cfg.work_dir.startswith("/mnt/shared/") and gpu_cfg.eval.data_dir.startswith("/mnt/shared/")
    assert all(stage.use_gpu is True for stage in (gpu_cfg.warmup, gpu_cfg.score, gpu_cfg.train, gpu_cfg.eval))
    assert any("pip install" in c and "lead-ray" in c for c in raw["setup_commands"])
    assert raw["file_mounts"] and all(Path(ROOT, src).exists() for src in raw["file_mounts"].values())
    assert any("--dashboard-host=127.0.0.1" in c for c in raw["head_start_ray_commands"])
    # and the validation does catch a broken file
    broken = copy.deepcopy(raw)
    broken["available_node_types"][gpu[0]]["min_workers"] = "two"
    with pytest.raises(Exception, match="min_workers|integer"):
        validate_config(prepare_config(broken))


def test_kuberay_rayjob_manifest_has_what_kuberay_requires():
    job, policy = yaml.safe_load_all((ROOT / "k8s" / "rayjob.yaml").read_text())
    assert job["apiVersion"] == "ray.io/v1" and job["kind"] == "RayJob" and job["metadata"]["name"]
    spec = job["spec"]
    entry = spec["entrypoint"].split()
    assert entry[0] == "python" and entry[1].endswith("jobs/pipeline.py")
    assert (ROOT / "jobs" / Path(entry[1]).name).exists()
    cluster = spec["rayClusterSpec"]
    assert cluster["rayVersion"] == ray.__version__
    head = cluster["headGroupSpec"]
    # KubeRay's submitter and operator reach the dashboard through the head Service: it listens on every
    # interface, behind Ray's token authentication and a NetworkPolicy that admits only the job's own pods and
    # the operator (docs/SCALING.md, "Who can reach the dashboard")
    assert isinstance(head["rayStartParams"], dict) and head["rayStartParams"]["dashboard-host"] == "0.0.0.0"
    assert cluster["authOptions"]["mode"] == "token"
    name = job["metadata"]["name"]
    assert policy["kind"] == "NetworkPolicy" and policy["spec"]["policyTypes"] == ["Ingress"]
    assert policy["spec"]["podSelector"]["matchLabels"] == {
        "ray.io/node-type": "head",
        "ray.io/originated-from-cr-name": name,
    }
    own, operator = policy["spec"]["ingress"]
    assert own["from"] == [{"podSelector": {"matchLabels": {"ray.io/originated-from-cr-name": name}}}]
    assert operator["from"][0]["podSelector"]["matchLabels"] == {"app.kubernetes.io/component": "kuberay-operator"}
    assert operator["ports"] == [{"protocol": "TCP", "port": 8265}]
    # GPUs come in 8-GPU pods, one per node, and the in-tree autoscaler adds them for what a stage requests
    assert cluster["enableInTreeAutoscaling"] is True
    assert all(isinstance(v, str) for v in head["rayStartParams"].values())  # KubeRay wants strings
    assert head["template"]["spec"]["containers"][0]["image"]
    for group in cluster["workerGroupSpecs"]:
        assert group["groupName"] and 0 <= group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
        assert isinstance(group["rayStartParams"], dict)
        container = group["template"]["spec"]["containers"][0]
        assert container["image"] and container["resources"]["limits"]["nvidia.com/gpu"] == "8"
        assert group["rayStartParams"]["num-gpus"] == "8" and group["maxReplicas"] >= 2
    for pod in [head["template"]["spec"]] + [g["template"]["spec"] for g in cluster["workerGroupSpecs"]]:
        volumes = {v["name"]: v for v in pod["volumes"]}
        mounts = {m["mountPath"]: m["name"] for m in pod["containers"][0]["volumeMounts"]}
        assert volumes[mounts["/dev/shm"]]["emptyDir"]["medium"] == "Memory"  # Ray's object store
        assert volumes[mounts["/mnt/shared"]]["persistentVolumeClaim"]["claimName"]  # work_dir, shared
    assert "configs/gpu-cluster.yaml" in spec["entrypoint"]
    # the image it runs is built from this repo with the same Ray
    dockerfile = (ROOT / "k8s" / "Dockerfile").read_text()
    assert f"rayproject/ray:{ray.__version__}" in dockerfile and "pip install" in dockerfile
    assert "torch==" in dockerfile and "torch.version.cuda" in dockerfile  # a pinned CUDA torch, checked at build
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".venv", "runs", ".git", "bench/work"} <= set(ignored)


@pytest.mark.parametrize("stage", STAGES)
def test_every_stage_has_a_job_entrypoint(stage):
    text = (ROOT / "jobs" / f"{stage}.py").read_text()
    assert f'main(["{stage}", *sys.argv[1:]])' in text and "ray job submit" in text
