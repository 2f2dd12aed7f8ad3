# Shared by the scripts/bench-*.sh scripts (sourced). The caller sets $bin (the build dir), $dir
# (a scratch folder) and the arrays pids=() and results=().

# emit BENCH MEASURE VALUE UNIT BASELINE TARGET higher|lower: adds one JSON result line (TARGET
# "null": none is set, and met is null too).
emit() {
  results+=("$(python3 - "$@" <<'PY'
import json, sys
bench, measure, value, unit, baseline, target, better = sys.argv[1:8]
value, baseline = float(value), float(baseline)
if target == "null":  # no target set for this measure
    target = met = None
else:
    target = float(target)
    met = value >= target if better == "higher" else value <= target
print(json.dumps({"bench": bench, "measure": measure, "value": round(value, 3), "unit": unit,
                  "baseline": round(baseline, 3),
                  "ratio": round(value / baseline, 3) if baseline else None,
                  "target": target, "met": met}))
PY
)")
}

# field JSON KEY: one field of a JSON object.
field() { python3 -c "import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])" "$1" "$2"; }

# start_scheduler NAME [ARGS...]: a fresh daemon on loopback with an admin user "bench" whose
# credentials the clients use (security on, as in production). Sets $endpoint, $state,
# $sched_pid, KILN_CREDENTIALS, and $http_url when ARGS hold --http.
start_scheduler() {
  local name=$1
  shift
  "$bin/kiln-scheduler" --listen 'tcp://127.0.0.1:*' --state-dir "$dir/$name" --log-level warn \
    "$@" >"$dir/$name.log" 2>&1 &
  sched_pid=$!
  pids+=("$sched_pid")
  for _ in $(seq 100); do [ -s "$dir/$name/endpoint" ] && break; sleep 0.1; done
  endpoint="$(cat "$dir/$name/endpoint")"
  state="$dir/$name"
  http_url=""
  if [[ " $* " == *" --http "* ]]; then
    for _ in $(seq 100); do [ -s "$state/http_endpoint" ] && break; sleep 0.1; done
    http_url="$(cat "$state/http_endpoint")"
  fi
  "$bin/kiln-scheduler" --state-dir "$state" user add bench --admin --unix-user "$(id -un)" \
    --allow-root --credentials "$state/bench.json" --scheduler "$endpoint" >/dev/null
  export KILN_CREDENTIALS="$state/bench.json"
}
stop_scheduler() { kill -TERM "$sched_pid"; wait "$sched_pid" 2>/dev/null || true; }
