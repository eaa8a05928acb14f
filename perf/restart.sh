#!/usr/bin/env bash
# Restart time of a member holding KEYS keys (issue 4: open + WAL replay of a
# member holding 1M keys ≤ 1 s). Loads the keys, waits for the checkpoint
# that covers them, writes EXTRA more puts (left in the WAL only), then
# restarts the member RUNS times and reports the time from exec to the first
# answered request, and what the member's log says it spent.
# Writes perf/results/<stamp>-restart.md.
#
# Usage: perf/restart.sh [KEYS] [VALUE_BYTES] [EXTRA] [RUNS]  (default 1000000 256 20000 3)
# Environment: COREKV_FLAGS (more corekv flags, e.g. --experimental-reads-from-disk).
set -euo pipefail
cd "$(dirname "$0")/.."
keys=${1:-1000000}; value_bytes=${2:-256}; extra=${3:-20000}; runs=${4:-3}
. perf/common.sh
perf_start restart
stamp=$stamp${COREKV_FLAGS:+-flags}
port=23797
endpoint=127.0.0.1:$port
ctl="target/release/corekvctl --endpoints $endpoint"
pid=
start() { # extra corekv flags...
  local t0; t0=$(date +%s%N)
  # shellcheck disable=SC2086
  target/release/corekv --data-dir $dir/data --listen-client-urls http://$endpoint \
    --listen-peer-urls http://127.0.0.1:23798 ${COREKV_FLAGS:-} "$@" 2>>$dir/corekv.log &
  pid=$!
  until $ctl endpoint status >/dev/null 2>&1; do sleep 0.005; done
  ready_ms=$(( ($(date +%s%N) - t0) / 1000000 ))
}
stop() { kill "$pid"; wait "$pid" 2>/dev/null || true; }
trap 'kill $pid 2>/dev/null || true' EXIT

start --snapshot-count 0 --snapshot-interval 1
echo "loading $keys keys of $value_bytes B..." >&2
target/release/loadgen put --prefill true --total 1 --keyspace "$keys" --val-size "$value_bytes" \
  --endpoints $endpoint >/dev/null 2>&1
index=$($ctl endpoint status -w json | python3 -c "import json,sys; print(json.load(sys.stdin)[0]['Status']['raftIndex'])")
echo "waiting for the checkpoint at index $index..." >&2
until grep -q "db (index $index," $dir/corekv.log; do sleep 0.5; done
stop
# The extra puts stay in the WAL: no checkpoint by count or time.
start --snapshot-count 0
target/release/loadgen put --clients 16 --total "$extra" --keyspace "$keys" --val-size "$value_bytes" \
  --endpoints $endpoint --prefill false >/dev/null 2>&1
stop
db_bytes=$(stat -c %s $dir/data/db)
rows=""
for run in $(seq 1 "$runs"); do
  # What the last instance left unwritten (it was preparing its next WAL
  # segment, 64 MiB of zeros, when stopped) is flushed first, so that its
  # writeback does not compete with this start's reads.
  [ -n "${RESTART_NO_SYNC:-}" ] || sync
  before=$(wc -l < $dir/corekv.log)
  start --snapshot-count 0
  # This run's lines of the log only.
  this_run() { tail -n +$((before + 1)) $dir/corekv.log; }
  # A member that serves while it loads the checkpoint says when it is done
  # (waited for up to 20 s).
  warm="—"
  if [[ $(this_run) == *"loading it into memory while serving"* ]]; then
    for _ in $(seq 1 400); do
      [[ $(this_run) == *"corekv: warm-up done: "* ]] && break
      sleep 0.05
    done
    warm=$(this_run | sed -n 's/.*warm-up done: .* in memory \([0-9]*\) ms after.*/\1/p')
    warm=${warm:-"not within 20 s"}
  fi
  stop
  loaded=$(this_run | sed -nE 's/.*corekv: (loaded|opened) checkpoint .* in ([0-9]*) ms.*/\2/p')
  recovered=$(this_run | sed -n 's/.*recovered up to .* in \([0-9]*\) ms/\1/p')
  rows+="| $run | $ready_ms | $loaded | $recovered | $warm |"$'\n'
done
machine=$(printf '%s, %s cores' "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)" "$(nproc)")
out=perf/results/$stamp-restart.md
cat > "$out" <<MD
# Restart of a member holding $keys keys ($stamp)

Machine: $machine. corekv flags: ${COREKV_FLAGS:-none}. Keys: $keys × $value_bytes B values, one checkpoint covering
them (DATA_DIR/db, $((db_bytes / 1048576)) MiB), then $extra puts left in the WAL.
Times in ms: exec → first answered request; the member's own log, from the
start of recovery, for loading the checkpoint (or opening it, when the
member serves from its pages while loading it: a short WAL tail; either way
after reading the WAL tail it holds decoded, at most live keys / 40 entries)
and for the whole recovery (checkpoint + WAL replay); then how long after
serving began it had the checkpoint in memory.
$([ -n "${RESTART_NO_SYNC:-}" ] && echo "Runs follow each other at once (RESTART_NO_SYNC)." || echo "Each run starts after \`sync\` (the previous instance's unwritten pages flushed).")

| run | ready (ms) | checkpoint loaded or opened (ms) | recovered (ms) | loaded into memory while serving (ms after recovery) |
|---:|---:|---:|---:|---:|
$rows
MD
cat "$out"
