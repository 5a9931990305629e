#!/usr/bin/env bash
# Build the wasm package and serve the page on http://127.0.0.1:8080 (Ctrl-C to stop).
set -euo pipefail
cd "$(dirname "$0")/.."
bash web/build.sh
cargo run --release -- serve --port "${PORT:-8080}"
