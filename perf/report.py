#!/usr/bin/env python3
"""Markdown table of one perf/run.sh result file: corekv vs etcd per workload."""
import json
import sys

rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
by = {}
for r in rows:
    by.setdefault(r["name"], {})[r["target"]] = r
first = rows[0]
print(f"# corekv vs etcd — commit {first['commit']}\n")
disk = first["disk"]
pinned = (f" (pinned to CPU {disk['pinned_cpu']}, where put1's client runs: p50 "
          f"{disk['pinned_p50_us']} µs)" if "pinned_p50_us" in disk else "")
print(f"Machine: {first['machine']}. Disk: 4 KiB O_DIRECT write + fdatasync "
      f"p50 {disk['fdatasync_4k_p50_us']} µs, p99 {disk['p99_us']} µs{pinned}. "
      f"Single member each, loopback, fsync on, loadgen on the same machine, "
      f"{first['key_size']} B keys, {first['val_size']} B values, {first['seconds']:.0f} s per run.\n")
print("| workload | corekv ops/s | etcd ops/s | ratio | corekv p50 / p99 µs | etcd p50 / p99 µs "
      "| corekv CPU µs/op | etcd CPU µs/op | CPU ratio |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
for name, t in by.items():
    c, e = t.get("corekv"), t.get("etcd")
    if not c or not e:
        continue
    ratio = c["ops_per_sec"] / max(e["ops_per_sec"], 1)
    cpu_ratio = c["server_cpu_us_per_op"] / max(e["server_cpu_us_per_op"], 0.1)
    print(f"| {name} | {c['ops_per_sec']:.0f} | {e['ops_per_sec']:.0f} | {ratio:.2f}× "
          f"| {c['p50_us']} / {c['p99_us']} | {e['p50_us']} / {e['p99_us']} "
          f"| {c['server_cpu_us_per_op']} | {e['server_cpu_us_per_op']} | {cpu_ratio:.2f} |")

put1 = by.get("put1", {}).get("corekv")
if put1:
    over = put1["p50_us"] - disk["fdatasync_4k_p50_us"]
    line = f"\nput1 p50 minus the disk's fdatasync p50: {over:+d} µs (issue 2's target: at most +150)"
    if "pinned_p50_us" in disk:
        line += f"; minus the pinned probe's: {put1['p50_us'] - disk['pinned_p50_us']:+d} µs"
    print(line + ".")
