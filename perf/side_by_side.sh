# Sourced by perf scripts that run corekv and etcd side by side on loopback
# with fresh data dirs (perf/lease.sh, perf/watch.sh).
#
# side_by_side NAME PORT: installs what the run needs, builds corekv and
# loadgen, and starts both servers in perf/tmp/NAME-corekv and
# perf/tmp/NAME-etcd (logs beside them). corekv serves clients on PORT, etcd
# on PORT+1; peers use PORT+2 and PORT+3. Sets commit, stamp (…-NAME), out
# (perf/results/<stamp>.jsonl), ck_port, etcd_port, ck_pid and etcd_pid;
# both servers are stopped on exit. cpu_ticks PID: user + system ticks.
side_by_side() {
  local name=$1 port=$2
  scripts/install-deps
  cargo build --release --bins -p corekv -p loadgen >&2
  commit=$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src loadgen || echo "-dirty")
  stamp=$(date -u +%Y%m%dT%H%M%SZ)-$commit-$name
  out=perf/results/$stamp.jsonl
  mkdir -p perf/results perf/tmp
  rm -rf "perf/tmp/$name-corekv" "perf/tmp/$name-etcd"
  ck_port=$port; etcd_port=$((port + 1))
  local ck_peer=$((port + 2)) etcd_peer=$((port + 3))
  target/release/corekv --data-dir "perf/tmp/$name-corekv" \
    --listen-client-urls "http://127.0.0.1:$ck_port" --listen-peer-urls "http://127.0.0.1:$ck_peer" \
    2>"perf/tmp/$name-corekv.log" &
  ck_pid=$!
  etcd --data-dir "perf/tmp/$name-etcd" --listen-client-urls "http://127.0.0.1:$etcd_port" \
    --advertise-client-urls "http://127.0.0.1:$etcd_port" --listen-peer-urls "http://127.0.0.1:$etcd_peer" \
    --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer" \
    --initial-cluster "default=http://127.0.0.1:$etcd_peer" 2>"perf/tmp/$name-etcd.log" &
  etcd_pid=$!
  trap 'kill $ck_pid $etcd_pid 2>/dev/null || true' EXIT
  sleep 2
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
