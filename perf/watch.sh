#!/usr/bin/env bash
# Watches, corekv vs etcd side by side (issue 5's speed targets), on
# loopback with fresh data dirs:
#   prefix:   W watchers (default 1000) on one prefix over 64 connections, 1
#             writer at full speed: events delivered per second, delivery
#             latency, server CPU per event;
#   prefix-1conn: the same on one connection (Kubernetes' API server
#             multiplexes its watches on few connections);
#   prefix-depth16: the same as prefix, the writer keeping 16 puts in flight;
#   distinct: D watchers (default 10000), one key each, 1 writer: server memory
#             per watcher (RSS with the watchers open minus RSS before);
#   stalled:  100 watchers on the prefix plus 1 whose client never reads, 16
#             writers: the others' delivery latency and the server's peak RSS
#             (a slow client must cost neither).
# loadgen checks that no watcher missed or repeated an event.
# Writes perf/results/<stamp>-watch.jsonl and a markdown table.
#
# Usage: perf/watch.sh [SECONDS] [W] [D]   (default 5 1000 10000)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-5}; prefix_watchers=${2:-1000}; distinct_watchers=${3:-10000}
. perf/side_by_side.sh
side_by_side watch 23891
rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
hz=$(getconf CLK_TCK)
for scenario in prefix distinct-small distinct prefix-1conn prefix-depth16 stalled; do
  for target in corekv etcd; do
    if [ $target = corekv ]; then port=$ck_port; pid=$ck_pid; else port=$etcd_port; pid=$etcd_pid; fi
    if [ $scenario = prefix ]; then
      extra="--watchers $prefix_watchers"
    elif [ $scenario = prefix-1conn ]; then
      extra="--watchers $prefix_watchers --conns 1"
    elif [ $scenario = prefix-depth16 ]; then
      extra="--watchers $prefix_watchers --writer-depth 16"
    elif [ $scenario = distinct-small ]; then
      extra="--watchers $(( distinct_watchers / 10 )) --watch-distinct --keyspace $distinct_watchers"
    elif [ $scenario = distinct ]; then
      extra="--watchers $distinct_watchers --watch-distinct --keyspace $distinct_watchers"
    fi
    rss_before=$(rss_kib $pid); echo 0 > perf/tmp/watch-peak
    writers=1
    if [ $scenario = stalled ]; then
      extra="--watchers 100 --stalled 1 --conns 8"; writers=16
    fi
    # shellcheck disable=SC2086
    target/release/loadgen watch $extra --clients $writers --duration ${seconds}s --target $target \
      --settle 2 --endpoints 127.0.0.1:$port >perf/tmp/watch-line 2>perf/tmp/watch-err &
    loader=$!
    # The server's peak RSS over the run.
    ( peak=0; while kill -0 $loader 2>/dev/null; do
        r=$(rss_kib $pid); [ "$r" -gt "$peak" ] && peak=$r && echo $peak > perf/tmp/watch-peak
        sleep 0.2; done ) &
    sampler=$!
    # Memory with every watcher open, before any write (loadgen waits 2 s).
    until grep -q "watchers ready" perf/tmp/watch-err || ! kill -0 $loader 2>/dev/null; do
      sleep 0.05
    done
    sleep 1
    rss_during=$(rss_kib $pid)
    before=$(cpu_ticks $pid)
    wait $loader
    wait $sampler || true
    after=$(cpu_ticks $pid)
    python3 - "$(cat perf/tmp/watch-line)" "$scenario" "$before" "$after" "$hz" "$rss_before" \
      "$rss_during" "$commit" "$(cat perf/tmp/watch-peak)" >>"$out" <<'PY'
import json, sys
line, scenario, before, after, hz, rss_before, rss_during, commit, peak = sys.argv[1:]
r = json.loads(line)
cpu_us = (int(after) - int(before)) / int(hz) * 1e6
r.update(scenario=scenario, commit=commit,
         server_cpu_us_per_event=round(cpu_us / max(r["events"], 1), 2),
         rss_before_kib=int(rss_before), rss_during_kib=int(rss_during), rss_peak_kib=int(peak),
         bytes_per_watcher=round((int(rss_during) - int(rss_before)) * 1024 / r["watchers"]))
print(json.dumps(r))
PY
    tail -n1 "$out" >&2
  done
done
python3 - "$out" >"perf/results/$stamp.md" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print(f"# Watches, corekv vs etcd — commit {rows[0]['commit']}\n")
print("1 writer at full speed; loadgen on the same 2-core machine. bytes/watcher: server RSS with")
print("every watcher open (before any write) minus RSS before, over the watchers (connections included).")
print("CPU µs/event: server CPU during the writes (and the 2 s settle) over events delivered.\n")
print("| scenario | target | watchers | puts/s | events/s | p50 / p99 / max µs | CPU µs/event | bytes/watcher | peak RSS MiB | missing | dup |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for r in rows:
    print(f"| {r['scenario']} | {r['target']} | {r['watchers']} | {r['puts_per_sec']:.0f} | {r['events_per_sec']:.0f} | "
          f"{r['p50_us']} / {r['p99_us']} / {r['max_us']} | {r['server_cpu_us_per_event']} | {r['bytes_per_watcher']} | "
          f"{r['rss_peak_kib'] // 1024} | {r['missing']} | {r['duplicates']} |")
print()
for scenario in ("prefix", "prefix-1conn", "prefix-depth16"):
    pair = {r["target"]: r for r in rows if r["scenario"] == scenario}
    if len(pair) == 2:
        ratio = pair["corekv"]["events_per_sec"] / max(pair["etcd"]["events_per_sec"], 1)
        print(f"- {scenario}: corekv delivers {ratio:.2f}× etcd's events/s, p99 "
              f"{pair['corekv']['p99_us']} vs {pair['etcd']['p99_us']} µs")
for target in ("corekv", "etcd"):
    small = [r for r in rows if r["target"] == target and r["scenario"] == "distinct-small"][0]
    large = [r for r in rows if r["target"] == target and r["scenario"] == "distinct"][0]
    grown = (large["rss_during_kib"] - large["rss_before_kib"]) - (small["rss_during_kib"] - small["rss_before_kib"])
    print(f"- {target}: memory per additional watcher (same connections), {small['watchers']} → "
          f"{large['watchers']} watchers: {grown * 1024 / (large['watchers'] - small['watchers']):.0f} bytes")
PY
cat "perf/results/$stamp.md"
