#!/usr/bin/env bash
# Issue 33's remaining runs on the seed-0 planting, one method and seed at a time, niced, in the order that decides
# the open designs first. A run already finished (here, or in a pack under bench/cache/) is skipped; a new one is
# packed into bench/cache/ when it finishes: commit those packs. Touch bench/work/STOP to stop before the next run.
#   nohup bash bench/quality/queue.sh > bench/work/queue.log 2>&1 &
set -uo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
RUNS=bench/work/quality-cpu/noisy/runs
PACKS=bench/cache/quality-cpu-noisy/runs
mkdir -p bench/work
while pgrep -f "bench/quality/run.py" >/dev/null; do sleep 30; done  # one benchmark run at a time

q() {  # q METHOD SEED: the run, and the default's run of that seed (the comparisons need it)
  local method=$1 seed=$2
  [ -e bench/work/STOP ] && { echo "STOP file: stopped before $method s$seed"; exit 0; }
  if [ -e "$RUNS/$method-s$seed/eval_items.json" ] || [ -e "$PACKS/$method-s$seed.tar.gz" ]; then
    [ -e "$RUNS/lead+quantile-s$seed/eval_items.json" ] || [ -e "$PACKS/lead+quantile-s$seed.tar.gz" ] && return
  fi
  echo "== $(date -u +%H:%M:%S) $method s$seed"
  nice -n 15 "$PY" bench/quality/run.py --noisy --work bench/work/quality-cpu --seeds "$seed" \
    --methods "lead+quantile,$method" --result quality_noisy_queue || echo "FAILED $method s$seed"
}

for s in 45 46; do q random-x2 "$s"; done                                  # the default's control at 5 seeds
for s in 44 45 46; do q lead+quantile+trim "$s"; done                      # design (a)
for s in 46; do q random "$s"; done
for s in 44 45 46; do q lead+quantile+end-z "$s"; q random-x2+end-z "$s"; done  # design (b) and its control
for s in 44 45 46; do q random+end-z "$s"; q lead+quantile+end-z+trim "$s"; done
for s in 42 43 44 45 46; do q lead+quantile+anchor "$s"; done              # design (c); its reference model once
for s in 42 43 44 45 46; do q random-x1.3 "$s"; q random-x1.6+end-z "$s"; done  # token-matched, decide nothing
echo "== $(date -u +%H:%M:%S) queue done"
