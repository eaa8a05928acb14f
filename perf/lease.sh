#!/usr/bin/env bash
# Leases, corekv vs etcd side by side on loopback with fresh data dirs:
# `loadgen lease` (each client grants a lease with a key, renews it in a
# closed loop, then revokes it and checks the key went), RUNS runs per
# target, alternating; server CPU per renewal sampled from /proc.
# Writes perf/results/<stamp>-lease.jsonl and a markdown table.
#
# Usage: perf/lease.sh [SECONDS] [CLIENTS] [RUNS]   (default 5 64 3)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-5}; clients=${2:-64}; runs=${3:-3}
. perf/side_by_side.sh
side_by_side lease 23961
hz=$(getconf CLK_TCK)
for run in $(seq 1 "$runs"); do
  for target in corekv etcd; do
    if [ $target = corekv ]; then port=$ck_port; pid=$ck_pid; else port=$etcd_port; pid=$etcd_pid; fi
    before=$(cpu_ticks $pid)
    line=$(target/release/loadgen lease --clients "$clients" --duration "${seconds}s" \
      --target $target --endpoints 127.0.0.1:$port)
    after=$(cpu_ticks $pid)
    python3 - "$line" "$before" "$after" "$hz" "$commit" "$run" >>"$out" <<'PY'
import json, sys
line, before, after, hz, commit, run = sys.argv[1:]
r = json.loads(line)
cpu_us = (int(after) - int(before)) / int(hz) * 1e6
r.update(commit=commit, run=int(run),
         server_cpu_us_per_renewal=round(cpu_us / max(r["renewals"], 1), 2))
print(json.dumps(r))
PY
  done
done
python3 - "$out" "$commit" >"${out%.jsonl}.md" <<'PY'
import json, sys
path, commit = sys.argv[1:]
rows = [json.loads(l) for l in open(path)]
print(f"# Leases, corekv vs etcd — commit {commit}\n")
print("`loadgen lease`: each client grants a lease (TTL 60 s) with a key, renews it in a closed")
print("loop (etcd: on its LeaseKeepAlive stream), then revokes it. Loopback, 2 cores shared.\n")
print("| run | target | clients | renewals/s | p50 / p99 / max µs | server CPU µs/renewal | wrong TTL | keys left |")
print("|---:|---|---:|---:|---:|---:|---:|---:|")
for r in rows:
    print(f"| {r['run']} | {r['target']} | {r['clients']} | {r['renewals_per_sec']:.0f} | "
          f"{r['p50_us']} / {r['p99_us']} / {r['max_us']} | {r['server_cpu_us_per_renewal']} | "
          f"{r['wrong_ttl']} | {r['keys_left_after_revoke']} |")
PY
cat "${out%.jsonl}.md"
