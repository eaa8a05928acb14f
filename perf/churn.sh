#!/usr/bin/env bash
# Churn through a real member (issue 4: 10 rounds of writing 1M keys,
# deleting them and compacting; the page file stays ≤ 1.5× the live data).
# Each round writes every key of the keyspace once (loadgen's prefill, 32 B
# keys, VALUE_BYTES values, 64 clients), deletes them all in one request
# (`del "" --from-key`), compacts at the revision after it, and waits for the
# checkpoint that folds that in. DATA_DIR/db's size is sampled every 100 ms;
# the largest is set against the live data at the peak (KEYS × (32 +
# VALUE_BYTES)). The member runs with default flags except a 5 s
# --snapshot-interval, so that the round's last changes reach the page file.
# examples/paged_churn.rs measures the same on the page store alone, with
# random keys and one delete per revision.
# Writes perf/results/<stamp>-churn.md.
#
# Usage: perf/churn.sh [KEYS] [ROUNDS] [VALUE_BYTES]  (default 1000000 10 256)
set -euo pipefail
cd "$(dirname "$0")/.."
keys=${1:-1000000}; rounds=${2:-10}; value_bytes=${3:-256}
. perf/common.sh
perf_start churn
port=23793
endpoint=127.0.0.1:$port
ctl="target/release/corekvctl --endpoints $endpoint --command-timeout 60s"
target/release/corekv --data-dir $dir/data --listen-client-urls http://$endpoint \
  --listen-peer-urls http://127.0.0.1:23794 --snapshot-interval 5 2>>$dir/corekv.log &
pid=$!
sampler=
trap 'kill $pid $sampler 2>/dev/null || true' EXIT
until $ctl endpoint status >/dev/null 2>&1; do sleep 0.01; done
(while kill -0 $pid 2>/dev/null; do stat -c %s $dir/data/db 2>/dev/null || true; sleep 0.1; done) \
  > $dir/sizes &
sampler=$!
status() { # field of endpoint status
  $ctl endpoint status -w json |
    python3 -c "import json,sys; print(json.load(sys.stdin)[0]['Status']$1)"
}
largest() { sort -n $dir/sizes | tail -1; }
live_bytes=$((keys * (32 + value_bytes)))
rows=""
for round in $(seq 1 "$rounds"); do
  t0=$(date +%s)
  target/release/loadgen put --prefill true --total 1 --keyspace "$keys" --val-size "$value_bytes" \
    --endpoints $endpoint >/dev/null 2>&1
  deleted=$($ctl del "" --from-key)
  revision=$(status "['header']['revision']")
  $ctl compaction "$revision" >/dev/null
  index=$(status "['raftIndex']")
  # The checkpoint that folds the deletes and the compaction in.
  until sed -n 's/.*db (index \([0-9]*\),.*/\1/p' $dir/corekv.log | awk -v i="$index" '$1 >= i {f=1} END {exit !f}'; do
    sleep 0.2
  done
  sleep 0.3
  peak=$(largest)
  rows+="| $round | $deleted | $((peak >> 20)) MiB | $(python3 -c "print(f'{$peak / $live_bytes:.3f}')") | $(( $(date +%s) - t0 )) |"$'\n'
  echo "round $round: deleted $deleted, largest db so far $((peak >> 20)) MiB" >&2
done
kill $pid; wait $pid 2>/dev/null || true
peak=$(largest)
machine=$(printf '%s, %s cores' "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)" "$(nproc)")
out=perf/results/$stamp-churn.md
cat > "$out" <<MD
# Churn through a member: $rounds rounds of $keys keys ($stamp)

Machine: $machine. perf/churn.sh $keys $rounds $value_bytes: each round
writes every key once (loadgen prefill, 32 B keys, $value_bytes B values),
deletes them all in one request and compacts; the member runs with default
flags and \`--snapshot-interval 5\`. Live data at the peak: $keys × $((32 + value_bytes)) B
= $((live_bytes >> 20)) MiB.

| round | keys deleted | largest DATA_DIR/db so far | × live | seconds |
|---:|---:|---:|---:|---:|
$rows
Largest page file over the run: $((peak >> 20)) MiB = $(python3 -c "print(f'{$peak / $live_bytes:.3f}')")× the live data.
Checkpoints: $(grep -c "checkpoint .*db (index" $dir/corekv.log).
MD
cat "$out"
rm -rf $dir
