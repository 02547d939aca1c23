#!/usr/bin/env bash
# Builds the page's wasm module: the retroprop-web crate for wasm32 in
# release, then wasm-bindgen (the version pinned in web/Cargo.toml) writes
# web/www/pkg/. `web/build.sh serve` then serves the page on
# http://127.0.0.1:8000/ (PORT to change it).
set -euo pipefail
cd "$(dirname "$0")/.."
want=$(sed -n 's/^wasm-bindgen = "=\(.*\)"/\1/p' web/Cargo.toml)
have=$(wasm-bindgen --version 2>/dev/null | awk '{print $2}' || true)
if [ "$have" != "$want" ]; then
  echo "web/build.sh: needs wasm-bindgen-cli $want (found: ${have:-none}); install it with" >&2
  echo "  cargo install wasm-bindgen-cli --version $want" >&2
  exit 1
fi
if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
  echo "web/build.sh: needs the wasm32 target: rustup target add wasm32-unknown-unknown" >&2
  exit 1
fi
cargo build --release --target wasm32-unknown-unknown -p retroprop-web
wasm-bindgen --target web --no-typescript --out-dir web/www/pkg \
  target/wasm32-unknown-unknown/release/retroprop_web.wasm
echo "built web/www/pkg ($(du -h web/www/pkg/retroprop_web_bg.wasm | cut -f1) of wasm)"
if [ "${1:-}" = serve ]; then
  if [ ! -d web/node_modules/@tensorflow ]; then
    echo "(the benchmark page needs TensorFlow.js: cd web && npm install)"
  fi
  exec node web/serve.mjs "${PORT:-8000}"
fi
