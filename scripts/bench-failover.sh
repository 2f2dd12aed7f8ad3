#!/usr/bin/env bash
# Failover on a real multi-host cluster in network namespaces (scripts/netns-cluster.sh; root):
#  (a) a 4-rank job (2 hosts x 2 ranks) trained without interruption: the baseline accuracy;
#  (b) the same job with its second host killed mid-run (every process of the host, SIGKILL):
#      time from the kill to the scheduler ending the attempt (detection, target <= 3 s), from
#      detection to training running again on other hosts (target <= 5 s), steps lost (at most
#      the checkpoint interval) and the final accuracy against (a) (within 0.5 points);
#  (c) kill -9 of the scheduler during a burst of 10,000 submits, restart on the same state dir,
#      then every request sent again with its request id: acknowledged jobs found (target: all)
#      and jobs created twice (target: none).
# Ends with one JSON line per measure. KILN_BENCH_SUBMITS (default 10000), WORKER_TIMEOUT
# (default 3, the scheduler's --worker-timeout), WORKER_LEASE (default: the timeout, so that (b)
# measures the fastest failover kiln allows; the scheduler's default lease of 30 s adds up to 27 s
# to it in exchange for self-fencing partitioned workers, docs/operations.md).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$repo/scripts/setup.sh" >/dev/null
bin="${KILN_BUILD_DIR:-$repo/build}"
export KILN_BUILD_DIR="$bin" WORKER_TIMEOUT="${WORKER_TIMEOUT:-3}"
export WORKER_LEASE="${WORKER_LEASE:-$WORKER_TIMEOUT}"
submits="${KILN_BENCH_SUBMITS:-10000}"
nc="$repo/scripts/netns-cluster.sh"
"$nc" check
dir=$(mktemp -d /tmp/kiln-bench-failover-XXXXXX)
cleanup() { "$nc" down "$dir" >/dev/null 2>&1 || true; rm -rf "$dir"; }
trap cleanup EXIT
"$nc" up "$dir" 3 2

python3 - "$nc" "$dir" "$bin" "$submits" <<'PY'
import json, os, subprocess, sys, time
nc, d, bin_dir, submits = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])

def kiln(*args):
    return subprocess.run([nc, "kiln", d, *args], capture_output=True, text=True)

def show(job):
    r = kiln("show", str(job), "--json")
    return json.loads(r.stdout) if r.returncode == 0 else {}

def now_ms():
    return int(time.time() * 1000)

spec = {"name": "failover", "resources": {"ranks": 4},
        "model": {"type": "mlp", "hidden": [256, 256]},
        "data": {"type": "synthetic", "samples": 16384, "test_samples": 2048, "features": 20,
                 "classes": 3, "seed": 7},
        "train": {"epochs": 6, "batch_size": 128, "loss": "cross_entropy",
                  "optimizer": {"type": "adam", "lr": 0.003}, "seed": 3},
        "checkpoint": {"every_steps": 20, "keep_last": 2}, "max_retries": 2}
interval = spec["checkpoint"]["every_steps"]
path = os.path.join(d, "failover.json")
json.dump(spec, open(path, "w"))

def submit():
    r = kiln("submit", path)
    assert r.returncode == 0, r.stderr
    return int(r.stdout)

def wait_done(job, timeout=600):
    deadline = time.time() + timeout
    while time.time() < deadline:
        j = show(job)
        if j.get("state") in ("COMPLETED", "FAILED", "CANCELLED"):
            return j
        time.sleep(0.5)
    raise SystemExit(f"job {job} did not finish")

print("== (a) uninterrupted", flush=True)
a = wait_done(submit())
acc_a = a["metrics"]["test_accuracy"]
print(f"state {a['state']}, test accuracy {acc_a:.4f}", flush=True)

print("== (b) second host killed mid-run", flush=True)
job = submit()
last_step = 0
while True:
    j = show(job)
    step = j.get("metrics", {}).get("step", 0) if j.get("state") == "RUNNING" else 0
    last_step = max(last_step, step)
    if step >= 3 * interval + interval // 2:
        break
    time.sleep(0.1)
victim = j["allocation"][1]["node"]
t_kill = now_ms()
subprocess.run([nc, "kill-host", d, victim[victim.rfind("h") + 1:]], check=True)
t_detect = t_resumed = None
resumed_from = None
while t_resumed is None:
    j = show(job)
    attempts = j.get("attempts", [])
    if t_detect is None and attempts and attempts[0]["ended_at"] > 0:
        t_detect = attempts[0]["ended_at"]
    if t_detect is None and j.get("attempt") == 1:
        last_step = max(last_step, j.get("metrics", {}).get("step", 0))
    if len(attempts) >= 2:
        resumed_from = attempts[1]["resumed_from_step"]
        if j.get("metrics", {}).get("step", 0) > resumed_from and j.get("state") == "RUNNING":
            t_resumed = now_ms()
        elif j.get("state") in ("COMPLETED", "FAILED"):
            t_resumed = attempts[1]["ended_at"]
    if now_ms() - t_kill > 120000:
        raise SystemExit("the job did not resume within 120 s")
    time.sleep(0.05)
