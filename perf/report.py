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
print(f"Machine: {first['machine']}. Disk: 4 KiB O_DIRECT write + fdatasync "
      f"p50 {first['disk']['fdatasync_4k_p50_us']} µs, p99 {first['disk']['p99_us']} µs. "
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
