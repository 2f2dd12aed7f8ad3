# shellcheck shell=bash
# slurm_local.sh: a throw-away one-node Slurm on this machine, so that benchmarks can measure how
# many jobs per second `sbatch` accepts (the baseline for kiln's submit rate).
#
# Source it (do not run it); it is safe under `set -euo pipefail`. It must run as root on Debian
# (apt-get, the munge user, /etc/munge). Functions, each returning non-zero on failure:
#
#   slurm_install            apt-get installs slurm-wlm + munge unless sbatch, slurmctld, slurmd
#                            and munged are all present already.
#   slurm_start DIR          starts munged, slurmctld and slurmd with all their state, logs, pid
#                            files, sockets and slurm.conf under DIR (a scratch folder, created if
#                            missing), waits (<= SLURM_LOCAL_TIMEOUT s, default 30) until the node
#                            is idle, and exports SLURM_CONF=DIR/slurm.conf so that later sbatch,
#                            squeue, ... calls use this cluster. On failure it prints the daemons'
#                            logs to stderr, stops what it started and returns 1.
#                            The only key it may create outside DIR is /etc/munge/munge.key (when
#                            none exists; owned by munge, mode 0400). Its munged uses a socket of
#                            its own under DIR, so a munged of the system, if any, is left alone.
#                            Daemons bind to 127.0.0.1 (CommunicationParameters below); ports are
#                            SLURM_LOCAL_CTLD_PORT (default 6817) and SLURM_LOCAL_SLURMD_PORT (6818).
#                            SLURM_LOCAL_EXTRA_CONF: lines added to slurm.conf (e.g. MaxArraySize).
#   slurm_submit_rate N P    submits N held no-op batch jobs (`sbatch --hold --wrap true`) from P
#                            concurrent shell loops, one sbatch process per job, and prints the
#                            accepted jobs per second (a plain number) on stdout. Acceptance is
#                            sbatch's exit status; failures are reported on stderr. Held jobs
#                            never run; they stay queued until slurm_stop.
#   slurm_stop               cancels all jobs, stops the slurmd, slurmctld and munged that
#                            slurm_start started (by their pid files) and restores SLURM_CONF.
#                            Safe to call more than once, or after a failed slurm_start
#                            (e.g. from an EXIT trap).
#
# Example:
#   source scripts/bench/slurm_local.sh
#   slurm_install; slurm_start /tmp/slurm-bench; trap slurm_stop EXIT
#   rate=$(slurm_submit_rate 200 8)

_SLURM_LOCAL_DIR=""          # DIR of the running instance ("" when none)
_SLURM_LOCAL_OLD_CONF=""     # SLURM_CONF before slurm_start, restored by slurm_stop
_SLURM_LOCAL_OLD_CONF_SET="" # "1" if SLURM_CONF was set then, "0" if not, "" before slurm_start

slurm_install() {
  if command -v sbatch >/dev/null && command -v munged >/dev/null \
    && command -v slurmctld >/dev/null && command -v slurmd >/dev/null; then
    return 0
  fi
  local pkgs=(slurm-wlm munge)
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${pkgs[@]}"; then
    # A fresh machine may have no (or stale) package lists.
    DEBIAN_FRONTEND=noninteractive apt-get update -q || return 1
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${pkgs[@]}" || return 1
  fi
}

# _slurm_local_alive PID NAME: true if PID is a live (not zombie) process called NAME.
_slurm_local_alive() {
  local stat
  [ "$(cat "/proc/$1/comm" 2>/dev/null)" = "$2" ] || return 1
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [ "${stat%% *}" != Z ]
}

# _slurm_local_pid PIDFILE NAME: prints the pid in PIDFILE if that process is alive and is NAME.
_slurm_local_pid() {
  local pid
  [ -s "$1" ] || return 1
  pid=$(tr -dc '0-9' <"$1")
  [ -n "$pid" ] && _slurm_local_alive "$pid" "$2" || return 1
  echo "$pid"
}

# _slurm_local_kill PIDFILE NAME: SIGTERM, wait up to 10 s, then SIGKILL.
_slurm_local_kill() {
  local pid i
  pid=$(_slurm_local_pid "$1" "$2") || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 100); do
    _slurm_local_alive "$pid" "$2" || return 0
    sleep 0.1
  done
  echo "slurm_local: $2 (pid $pid) ignored SIGTERM; killing it" >&2
  kill -KILL "$pid" 2>/dev/null || true
}