b = wait_done(job)
acc_b = b["metrics"].get("test_accuracy", 0)
detection_s = (t_detect - t_kill) / 1000
resume_s = (t_resumed - t_detect) / 1000
steps_lost = max(0, last_step - resumed_from)
print(f"killed {victim} at step >= {last_step}; attempt 1 ended after {detection_s:.2f} s; "
      f"training again {resume_s:.2f} s later from step {resumed_from} on "
      f"{[s['node'] for s in b['attempts'][1]['nodes']]}; final {b['state']}, "
      f"accuracy {acc_b:.4f}", flush=True)

print(f"== (c) kill -9 of the scheduler during {submits} submits", flush=True)
state = os.path.join(d, "state")
bench = [os.path.join(bin_dir, "kiln-bench-submit"), "--credentials", os.path.join(d, "admin.json"),
         "--endpoint", "tcp://10.77.0.1:7070", "--mode", "burst", "--jobs", str(submits),
         "--spec", os.path.join(d, "small.json"), "--seconds", "120"]
json.dump({"name": "burst", "resources": {"ranks": 1},
           "model": {"type": "mlp", "hidden": [8]},
           "data": {"type": "synthetic", "samples": 64, "features": 4, "classes": 2},
           "train": {"epochs": 1, "batch_size": 16, "loss": "cross_entropy",
                     "optimizer": {"type": "sgd", "lr": 0.1}}},
          open(os.path.join(d, "small.json"), "w"))
ns0 = subprocess.run(["bash", "-c", f"source /dev/stdin <<< \"$(sed -n '/^ns_id()/,/^ns()/p' {nc})\"; ns {d} 0"],
                     capture_output=True, text=True).stdout.strip()
first = subprocess.Popen(["ip", "netns", "exec", ns0, *bench], stdout=subprocess.PIPE, text=True)
acked = {}
for line in first.stdout:
    request, job_id, _ = line.split()
    acked[request] = int(job_id)
    if len(acked) >= submits // 5:
        break
pid = int(open(os.path.join(d, "scheduler.pid")).read())
os.kill(pid, 9)
for line in first.stdout:  # replies that were already on the wire
    request, job_id, _ = line.split()
    acked[request] = int(job_id)
first.wait()
subprocess.Popen(["ip", "netns", "exec", ns0, os.path.join(bin_dir, "kiln-scheduler"), "--listen",
                  "tcp://10.77.0.1:7070", "--state-dir", state, "--worker-timeout", "3",
                  "--worker-lease", os.environ.get("WORKER_LEASE", "3")],
                 stdout=open(os.path.join(d, "scheduler.log"), "a"), stderr=subprocess.STDOUT)
time.sleep(1)
retry = subprocess.run(["ip", "netns", "exec", ns0, *bench], capture_output=True, text=True)
again = {}
for line in retry.stdout.splitlines():
    request, job_id, duplicate = line.split()
    again[request] = (int(job_id), duplicate == "1")
found = sum(1 for r, j in acked.items() if again.get(r, (None, False))[0] == j)
jobs = json.loads(kiln("queue", "--all", "--json").stdout)
burst_jobs = [j for j in jobs if j["name"] == "burst"]
doubles = len(burst_jobs) - len({j for j, _ in again.values()})
print(f"{len(acked)} submits acknowledged before the kill; after the restart {found} of them "
      f"found; {len(again)} of {submits} requests answered on retry; {len(burst_jobs)} jobs "
      f"for {submits} request ids", flush=True)

def emit(measure, value, unit, baseline, target, met):
    print(json.dumps({"bench": "failover", "measure": measure, "value": round(value, 3),
                      "unit": unit, "baseline": baseline,
                      "ratio": round(value / baseline, 3) if baseline else None,
                      "target": target, "met": met}))

emit("detection_s", detection_s, "s", float(os.environ.get("WORKER_TIMEOUT", "3")), 3.0,
     detection_s <= 3.0)
emit("detection_to_training_s", resume_s, "s", None, 5.0, resume_s <= 5.0)
emit("steps_lost", steps_lost, "steps", interval, interval, steps_lost <= interval)
emit("accuracy_points_vs_uninterrupted", abs(acc_b - acc_a) * 100, "points", acc_a * 100, 0.5,
     abs(acc_b - acc_a) * 100 <= 0.5 and b["state"] == "COMPLETED")
emit("acknowledged_submits_found", found, "jobs", len(acked), len(acked), found == len(acked))
emit("submits_doubled", doubles, "jobs", submits, 0, doubles == 0)
PY
