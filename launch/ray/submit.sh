#!/usr/bin/env bash
# Submit one strata run to a Ray cluster as a Ray job (the cluster of launch/ray/cluster.yaml, or any
# cluster whose job API you can reach). From the repository root:
#   ray dashboard launch/ray/cluster.yaml &      # SSH tunnel: the cluster's job API on 127.0.0.1:8265
#   bash launch/ray/submit.sh budget.keep=0.5 seed=1 model.path=/shared/models/Qwen3-8B
# Arguments are strata overrides, appended after the defaults below (a later key wins). The driver runs
# on the head in an uploaded copy of this checkout (--working-dir ., which Ray puts first on PYTHONPATH
# for the driver and every worker), joins the cluster (ray.address=auto) and starts search.workers
# actors, one per GPU. Outputs go to an absolute run directory on the head (the job's working
# directory is temporary); fetch them with
#   ray rsync-down launch/ray/cluster.yaml /home/ray/strata-runs ./ray-runs
# Follow the job with `ray job logs --follow <id>` or in Ray's dashboard; the study with
#   ray exec launch/ray/cluster.yaml "strata-dashboard /home/ray/strata-runs/<run>" --port-forward 8080
set -euo pipefail
cd "$(dirname "$0")/../.."

address="${RAY_ADDRESS:-http://127.0.0.1:8265}"
run_dir="${STRATA_RUN_DIR:-/home/ray/strata-runs/$(date +%Y-%m-%d_%H-%M-%S)}"

exec ray job submit --address "$address" --working-dir . \
  --runtime-env-json '{"excludes": [".git", ".venv", "outputs", "multirun", "test-artifacts"]}' \
  -- strata search=evo device=cuda search.workers=8 ray.address=auto progress=false \
  "hydra.run.dir=$run_dir" "$@"
