#!/usr/bin/env bash
# The HTTP server's benchmarks (issue 16), each against a baseline run in this same invocation:
#  (a) durable submits/s from 8 ZeroMQ clients (kiln-bench-submit, as part (b) of
#      bench-scheduler.sh) with the HTTP server on and /metrics scraped every second, against the
#      same daemon without --http: the cost of the HTTP threads and the metrics (target: at most
#      5 % fewer). Off and on alternate, three times each; the median of each counts;
#  (b) submits/s through the HTTP API (POST /api/v1/jobs) from 8 keep-alive clients, one request
#      in flight each (kiln-bench-http-submit), against ZeroMQ clients with the same concurrency
#      (kiln-bench-submit --window 1): what forwarding over HTTP costs (target: at least half);
#  (c) a logged-in user opening a finished job's page in headless Chromium: from navigation to
#      the loss chart drawn with points (median of 3), against the page's first contentful paint
#      (target: under 1 s).
# KILN_BENCH_QUICK=1 shrinks the sizes. Ends with one JSON line per measure.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$repo/scripts/setup.sh" >/dev/null
bin="${KILN_BUILD_DIR:-$repo/build}"
cmake --build "$bin" --target kiln-bench-submit kiln-bench-http-submit >/dev/null
quick="${KILN_BENCH_QUICK:-0}"
dir=$(mktemp -d /tmp/kiln-bench-http-XXXXXX)
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
pids=()
results=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT

source "$repo/scripts/bench/lib.sh"  # emit, field, start_scheduler, stop_scheduler

spec="$dir/spec.json"
python3 - "$repo/configs/jobs/synthetic-binary-mlp.json" "$spec" <<'PY'
import json, sys
spec = json.load(open(sys.argv[1]))
spec["resources"] = {"ranks": 2}
spec["train"]["epochs"] = 100000
json.dump(spec, open(sys.argv[2], "w"))
PY
per_client=$([ "$quick" = 1 ] && echo 500 || echo 2500)

echo "== (a) ZeroMQ submits/s, HTTP server and scraping off vs on"
zmq_rate() {  # zmq_rate NAME on|off
  local scraper=""
  if [ "$2" = on ]; then start_scheduler "$1" --http 127.0.0.1:0; else start_scheduler "$1"; fi
  if [ "$2" = on ]; then
    (while true; do curl -s "$http_url/metrics" >/dev/null || true; sleep 1; done) &
    scraper=$!
  fi
  local out
  out=$("$bin/kiln-bench-submit" --credentials "$KILN_CREDENTIALS" --endpoint "$endpoint" \
        --mode submit --spec "$spec" --jobs "$per_client")
  [ -n "$scraper" ] && { kill "$scraper"; wait "$scraper" 2>/dev/null || true; }
  stop_scheduler
  field "$out" per_second
}
median() { python3 -c "import sys, statistics; print(statistics.median(float(x) for x in sys.argv[1:]))" "$@"; }
offs=() ons=()
for round in 1 2 3; do
  offs+=("$(zmq_rate "off$round" off)")
  ons+=("$(zmq_rate "on$round" on)")
done
off=$(median "${offs[@]}"); on=$(median "${ons[@]}")
echo "submits/s without HTTP: ${offs[*]}; with HTTP and scraping: ${ons[*]}"
emit http zmq_submits_per_s_with_http_and_metrics "$on" "submits/s" "$off" \
  "$(python3 -c "print($off * 0.95)")" higher

echo "== (b) submits/s through the HTTP API, 8 clients, one request in flight each"
start_scheduler api --http 127.0.0.1:0
http_jobs=$([ "$quick" = 1 ] && echo 200 || echo 1000)
api=$("$bin/kiln-bench-http-submit" --url "$http_url" --credentials "$KILN_CREDENTIALS" \
      --spec "$spec" --clients 8 --jobs "$http_jobs")
same=$("$bin/kiln-bench-submit" --credentials "$KILN_CREDENTIALS" --endpoint "$endpoint" \
       --mode submit --spec "$spec" --clients 8 --window 1 --jobs "$http_jobs")
echo "HTTP API submits: $api"
echo "ZeroMQ submits, same concurrency: $same"
stop_scheduler
emit http api_submits_per_s_8_clients "$(field "$api" per_second)" "submits/s" \
  "$(field "$same" per_second)" "$(python3 -c "print($(field "$same" per_second) * 0.5)")" higher

echo "== (c) dashboard job page: navigation to loss chart drawn (Chromium), a finished job"
start_scheduler page --http 127.0.0.1:0
work="$dir/work"
mkdir -p "$work"
"$bin/kiln-worker" --scheduler "$endpoint" --name page --slots 2 --work-dir "$work" \
  --server-key "$state/server.pub" --key-file "$state/worker-cluster.key" >"$dir/worker.log" 2>&1 &
pids+=("$!")
for _ in $(seq 100); do KILN_SCHEDULER="$endpoint" "$bin/kiln" nodes 2>/dev/null | grep -q " UP " && break; sleep 0.1; done
short="$dir/short.json"
python3 - "$spec" "$short" <<'PY'
import json, sys
spec = json.load(open(sys.argv[1]))
spec["train"]["epochs"] = 20
json.dump(spec, open(sys.argv[2], "w"))
PY
id=$(KILN_SCHEDULER="$endpoint" "$bin/kiln" submit "$short" --follow 2>/dev/null | head -1)
token=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['token'])" "$KILN_CREDENTIALS")
loads=()
for _ in 1 2 3; do
  loads+=("$(/usr/bin/python3 "$repo/tests/integration/dashboard_browser.py" --load-time \
             "$http_url" "$id" "$token")")
done
echo "page loads: ${loads[*]}"
median() { python3 -c "import json,sys,statistics; print(statistics.median(json.loads(a)['timing'][sys.argv[1]] for a in sys.argv[2:]))" "$@"; }
fcp=$(median fcp "${loads[@]}")
chart=$(median chart "${loads[@]}")
stop_scheduler
emit http dashboard_chart_drawn_ms "$chart" ms "$fcp" 1000 lower

printf '%s\n' "${results[@]}"