# _slurm_local_zombies: true while a zombie munged / slurmctld / slurmd / slurmscriptd is unreaped.
_slurm_local_zombies() {
  local pid stat
  command -v pgrep >/dev/null || return 1
  for pid in $(pgrep -x munged; pgrep -x slurmctld; pgrep -x slurmd; pgrep -x slurmscriptd); do
    stat=$(cat "/proc/$pid/stat" 2>/dev/null) || continue
    stat=${stat##*) }   # "STATE PPID ..."
    [ "${stat%% *}" = Z ] && return 0
  done
  return 1
}

_slurm_local_logs() {
  local f
  for f in "$1"/log/munged.log "$1"/log/slurmctld.log "$1"/log/slurmd.log; do
    [ -f "$f" ] || continue
    echo "===== $f (last 40 lines)" >&2
    tail -n 40 "$f" >&2 || true
  done
}

slurm_start() {
  if [ $# -ne 1 ] || [ -z "$1" ]; then
    echo "usage: slurm_start DIR" >&2; return 2
  fi
  if [ -n "$_SLURM_LOCAL_DIR" ]; then
    echo "slurm_local: already started in $_SLURM_LOCAL_DIR (call slurm_stop first)" >&2; return 1
  fi
  local dir host cpus key=/etc/munge/munge.key timeout=${SLURM_LOCAL_TIMEOUT:-30}
  local ctld_port=${SLURM_LOCAL_CTLD_PORT:-6817} slurmd_port=${SLURM_LOCAL_SLURMD_PORT:-6818}
  mkdir -p "$1" && dir=$(cd "$1" && pwd) || return 1
  host=$(hostname -s)
  cpus=$(nproc)

  # Munge key: made once, by the munge package's own tool when there is one.
  if [ ! -s "$key" ]; then
    install -d -o munge -g munge -m 0700 /etc/munge || return 1
    if command -v mungekey >/dev/null; then
      mungekey --create --keyfile="$key" --force || return 1
    elif command -v create-munge-key >/dev/null; then
      create-munge-key -f || return 1
    else
      dd if=/dev/urandom of="$key" bs=1024 count=1 status=none || return 1
    fi
    chown munge:munge "$key" && chmod 0400 "$key" || return 1
  fi

  # Fresh state every time: a previous run's held jobs must not count.
  _SLURM_LOCAL_DIR=$dir
  rm -rf "$dir/munge" "$dir/state" "$dir/spool" "$dir/log" "$dir"/*.pid
  install -d -o munge -g munge -m 0755 "$dir/munge" || return 1
  mkdir -p "$dir/state" "$dir/spool" "$dir/log" || return 1

  # munged as the munge user, on a socket of its own.
  runuser -u munge -- munged \
    --socket="$dir/munge/munge.socket" --pid-file="$dir/munge/munged.pid" \
    --log-file="$dir/munge/munged.log" --seed-file="$dir/munge/munged.seed" --key-file="$key" \
    || { cat "$dir/munge/munged.log" >&2 2>/dev/null; slurm_stop; return 1; }

  cat >"$dir/slurm.conf" <<EOF
# Written by scripts/bench/slurm_local.sh: a one-node Slurm on loopback for benchmarks.
ClusterName=kilnbench
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
# Bind slurmctld to its SlurmctldHost address and slurmd to the node's, not to 0.0.0.0.
CommunicationParameters=NoCtldInAddrAny,NoInAddrAny
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge/munge.socket
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
MailProg=/bin/true
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SwitchType=switch/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
ReturnToService=2
# Use the node as configured even if slurmd detects a different layout.
SlurmdParameters=config_overrides
# Held jobs pile up during a benchmark; the default cap is 10000.
MaxJobCount=1000000
MinJobAge=10
${SLURM_LOCAL_EXTRA_CONF:-}
NodeName=$host NodeAddr=127.0.0.1 NodeHostname=$host CPUs=$cpus State=UNKNOWN
PartitionName=bench Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF

  if [ "${SLURM_CONF+set}" = set ]; then
    _SLURM_LOCAL_OLD_CONF=$SLURM_CONF _SLURM_LOCAL_OLD_CONF_SET=1
  else
    _SLURM_LOCAL_OLD_CONF="" _SLURM_LOCAL_OLD_CONF_SET=0
  fi
  export SLURM_CONF="$dir/slurm.conf"

  # -c: start from empty state; both daemonize and write their pid files.
  slurmctld -c -f "$SLURM_CONF" || { _slurm_local_logs "$dir"; slurm_stop; return 1; }
  slurmd -f "$SLURM_CONF" -N "$host" || { _slurm_local_logs "$dir"; slurm_stop; return 1; }

  local deadline state=""
  deadline=$(( $(date +%s) + timeout ))
  while [ "$(date +%s)" -lt "$deadline" ]; do
    state=$(sinfo -h -n "$host" -o %t 2>/dev/null | head -n 1) || state=""
    [ "$state" = idle ] && return 0
    sleep 0.3
  done
  echo "slurm_local: node $host not idle after ${timeout}s (state: '${state:-?}')" >&2
  _slurm_local_logs "$dir"
  slurm_stop
  return 1
}

slurm_submit_rate() {
  if [ $# -ne 2 ] || ! [ "$1" -gt 0 ] 2>/dev/null || ! [ "$2" -gt 0 ] 2>/dev/null; then
    echo "usage: slurm_submit_rate N PARALLEL" >&2; return 2
  fi
  if [ -z "$_SLURM_LOCAL_DIR" ]; then
    echo "slurm_local: not started (call slurm_start DIR first)" >&2; return 1
  fi
  local n=$1 par=$2 tmp t0 t1 i j count accepted ok=0 failed=0 c
  [ "$par" -le "$n" ] || par=$n
  tmp=$(mktemp -d "$_SLURM_LOCAL_DIR/submit.XXXXXX") || return 1
  t0=$(date +%s.%N)
  for ((i = 0; i < par; i++)); do
    count=$(( n / par + (i < n % par ? 1 : 0) ))
    (
      accepted=0
      for ((j = 0; j < count; j++)); do
        if sbatch --hold --quiet --job-name=kiln-bench --partition=bench \
          --output=/dev/null --error=/dev/null --wrap=true >/dev/null 2>>"$tmp/err.$i"; then
          accepted=$((accepted + 1))
        fi
      done
      echo "$accepted" >"$tmp/ok.$i"
    ) &
  done
  wait
  t1=$(date +%s.%N)
  for ((i = 0; i < par; i++)); do
    c=$(cat "$tmp/ok.$i" 2>/dev/null || echo 0)
    ok=$((ok + c))
  done
  failed=$((n - ok))
  if [ "$failed" -gt 0 ]; then
    echo "slurm_local: warning: $failed of $n sbatch submissions failed; first errors:" >&2
    cat "$tmp"/err.* 2>/dev/null | sort | uniq -c | sort -rn | head -n 5 >&2 || true
  fi
  rm -rf "$tmp"
  awk -v ok="$ok" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f\n", (b > a ? ok / (b - a) : 0) }'
}

slurm_stop() {
  local dir=$_SLURM_LOCAL_DIR i
  [ -n "$dir" ] || return 0
  if [ -f "$dir/slurm.conf" ] && _slurm_local_pid "$dir/slurmctld.pid" slurmctld >/dev/null; then
    SLURM_CONF="$dir/slurm.conf" scancel --partition=bench 2>/dev/null || true
  fi
  _slurm_local_kill "$dir/slurmd.pid" slurmd
  _slurm_local_kill "$dir/slurmctld.pid" slurmctld
  _slurm_local_kill "$dir/munge/munged.pid" munged
  # The daemons are dead, but where PID 1 is slow to reap (some VMs / containers) their zombies,
  # and those of their daemonizing parents, still show in pgrep; give them up to 5 s to go.
  for i in $(seq 50); do
    _slurm_local_zombies || break
    sleep 0.1
  done
  case $_SLURM_LOCAL_OLD_CONF_SET in
    0) unset SLURM_CONF ;;
    1) export SLURM_CONF=$_SLURM_LOCAL_OLD_CONF ;;
  esac
  _SLURM_LOCAL_DIR="" _SLURM_LOCAL_OLD_CONF="" _SLURM_LOCAL_OLD_CONF_SET=""
}
