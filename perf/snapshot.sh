#!/usr/bin/env bash
# Snapshots on a large store (issue 4): put latency while `snapshot save`
# runs vs without it, and restart time (WAL replay only, and snapshot + WAL).
# Writes perf/results/<stamp>-snapshot.md.
#
# Usage: perf/snapshot.sh [KEYS] [VALUE_BYTES]   (default 1000000 1024: ~1 GiB)
# Environment: SAVE_DIR, where `snapshot save` writes (default: beside the
# data dir, on the same disk as the WAL); CLIENT_IDLE=1 runs the saving
# corekvctl at SCHED_IDLE (it verifies the whole file after receiving it: on
# these 2 shared cores that CPU would otherwise be charged to the server's p99;
# a real client runs on another machine).
set -euo pipefail
cd "$(dirname "$0")/.."
keys=${1:-1000000}
value_bytes=${2:-1024}
. perf/common.sh
perf_start snapshot
port=23795
endpoint=127.0.0.1:$port
ctl="target/release/corekvctl --endpoints $endpoint"
pid=
start() {
  local t0; t0=$(date +%s%N)
  target/release/corekv --data-dir $dir/data --snapshot-count 0 \
    --listen-client-urls http://$endpoint --listen-peer-urls http://127.0.0.1:23796 \
    2>>$dir/corekv.log &
  pid=$!
  until $ctl endpoint status >/dev/null 2>&1; do sleep 0.005; done
  ready_ms=$(( ($(date +%s%N) - t0) / 1000000 ))
}
stop() { kill "$pid"; wait "$pid" 2>/dev/null || true; }
trap 'kill $pid 2>/dev/null || true' EXIT
field() { python3 -c "import json,sys; print(json.loads(sys.stdin.read())['$1'])"; }
put() { # seconds name → loadgen JSON (per-second progress in $dir/put-name.progress)
  target/release/loadgen put --clients 16 --duration "$1" --keyspace "$keys" --val-size 256 \
    --endpoints $endpoint 2>"$dir/put-$2.progress"
}

start
echo "loading $keys keys of $value_bytes B..." >&2
target/release/loadgen put --prefill true --total 1 --keyspace "$keys" --val-size "$value_bytes" \
  --endpoints $endpoint >/dev/null 2>&1
in_use=$($ctl endpoint status -w json | python3 -c "import json,sys; print(json.load(sys.stdin)[0]['Status']['dbSizeInUse'])")
rss_kib=$(awk '/VmRSS/ {print $2}' /proc/$pid/status)

# A first snapshot, idle: how long one takes.
t0=$(date +%s%N)
save_dir=${SAVE_DIR:-$dir}
$ctl snapshot save $save_dir/idle.snap >/dev/null
idle_ms=$(( ($(date +%s%N) - t0) / 1000000 ))
snap_bytes=$(stat -c %s $save_dir/idle.snap)
seconds=$(( idle_ms / 1000 + 3 ))

base=$(put $seconds base)
t0=$(date +%s%N)
saver_prefix=
[ "${CLIENT_IDLE:-0}" = 1 ] && saver_prefix="chrt -i 0"
( $saver_prefix $ctl snapshot save $save_dir/busy.snap >/dev/null; echo $(( ($(date +%s%N) - t0) / 1000000 )) > $dir/busy_ms ) &
saver=$!
during=$(put $seconds during)
wait $saver
busy_ms=$(cat $dir/busy_ms)
after=$(put $seconds after)

# Restart: the whole WAL replayed, then from a snapshot + the WAL after it.
stop; start; replay_ms=$ready_ms
replay_log=$(grep "recovered up to" $dir/corekv.log | tail -1)
stop
mkdir -p $dir/data/snapshots
# Put the saved snapshot under its member-side name (index-revision).
python3 - "$dir" "$save_dir/busy.snap" <<'PY'
import struct, sys, shutil
d = sys.argv[1]
h = open(sys.argv[2], "rb").read(128)
revision, = struct.unpack_from("<q", h, 16); index, = struct.unpack_from("<Q", h, 32)
shutil.copy(sys.argv[2], f"{d}/data/snapshots/{index:016x}-{revision:016x}.snap")
PY
start; snapshot_ms=$ready_ms
snapshot_log=$(grep "recovered up to" $dir/corekv.log | tail -1)
stop

machine=$(printf '%s, %s cores, %s GiB, kernel %s' \
  "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)" "$(nproc)" \
  "$(awk '/MemTotal/ {printf "%d", $2/1048576}' /proc/meminfo)" "$(uname -r)")
out=perf/results/$stamp-snapshot.md
{
  echo "# Snapshots on a large store — commit $commit"
  echo
  echo "Machine: $machine. $keys keys × $value_bytes B values loaded once (MVCC bytes in use: $in_use; server RSS $((rss_kib / 1024)) MiB)."
  echo "Put load: loadgen put, 16 clients, 256 B values over the same keys, ${seconds} s per run."
  echo
  echo "| run | put ops/s | p50 µs | p99 µs | max µs |"
  echo "|---|---:|---:|---:|---:|"
  for name in base during after; do
    json=${!name}
    echo "| $name | $(echo "$json" | field ops_per_sec) | $(echo "$json" | field p50_us) | $(echo "$json" | field p99_us) | $(echo "$json" | field max_us) |"
  done
  echo
  echo "Saved to: $save_dir; saving client at SCHED_IDLE: ${CLIENT_IDLE:-0}."
  echo "Snapshot: $snap_bytes bytes; save took $idle_ms ms idle, $busy_ms ms under the put load."
  echo "p99 during / without: $(python3 -c "print(round($(echo "$during" | field p99_us) / $(echo "$base" | field p99_us), 2))")×."
  echo
  echo "Restart (process start → first answer): WAL replay only $replay_ms ms; snapshot + WAL after it $snapshot_ms ms."
  echo
  echo '```'
  echo "$replay_log"
  echo "$snapshot_log"
  echo '```'
} > "$out"
cat "$out"
