# Sourced by the perf scripts (after `cd` to the repository root).
#
# perf_start NAME: builds the release binaries and sets
#   commit  the short hash, "-dirty" if src/ or loadgen/ differ from it
#   stamp   UTC time and commit, for the result file names
#   dir     perf/tmp/NAME, emptied (perf/results is created too)
perf_start() {
  cargo build --release --bins -p corekv -p loadgen >&2
  commit=$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src loadgen || echo "-dirty")
  stamp=$(date -u +%Y%m%dT%H%M%SZ)-$commit
  dir=perf/tmp/$1
  rm -rf "$dir" && mkdir -p "$dir" perf/results
}
