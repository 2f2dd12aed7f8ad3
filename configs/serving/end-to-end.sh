#!/usr/bin/env bash
# The serving flow end to end against a running cluster (kiln on PATH, KILN_SCHEDULER and
# KILN_CREDENTIALS set, as scripts/quickstart.sh with KILN_QUICKSTART_KEEP=1 prints): trains the
# Keras-style binary classifier (Dense 64 relu, Dense 64 relu, Dense 1 sigmoid), deploys it,
# asks it over HTTP (curl, the Open Inference Protocol) and with `kiln predict --service`
# (checked against `kiln predict` on the same rows), rolls it to an earlier checkpoint, and
# undeploys it. docs/serving.md explains each step; scripts/docs-check.sh runs this script.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
name="${1:-binary}"
work="$(mktemp -d /tmp/kiln-serving-XXXXXX)"
trap 'rm -rf "$work"' EXIT

job=$(kiln submit --follow "$here/../jobs/synthetic-binary-mlp.json")
echo "trained job $job"
kiln deploy "$job" --name "$name" --wait 120
endpoint=$(kiln services "$name" --json | python3 -c "import json,sys; print(json.load(sys.stdin)[0]['endpoints'][0])")

# Any HTTP client: the token is the caller's token for this service (kiln service token).
curl -sf -H "Authorization: Bearer $(kiln service token "$name")" \
     -d @"$here/infer-binary.json" "$endpoint/v2/models/$name/infer"
echo

# The same rows through the service and through the checkpoint: the same predictions.
python3 - "$work/rows.csv" <<'PY'
import random, sys
random.seed(5)
with open(sys.argv[1], "w") as f:
    for _ in range(200):
        f.write(",".join("%.5f" % random.gauss(0, 1) for _ in range(100)) + "\n")
PY
kiln predict --service "$name" --input "$work/rows.csv" >"$work/service.csv"
kiln predict "$job" --input "$work/rows.csv" >"$work/local.csv"
cmp "$work/service.csv" "$work/local.csv"
echo "kiln predict --service: $(($(wc -l <"$work/service.csv") - 1)) rows, the same as kiln predict"

# Roll to the job's first checkpoint, one replica at a time, then remove the service.
first=$(kiln ckpt ls "$job" --json | python3 -c "import json,sys; print(json.load(sys.stdin)[0]['step'])")
kiln deploy --update "$name" "$job:$first" --wait 120
kiln undeploy "$name"
