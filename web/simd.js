// Which of the package's two wasm modules a browser should run. Both share one JavaScript
// glue (ddim_webgpu.js): the relaxed-SIMD module fuses the CPU kernels' multiply-adds where
// the CPU has FMA, and Safari rejects it outright, so it is taken only where the browser
// validates a relaxed instruction. Usage: `await init({ module_or_path: wasmUrl() })`.

// A module with one function (v128, v128, v128) -> v128 whose body is f32x4.relaxed_madd.
const RELAXED_PROBE = new Uint8Array([
  0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
  0x01, 0x08, 0x01, 0x60, 0x03, 0x7b, 0x7b, 0x7b, 0x01, 0x7b,
  0x03, 0x02, 0x01, 0x00,
  0x0a, 0x0d, 0x01, 0x0b, 0x00, 0x20, 0x00, 0x20, 0x01, 0x20, 0x02, 0xfd, 0x85, 0x02, 0x0b,
]);

/** Whether this browser accepts WebAssembly relaxed SIMD. */
export function relaxedSimd() {
  try {
    return WebAssembly.validate(RELAXED_PROBE);
  } catch {
    return false;
  }
}

/**
 * The URL of the module to pass to `init`. `choice`: "auto" (relaxed SIMD where the browser
 * has it), "relaxed" or "simd128"; anything else is an error, not a silent default.
 */
export function wasmUrl(choice = "auto") {
  if (!["auto", "relaxed", "simd128"].includes(choice)) {
    throw new Error(`unknown wasm build "${choice}": use auto, relaxed or simd128`);
  }
  const relaxed = choice === "relaxed" || (choice === "auto" && relaxedSimd());
  // Literal names: bundlers (webpack 5, Vite) emit an asset only for new URL("literal", ...).
  return relaxed
    ? new URL("ddim_webgpu_relaxed_bg.wasm", import.meta.url)
    : new URL("ddim_webgpu_bg.wasm", import.meta.url);
}
