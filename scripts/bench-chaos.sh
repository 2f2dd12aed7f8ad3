#!/usr/bin/env bash
# Chaos soak on a real multi-host cluster in network namespaces (scripts/netns-cluster.sh; root):
# a scheduler host and 3 worker hosts of 2 slots run a mixed workload (short single-rank jobs,
# 2-host gangs that checkpoint, cancels, holds and releases, bursts of pipelined submits) while a
# chaos loop, at random intervals, kill -9's the scheduler, kill -9's a worker host's agent and
# ranks, SIGSTOPs a rank (past its stall timeout) and drops a host's link for a few seconds.
# At the end, with every fault healed and every job finished, it checks and prints one JSON line
# per measure:
#   acknowledged jobs lost                            target 0
#   jobs that ran two attempts at once               target 0 (sampled from /proc every 0.5 s)
#   processes left behind on any host                 target 0
#   log lines lost or duplicated                      target 0 (rank 0's progress lines, per attempt)
#   checkpoints whose sha256 does not match           target 0
#   database growth per 1,000 jobs                    reported (bytes)
#   faults injected, by kind                          reported
#
#   scripts/bench-chaos.sh [MINUTES]    (default 20; KILN_CHAOS_SEED picks the random sequence)
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$repo/scripts/setup.sh" >/dev/null
bin="${KILN_BUILD_DIR:-$repo/build}"
minutes="${1:-20}"
export KILN_BUILD_DIR="$bin" WORKER_TIMEOUT="${WORKER_TIMEOUT:-3}" WORKER_LEASE="${WORKER_LEASE:-9}"
nc="$repo/scripts/netns-cluster.sh"
"$nc" check
dir=$(mktemp -d /tmp/kiln-bench-chaos-XXXXXX)
cleanup() { "$nc" down "$dir" >/dev/null 2>&1 || true; rm -rf "$dir"; }
trap cleanup EXIT
"$nc" up "$dir" 3 2

python3 - "$nc" "$dir" "$bin" "$minutes" "${KILN_CHAOS_SEED:-1}" <<'PY'
import collections, hashlib, json, os, random, re, signal, subprocess, sys, threading, time

nc, d, bin_dir, minutes, seed = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]), int(sys.argv[5])
rng = random.Random(seed)
WORKERS = [1, 2, 3]
end_at = time.time() + minutes * 60
stop = threading.Event()
lock = threading.Lock()
acked = {}                         # job id -> kind, every submit the scheduler acknowledged
faults = collections.Counter()
overlaps = {}                      # job id -> attempts seen alive at the same moment


def run(*args, timeout=120):
    try:
        return subprocess.run(list(args), capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(args, 124, "", "timeout")


def kiln(*args, timeout=60):
    return run(nc, "kiln", d, *args, timeout=timeout)


def kiln_json(*args):
    r = kiln(*args)
    try:
        return json.loads(r.stdout) if r.returncode == 0 else None
    except ValueError:
        return None


NS = {i: run(nc, "ns", d, str(i)).stdout.strip() for i in [0] + WORKERS}


def spec_file(name, spec):
    path = os.path.join(d, name + ".json")
    with open(path, "w") as f:
        json.dump(spec, f)
    return path


def train(epochs):
    return {"epochs": epochs, "batch_size": 16, "loss": "cross_entropy",
            "optimizer": {"type": "adam", "lr": 0.01}, "seed": 5, "stall_timeout_s": 5}


SINGLE = [spec_file(f"single{e}", {
    "name": f"single{e}", "resources": {"ranks": 1},
    "model": {"type": "mlp", "hidden": [32]},
    "data": {"type": "synthetic", "samples": 4096, "test_samples": 256, "features": 20,
             "classes": 3, "seed": 3},
    "train": train(e), "checkpoint": {"every_steps": 100, "keep_last": 2}, "max_retries": 6})
    for e in (2, 4, 6)]
GANG = spec_file("gang", {
    "name": "gang", "resources": {"ranks": 4, "ranks_per_node": 2},
    "model": {"type": "mlp", "hidden": [64, 64]},
    "data": {"type": "synthetic", "samples": 16384, "test_samples": 512, "features": 20,
             "classes": 3, "seed": 7},
    "train": dict(train(8), batch_size=32),
    "checkpoint": {"every_steps": 50, "keep_last": 2}, "max_retries": 8})
BURST = spec_file("burst", {
    "name": "burst", "resources": {"ranks": 1}, "model": {"type": "mlp", "hidden": [8]},
    "data": {"type": "synthetic", "samples": 64, "features": 4, "classes": 2},
    "train": {"epochs": 1, "batch_size": 16, "loss": "cross_entropy",
              "optimizer": {"type": "sgd", "lr": 0.1}}, "max_retries": 6})


def submit(path, kind):
    r = kiln("submit", path)
    if r.returncode == 0 and r.stdout.strip().isdigit():
        with lock:
            acked[int(r.stdout.strip())] = kind


def burst(n):
    bench = [os.path.join(bin_dir, "kiln-bench-submit"), "--credentials",
             os.path.join(d, "admin.json"), "--endpoint", "tcp://10.77.0.1:7070", "--mode",
             "burst", "--jobs", str(n), "--spec", BURST, "--seconds", "30"]
    r = run("ip", "netns", "exec", NS[0], *bench, timeout=60)
    for line in r.stdout.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1].isdigit():
            with lock:
                acked[int(parts[1])] = "burst"


