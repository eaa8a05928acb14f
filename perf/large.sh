#!/usr/bin/env bash
# A data set much larger than the page cache (issue 4's "large" benchmark,
# scaled by KEYS): with --experimental-reads-from-disk and --cache-size CACHE,
# load KEYS keys of VALUE_BYTES (loadgen --prefill, 64 clients) and report
# put (updates of loaded keys) and serializable get throughput over 10 s
# after 10% and after 100% of the keys are loaded, the load's own rate, the
# server's RSS, the db size and the write stalls (checkpoints falling
# behind). Writes perf/results/<stamp>-large.md.
#
# Usage: perf/large.sh [KEYS] [VALUE_BYTES] [CACHE]   (default 2000000 1024 256M)
# Environment: COREKV_FLAGS (more corekv flags, e.g. --snapshot-count 400000).
set -euo pipefail
cd "$(dirname "$0")/.."
keys=${1:-2000000}; value_bytes=${2:-1024}; cache=${3:-256M}
. perf/common.sh
perf_start large
stamp=$stamp${COREKV_FLAGS:+-flags}
port=23799
endpoint=127.0.0.1:$port
target/release/corekv --data-dir $dir/data --listen-client-urls http://$endpoint \
  --listen-peer-urls http://127.0.0.1:23800 --experimental-reads-from-disk --cache-size "$cache" \
  --snapshot-retain 1 ${COREKV_FLAGS:-} 2>$dir/corekv.log &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
until target/release/corekvctl --endpoints $endpoint endpoint status >/dev/null 2>&1; do sleep 0.05; done
field() { python3 -c "import json,sys; print(json.loads(sys.stdin.read())['$1'])"; }
gets() { # keyspace → ops/s
  target/release/loadgen get --serializable --clients 64 --duration 10s --keyspace "$1" \
    --endpoints $endpoint --prefill false 2>/dev/null | field ops_per_sec
}
puts() { # keyspace → ops/s
  target/release/loadgen put --clients 64 --duration 10s --keyspace "$1" --val-size "$value_bytes" \
    --endpoints $endpoint --prefill false 2>/dev/null | field ops_per_sec
}
tenth=$((keys / 10))
echo "loading $tenth keys..." >&2
t0=$(date +%s)
target/release/loadgen put --prefill true --total 1 --keyspace $tenth --val-size "$value_bytes" \
  --endpoints $endpoint >/dev/null 2>&1
first_s=$(( $(date +%s) - t0 ))
put_start=$(puts $tenth)
get_start=$(gets $tenth)
echo "loading $keys keys..." >&2
t0=$(date +%s)
target/release/loadgen put --prefill true --total 1 --keyspace "$keys" --val-size "$value_bytes" \
  --endpoints $endpoint >/dev/null 2>&1
load_s=$(( $(date +%s) - t0 ))
put_end=$(puts "$keys")
get_end=$(gets "$keys")
rss_mib=$(( $(awk '/VmRSS/ {print $2}' /proc/$pid/status) / 1024 ))
db_mib=$(( $(stat -c %s $dir/data/db) / 1048576 ))
checkpoints=$(grep -c "corekv: checkpoint " $dir/corekv.log || true)
stalls=$(grep -c "write stall" $dir/corekv.log || true)
machine=$(printf '%s, %s cores, %s GiB' "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)" "$(nproc)" "$(awk '/MemTotal/ {printf "%d", $2/1048576}' /proc/meminfo)")
out=perf/results/$stamp-large.md
cat > "$out" <<MD
# A data set larger than the page cache ($stamp)

Machine: $machine. corekv with --experimental-reads-from-disk --cache-size $cache ${COREKV_FLAGS:-}.
Keys: $keys × $value_bytes B values ($(( keys * value_bytes / 1048576 )) MiB of values), loaded by
\`loadgen put --prefill\` (64 clients): the first 10% in $first_s s, all of them (the first 10% again)
in $load_s s ($(( keys / (load_s > 0 ? load_s : 1) )) puts/s); $checkpoints checkpoints.

| 64 clients, 10 s | after 10% loaded | after 100% loaded |
|---|---:|---:|
| put ops/s (updates of loaded keys) | $put_start | $put_end |
| serializable get ops/s | $get_start | $get_end |

Server RSS at the end: $rss_mib MiB; DATA_DIR/db: $db_mib MiB; write stalls: $stalls.
MD
cat "$out"
