#!/usr/bin/env bash
# Every quality result file docs/BENCHMARKS.md reports, rewritten from the finished runs (none is started), then
# the generated tables in README.md and docs/. About 3 minutes; run it when no benchmark run is going.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
RUN=(bench/quality/run.py --work bench/work/quality-cpu --report)
DECISION=lead+quantile,random,random-x2,lead+quantile+trim,lead+quantile+end-z,lead+quantile+end-z+trim
DECISION+=,lead+quantile+anchor,random+end-z,random-x2+end-z,random-x1.3,random-x1.6+end-z

"$PY" "${RUN[@]}"                                              # quality.json: the clean pool, seeds 42-44
"$PY" "${RUN[@]}" --noisy                                      # quality_noisy.json: the seed-0 planting
"$PY" "${RUN[@]}" --noisy --seeds 42 --result quality_noisy_screen
"$PY" "${RUN[@]}" --noisy --seeds 42,43,44,45,46 --methods "$DECISION" --result quality_noisy_decision
for doc in README.md docs/BENCHMARKS.md docs/BENCHMARK_LOG.md docs/SCALING.md; do
  "$PY" bench/quality/tables.py --docs "$doc"
done
