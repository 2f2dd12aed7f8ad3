#!/usr/bin/env bash
# Runs the documentation's shell examples so that they cannot drift from the CLI.
#
# A fenced ```sh block in README.md or docs/*.md is checked when the line before its fence is a
# marker:
#   <!-- docs-check: run -->     run against a local cluster this script starts (a scheduler and
#                                one 2-slot worker, security on): the blocks of one file run in
#                                order in one bash session (set -euo pipefail), so a variable set
#                                in one block is there in the next
#   <!-- docs-check: syntax -->  parsed by `bash -n` only (commands with placeholders)
# The run blocks see what a user sees after scripts/quickstart.sh: kiln, kiln-scheduler and
# kiln-worker on PATH, KILN_SCHEDULER and KILN_CREDENTIALS (an admin) exported, STATE_DIR the
# scheduler's state dir, HOME a fresh folder, and the repository root as the working directory.
#
#   scripts/docs-check.sh [BUILD_DIR]     (default: build/)
# Prints "docs-check: N blocks run, M parsed" and exits 0, or names the failing block's file and
# line and exits 1.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="$(cd "${1:-${KILN_BUILD_DIR:-$repo/build}}" && pwd)"
work="$(mktemp -d /tmp/kiln-docs-check-XXXXXX)"
scheduler_pid="" worker_pid=""
cleanup() {
  [ -n "$worker_pid" ] && kill -TERM "$worker_pid" 2>/dev/null && wait "$worker_pid" 2>/dev/null || true
  [ -n "$scheduler_pid" ] && kill -TERM "$scheduler_pid" 2>/dev/null && wait "$scheduler_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# Every marked block as "KIND FILE LINE" plus its text in $work/blocks/N.sh.
mkdir -p "$work/blocks"
: >"$work/index"
count=0
for doc in "$repo/README.md" "$repo"/docs/*.md; do
  kind="" in_block=0 line_no=0 start=0
  while IFS= read -r line || [ -n "$line" ]; do
    line_no=$((line_no + 1))
    if [ "$in_block" = 1 ]; then
      if [[ "$line" == '```'* ]]; then
        in_block=0
        echo "$kind ${doc#"$repo"/} $start" >>"$work/index"
        kind=""
      else
        printf '%s\n' "$line" >>"$work/blocks/$count.sh"
      fi
      continue
    fi
    if [[ "$line" =~ ^\<\!--\ docs-check:\ (run|syntax)\ --\>$ ]]; then
      kind="${BASH_REMATCH[1]}"
      continue
    fi
    if [ -n "$kind" ] && [[ "$line" == '```sh'* ]]; then
      count=$((count + 1))
      in_block=1
      start=$line_no
      : >"$work/blocks/$count.sh"
      continue
    fi
    kind=""  # a marker applies to the fence right below it only
  done <"$doc"
done

# Syntax blocks first: they need no cluster.
parsed=0 n=0
while read -r kind file start; do
  n=$((n + 1))
  [ "$kind" = syntax ] || continue
  if ! bash -n "$work/blocks/$n.sh" 2>"$work/err"; then
    echo "docs-check: $file:$start: the block does not parse as bash:"
    cat "$work/err"
    exit 1
  fi
  parsed=$((parsed + 1))
done <"$work/index"

# A local cluster, as the quickstart makes it.
state="$work/state"
"$bin/kiln-scheduler" --listen 'tcp://127.0.0.1:*' --state-dir "$state" >"$work/scheduler.log" 2>&1 &
scheduler_pid=$!
for _ in $(seq 100); do [ -s "$state/endpoint" ] && break; sleep 0.1; done
[ -s "$state/endpoint" ] || { echo "docs-check: the scheduler did not start"; cat "$work/scheduler.log"; exit 1; }
export KILN_SCHEDULER="$(cat "$state/endpoint")"
"$bin/kiln-scheduler" --state-dir "$state" user add docs-admin --admin --unix-user "$(id -un)" --allow-root \
  --credentials "$work/credentials.json" >/dev/null
export KILN_CREDENTIALS="$work/credentials.json"
"$bin/kiln-worker" --name docs-node --slots 2 --work-dir "$work/node" \
  --server-key "$state/server.pub" --key-file "$state/worker-cluster.key" >"$work/worker.log" 2>&1 &
worker_pid=$!
for _ in $(seq 100); do "$bin/kiln" nodes 2>/dev/null | grep -q " UP " && break; sleep 0.1; done

# One bash session per file, each block announced so a failure names it.
ran=0
for file in $(awk '$1 == "run" { print $2 }' "$work/index" | uniq); do
  script="$work/session.sh"
  printf 'set -euo pipefail\n' >"$script"
  n=0
  while read -r kind f start; do
    n=$((n + 1))
    [ "$kind" = run ] && [ "$f" = "$file" ] || continue
    printf 'echo "docs-check: running %s:%s" >&2\n' "$f" "$start" >>"$script"
    cat "$work/blocks/$n.sh" >>"$script"
    ran=$((ran + 1))
  done <"$work/index"
  mkdir -p "$work/home"
  if ! (cd "$repo" && env HOME="$work/home" STATE_DIR="$state" PATH="$bin:$PATH" \
        bash "$script" >"$work/out" 2>&1); then
    echo "docs-check: a block of $file failed (the last 'running' line names it):"
    tail -n 40 "$work/out"
    exit 1
  fi
done
echo "docs-check: $ran blocks run, $parsed parsed"