def unfinished():
    q = kiln_json("queue", "--json")
    return q if isinstance(q, list) else None


def workload():
    bursts = 0
    while not stop.is_set() and time.time() < end_at:
        q = unfinished()
        waiting = None if q is None else [j for j in q if not j.get("held")]
        room = waiting is not None and len(waiting) < 24
        r = rng.random()
        if room and r < 0.45:
            submit(rng.choice(SINGLE), "single")
        elif room and r < 0.60:
            submit(GANG, "gang")
        elif r < 0.68 and q:
            kiln("cancel", str(rng.choice(q)["id"]))
        elif r < 0.78 and q:
            pending = [j["id"] for j in q if j["state"] == "PENDING" and not j.get("held")]
            if pending:
                kiln("hold", str(rng.choice(pending)))
        elif r < 0.90 and q:
            holding = [j["id"] for j in q if j.get("held")]
            if holding:
                kiln("release", str(rng.choice(holding)))
        elif r < 0.93 and room and bursts < 3:
            bursts += 1
            burst(40)  # held submits, pipelined on one connection; released a few at a time
        time.sleep(rng.uniform(0.5, 2.0))


def process_attempts():
    """(job, attempt) of every kiln-train process on the worker hosts, by host."""
    seen = collections.defaultdict(set)
    for host in WORKERS:
        pids = run("ip", "netns", "pids", NS[host]).stdout.split()
        for pid in pids:
            try:
                cmd = open(f"/proc/{pid}/cmdline", "rb").read().decode(errors="replace")
            except OSError:
                continue
            m = re.search(r"/jobs/(\d+)/attempt-(\d+)", cmd)
            if "kiln-train" in cmd and m:
                seen[int(m.group(1))].add(int(m.group(2)))
    return seen


def sampler():
    while not stop.is_set():
        for job, attempts in process_attempts().items():
            if len(attempts) > 1:
                with lock:
                    overlaps[job] = sorted(attempts)
        time.sleep(0.5)


def worker_pids(host, name):
    out = []
    for pid in run("ip", "netns", "pids", NS[host]).stdout.split():
        try:
            if open(f"/proc/{pid}/comm").read().strip() == name:
                out.append(int(pid))
        except OSError:
            pass
    return out


def chaos():
    while not stop.is_set() and time.time() < end_at - 20:
        time.sleep(rng.uniform(15, 40))
        kind = rng.choice(["scheduler", "agent", "rank", "link"])
        host = rng.choice(WORKERS)
        if kind == "scheduler":
            run(nc, "kill-scheduler", d)
            time.sleep(rng.uniform(0.5, 3))
            run(nc, "start-scheduler", d)
        elif kind == "agent":
            run(nc, "kill-host", d, str(host))
            time.sleep(rng.uniform(1, 4))
            run(nc, "start-worker", d, str(host))
        elif kind == "rank":
            ranks = worker_pids(host, "kiln-train")
            if not ranks:
                continue
            victim = rng.choice(ranks)
            try:
                os.kill(victim, signal.SIGSTOP)
                time.sleep(9)  # past its 5 s stall timeout
                os.kill(victim, signal.SIGCONT)
            except OSError:
                pass
        else:
            run(nc, "link", d, str(host), "down")
            time.sleep(rng.uniform(2, 12))  # within and past the 9 s lease
            run(nc, "link", d, str(host), "up")
        faults[kind] += 1
        print(f"[{time.strftime('%H:%M:%S')}] fault: {kind} (host {host}); "
              f"{len(acked)} jobs acknowledged so far", flush=True)


