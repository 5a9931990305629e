/** Whether this browser accepts WebAssembly relaxed SIMD. */
export function relaxedSimd(): boolean;
/**
 * The URL of the wasm module to pass to `init({ module_or_path })`: "auto" (relaxed SIMD
 * where the browser has it), "relaxed" or "simd128". Throws on any other choice.
 */
export function wasmUrl(choice?: "auto" | "relaxed" | "simd128"): URL;
