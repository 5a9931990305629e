#!/usr/bin/env bash
# Build the browser package into pkg/: two wasm modules (SIMD128, and relaxed SIMD where the
# browser has it), their one ES-module glue, simd.js to choose between them, TypeScript
# types, package.json and a README, ready to import or to publish to npm. Prints the sizes.
set -euo pipefail
cd "$(dirname "$0")/.."
wb=$(awk '/^name = "wasm-bindgen"$/ {getline; gsub(/version = |"/, ""); print}' Cargo.lock)
if ! wasm-bindgen --version 2>/dev/null | grep -qF "$wb"; then
  echo "wasm-bindgen-cli $wb is needed: cargo install wasm-bindgen-cli --version $wb" >&2
  exit 1
fi
rustup target list --installed 2>/dev/null | grep -q wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown
cargo build --lib --profile wasm --target wasm32-unknown-unknown
# The optional second module: relaxed SIMD (fused multiply-adds in our kernels). Its own target
# folder keeps the two builds from evicting each other's artifacts.
CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUSTFLAGS="-C target-feature=+simd128,+relaxed-simd" \
  cargo build --lib --profile wasm --target wasm32-unknown-unknown --features relaxed-simd \
  --target-dir target/relaxed
rm -rf pkg target/relaxed/pkg
wasm-bindgen --target web --out-dir pkg --out-name ddim_webgpu target/wasm32-unknown-unknown/wasm/ddim_webgpu.wasm
wasm-bindgen --target web --out-dir target/relaxed/pkg --out-name ddim_webgpu \
  target/relaxed/wasm32-unknown-unknown/wasm/ddim_webgpu.wasm
# web/simd.js loads either module through the one glue, which holds only if the two agree.
if ! cmp -s pkg/ddim_webgpu.js target/relaxed/pkg/ddim_webgpu.js; then
  echo "wasm-bindgen wrote different glue for the relaxed-SIMD module" >&2
  exit 1
fi
cp target/relaxed/pkg/ddim_webgpu_bg.wasm pkg/ddim_webgpu_relaxed_bg.wasm
cp web/simd.js web/simd.d.ts pkg/
wasm=pkg/ddim_webgpu_bg.wasm
relaxed=pkg/ddim_webgpu_relaxed_bg.wasm
# Debian's binaryen corrupts reference-types modules; only npm's wasm-opt is trusted here.
opt=${WASM_OPT:-node_modules/.bin/wasm-opt}
if [ -x "$opt" ]; then
  flags=(-O3 --enable-bulk-memory --enable-nontrapping-float-to-int --enable-reference-types
    --enable-sign-ext --enable-mutable-globals --enable-simd)
  "$opt" "${flags[@]}" "$wasm" -o "$wasm.opt"
  "$opt" "${flags[@]}" --enable-relaxed-simd "$relaxed" -o "$relaxed.opt"
  mv "$wasm.opt" "$wasm"
  mv "$relaxed.opt" "$relaxed"
  echo "optimised with $opt"
fi
# The CPU fallback must run SIMD128 (see .cargo/config.toml and gemm's wasm-simd128-enable),
# the default module must hold no relaxed instruction (Safari rejects the whole module), and
# the optional one must fuse: counted when npm's binaryen is there to disassemble them.
dis=${WASM_DIS:-node_modules/.bin/wasm-dis}
if [ -x "$dis" ]; then
  text=$(mktemp)
  "$dis" "$wasm" > "$text"
  simd=$(grep -c 'f32x4\.' "$text" || true)
  loose=$(grep -cE '[a-z0-9]+x[0-9]+\.relaxed_' "$text" || true)
  rm -f "$text"
  fused=$("$dis" --enable-relaxed-simd "$relaxed" | grep -c 'f32x4\.relaxed_madd' || true)
  echo "SIMD128: $simd f32x4 instructions; relaxed: $loose in the default module, $fused f32x4.relaxed_madd in the optional one"
  [ "$simd" -gt 0 ] || { echo "the wasm module has no SIMD128 instructions" >&2; exit 1; }
  [ "$loose" -eq 0 ] || { echo "the default wasm module holds relaxed-SIMD instructions" >&2; exit 1; }
  [ "$fused" -gt 0 ] || { echo "the relaxed-SIMD module has no f32x4.relaxed_madd" >&2; exit 1; }
fi
version=$(awk -F'"' '/^version = / {print $2; exit}' Cargo.toml)
cat > pkg/package.json <<JSON
{
  "name": "ddim-webgpu",
  "version": "$version",
  "description": "DDIM sampling for the DDPM UNet in the browser: WebGPU compute shaders, with a wasm CPU fallback",
  "license": "MIT OR Apache-2.0",
  "type": "module",
  "main": "ddim_webgpu.js",
  "module": "ddim_webgpu.js",
  "types": "ddim_webgpu.d.ts",
  "files": ["ddim_webgpu.js", "ddim_webgpu_bg.wasm", "ddim_webgpu_relaxed_bg.wasm", "simd.js", "simd.d.ts", "ddim_webgpu.d.ts", "ddim_webgpu_bg.wasm.d.ts", "README.md"],
  "sideEffects": false
}
JSON
cat > pkg/README.md <<'MD'
# ddim-webgpu (browser package)

DDIM sampling for the DDPM UNet (ermongroup/ddim, diffusers UNet2DModel) on WebGPU, with a
wasm CPU fallback. No server-side compute.

```js
import init, { Ddim } from "ddim-webgpu";
import { wasmUrl } from "ddim-webgpu/simd.js";
// Relaxed SIMD (faster on the CPU) where the browser validates it, else plain SIMD128.
await init({ module_or_path: wasmUrl() });
const ddim = await Ddim.load("model.safetensors", configYamlOrJsonText, { backend: "auto" });
const { images, raw, msPerStep } = await ddim.sample({ steps: 20, seed: 0, n: 4 });
ctx.putImageData(images[0], 0, 0);
ddim.free();
```

`sample` options: `steps`, `eta`, `skip` (uniform, quad, leading, trailing, linspace), `seed`,
`n`, `clip`, `sampler` (ddim, ddpm), `onStep(step, total, previews?)`, `previewEvery`, `signal`
(an AbortSignal). `interpolate({ seedA, seedB, frames, steps, ... })` decodes a slerp between
two seeds. `info()` returns `{ adapter, backend, params, resolution, channels, gpuBytes, simd,
relaxedSimd }`. Errors are
JavaScript `Error`s with a message. WebGPU works on the main thread or in a dedicated worker.
MD
for m in "$wasm" "$relaxed"; do
  echo "pkg/: $(basename "$m") $(stat -c %s "$m") bytes raw, $(gzip -9 -c "$m" | wc -c) bytes gzip -9"
done