def db_bytes():
    state = os.path.join(d, "state")
    return sum(os.path.getsize(os.path.join(state, f)) for f in os.listdir(state)
               if f.startswith("kiln.db"))


db_start = db_bytes()
threads = [threading.Thread(target=f, daemon=True) for f in (workload, sampler, chaos)]
for t in threads:
    t.start()
threads[0].join()
threads[2].join()
print("== workload over; healing and waiting for every job to finish", flush=True)
for host in WORKERS:
    run(nc, "link", d, str(host), "up")
if run("kill", "-0", open(os.path.join(d, "scheduler.pid")).read().strip()).returncode != 0:
    run(nc, "start-scheduler", d)
for host in WORKERS:
    if not worker_pids(host, "kiln-worker"):
        run(nc, "start-worker", d, str(host))
deadline = time.time() + 900
while time.time() < deadline:
    q = unfinished()
    if q == []:
        break
    for j in q or []:
        if j.get("held"):
            kiln("release", str(j["id"]))
    time.sleep(2)
time.sleep(5)
stop.set()
threads[1].join()

all_jobs = {j["id"]: j for j in (kiln_json("queue", "--all", "--json") or [])}
lost = sorted(set(acked) - set(all_jobs))
still = sorted(j for j, v in all_jobs.items() if v["state"] in ("PENDING", "RUNNING"))
time.sleep(10)
left = sum(len(worker_pids(h, n)) for h in WORKERS for n in ("kiln-train", "orted", "mpirun"))

# Rank 0's progress lines: each (attempt, step) once; every line of a completed attempt there.
line_re = re.compile(r"^\[rank 0\] epoch \d+ step (\d+)/(\d+) ")
duplicated = missing = checked = 0
done_jobs = [j for j, v in all_jobs.items() if v["state"] == "COMPLETED" and acked.get(j) != "burst"]
for job in done_jobs:
    shown = kiln_json("show", str(job), "--json") or {}
    r = kiln("logs", str(job), "--json", timeout=120)
    counts = collections.Counter()
    totals = {}
    for raw in r.stdout.splitlines():
        try:
            line = json.loads(raw)
        except ValueError:
            continue
        m = line_re.match(line.get("line", ""))
        if m:
            counts[(line["attempt"], int(m.group(1)))] += 1
            totals[line["attempt"]] = int(m.group(2))
    duplicated += sum(c - 1 for c in counts.values() if c > 1)
    for a in shown.get("attempts", []):
        if a.get("outcome") != "COMPLETED" or a["attempt"] not in totals:
            continue
        start = max(0, a.get("resumed_from_step", -1))
        for step in range(100, totals[a["attempt"]] + 1, 100):
            if step > start and counts[(a["attempt"], step)] == 0:
                missing += 1
    checked += 1

blobs = os.path.join(d, "state", "checkpoints")
bad = 0
for name in os.listdir(blobs):
    path = os.path.join(blobs, name)
    if not re.fullmatch(r"[0-9a-f]{64}", name) or not os.path.isfile(path):
        continue
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    bad += h.hexdigest() != name

growth = (db_bytes() - db_start) / max(1, len(all_jobs)) * 1000
states = collections.Counter(v["state"] for v in all_jobs.values())
print(f"{len(acked)} jobs acknowledged ({dict(collections.Counter(acked.values()))}), states "
      f"{dict(states)}, unfinished {still}; faults {dict(faults)}; overlaps {overlaps}; "
      f"log lines checked in {checked} completed jobs", flush=True)


def line(measure, value, unit, target, met):
    print(json.dumps({"bench": "chaos", "measure": measure, "value": value, "unit": unit,
                      "baseline": None, "ratio": None, "target": target, "met": met}))


line("acknowledged_jobs_lost", len(lost), "jobs", 0, not lost)
line("jobs_run_twice_at_once", len(overlaps), "jobs", 0, not overlaps)
line("processes_left_behind", left, "processes", 0, left == 0)
line("log_lines_lost", missing, "lines", 0, missing == 0)
line("log_lines_duplicated", duplicated, "lines", 0, duplicated == 0)
line("checkpoints_bad_sha256", bad, "checkpoints", 0, bad == 0)
line("jobs_unfinished_at_end", len(still), "jobs", 0, not still)
line("db_growth_per_1000_jobs", round(growth), "bytes", None, True)
for kind in ("scheduler", "agent", "rank", "link"):
    line(f"faults_{kind}", faults[kind], "faults", None, True)
line("minutes", minutes, "min", 20, minutes >= 20)
PY
