#!/usr/bin/env bash
# corekv vs etcd, side by side in one run, on loopback with fresh data dirs.
# For each workload: run loadgen against corekv, then against etcd, sampling
# each server's CPU time from /proc. Writes one JSON line per run to
# perf/results/<stamp>.jsonl and a markdown table to perf/results/<stamp>.md.
#
# Usage: perf/run.sh [SECONDS_PER_RUN]   (default 10)
# Environment: COREKV_CORES (default: all), WORKLOADS (default: all below),
# COREKV_FLAGS (more corekv flags, e.g. --experimental-reads-from-disk),
# LOADGEN_FLAGS (more loadgen flags for every run, e.g. --pin false).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-10}
scripts/install-deps
cargo build --release --bins --examples -p corekv -p loadgen >&2

commit=$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src loadgen || echo "-dirty")
stamp=$(date -u +%Y%m%dT%H%M%SZ)-$commit${COREKV_FLAGS:+-flags}${LOADGEN_FLAGS:+-loadgen-flags}
out=perf/results/$stamp.jsonl
mkdir -p perf/results perf/tmp
rm -rf perf/tmp/corekv perf/tmp/etcd
machine=$(printf '%s, %s cores, %s GiB, kernel %s' \
  "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)" "$(nproc)" \
  "$(awk '/MemTotal/ {printf "%d", $2/1048576}' /proc/meminfo)" "$(uname -r)")
fsync=$(target/release/examples/fsync_latency perf/tmp 2000)
# The same probe pinned to loadgen's first CPU, where put1's one client runs
# (its disk completions may be raised on another CPU).
first_cpu=$(python3 -c 'import os; print(min(os.sched_getaffinity(0)))')
fsync_pinned=$(taskset -c "$first_cpu" target/release/examples/fsync_latency perf/tmp 2000)
fsync=$(python3 -c 'import json, sys
d = json.loads(sys.argv[1])
d.update(pinned_cpu=int(sys.argv[3]), pinned_p50_us=json.loads(sys.argv[2])["fdatasync_4k_p50_us"])
print(json.dumps(d))' "$fsync" "$fsync_pinned" "$first_cpu")

ck_port=23791; etcd_port=23792
# shellcheck disable=SC2086
target/release/corekv --data-dir perf/tmp/corekv ${COREKV_CORES:+--cores $COREKV_CORES} ${COREKV_FLAGS:-} \
  --listen-client-urls http://127.0.0.1:$ck_port --listen-peer-urls http://127.0.0.1:23793 \
  2>perf/tmp/corekv.log &
ck_pid=$!
etcd --data-dir perf/tmp/etcd --listen-client-urls http://127.0.0.1:$etcd_port \
  --advertise-client-urls http://127.0.0.1:$etcd_port --listen-peer-urls http://127.0.0.1:23794 \
  --initial-advertise-peer-urls http://127.0.0.1:23794 \
  --initial-cluster default=http://127.0.0.1:23794 2>perf/tmp/etcd.log &
etcd_pid=$!
trap 'kill $ck_pid $etcd_pid 2>/dev/null || true' EXIT
sleep 2

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
ticks_per_second=$(getconf CLK_TCK)

# name | loadgen arguments
workloads=${WORKLOADS:-"put1 put64 get64 sget64 range16 txn64"}
args_of() {
  case $1 in
    put1) echo "put --clients 1" ;;
    put64) echo "put --clients 64" ;;
    put256) echo "put --clients 256 --conns 64" ;;
    get64) echo "get --clients 64" ;;
    sget64) echo "get --clients 64 --serializable" ;;
    range16) echo "range --clients 16 --range-keys 100" ;;
    txn64) echo "txn --clients 64" ;;
    mixed64) echo "mixed --clients 64 --read-ratio 0.9" ;;
  esac
}
# Every key exists before any read workload (not measured).
target/release/loadgen put --prefill true --total 1 --endpoints 127.0.0.1:$ck_port >/dev/null 2>&1
target/release/loadgen put --prefill true --total 1 --target etcd --endpoints 127.0.0.1:$etcd_port >/dev/null 2>&1
for name in $workloads; do
  for target in corekv etcd; do
    if [ $target = corekv ]; then port=$ck_port; pid=$ck_pid; else port=$etcd_port; pid=$etcd_pid; fi
    before=$(cpu_ticks $pid)
    # shellcheck disable=SC2046,SC2086
    line=$(target/release/loadgen $(args_of $name) ${LOADGEN_FLAGS:-} --target $target --endpoints 127.0.0.1:$port \
      --duration ${seconds}s --prefill false 2>/dev/null)
    after=$(cpu_ticks $pid)
    python3 - "$line" "$name" "$before" "$after" "$ticks_per_second" "$commit" "$machine" "$fsync" >>"$out" <<'PY'
import json, sys
line, name, before, after, hz, commit, machine, fsync = sys.argv[1:]
r = json.loads(line)
cpu_us = (int(after) - int(before)) / int(hz) * 1e6
r.update(name=name, commit=commit, machine=machine, disk=json.loads(fsync),
         server_cpu_us_per_op=round(cpu_us / max(r["ops"], 1), 1))
print(json.dumps(r))
PY
    tail -n1 "$out" >&2
  done
done
python3 perf/report.py "$out" > "perf/results/$stamp.md"
if [ -n "${COREKV_FLAGS:-}${COREKV_CORES:-}${LOADGEN_FLAGS:-}" ]; then
  printf '\ncorekv flags: %s; loadgen flags: %s\n' \
    "${COREKV_CORES:+--cores $COREKV_CORES }${COREKV_FLAGS:-}" "${LOADGEN_FLAGS:-}" >>"perf/results/$stamp.md"
fi
cat "perf/results/$stamp.md"
