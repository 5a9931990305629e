// The model runs here, in a dedicated worker (where WebGPU is available), so the page stays
// responsive. Messages in: load, sample, interpolate, cancel. Messages out: loaded, progress,
// result, error.
import init, { Ddim } from "../pkg/ddim_webgpu.js";
import { wasmUrl } from "../pkg/simd.js";

// The page passes its ?simd= choice (auto, relaxed, simd128) on to its workers. A bad one
// rejects `ready`, so the first message is answered with that error instead of hanging.
const ready = Promise.resolve().then(() =>
  init({ module_or_path: wasmUrl(new URLSearchParams(location.search).get("simd") ?? "auto") }));
let ddim = null;
let ctrl = null;

async function handle(m) {
  await ready;
  if (m.type === "load") {
    // Stop a running job first; loads are serialized by the queue below.
    ctrl?.abort();
    if (ddim) { ddim.free(); ddim = null; }
    ddim = await Ddim.load(m.weights, m.config ?? undefined, { backend: m.backend });
    postMessage({ type: "loaded", info: ddim.info() });
  } else if (m.type === "sample" || m.type === "interpolate") {
    const d = ddim;
    if (!d) throw new Error("no model loaded");
    ctrl = new AbortController();
    const opts = {
      ...m.options,
      signal: ctrl.signal,
      onStep: (step, total, preview) => postMessage({ type: "progress", step, total, preview }),
    };
    const r = m.type === "sample" ? await d.sample(opts) : await d.interpolate(opts);
    postMessage({ type: "result", kind: m.type, images: r.images, raw: r.raw, msPerStep: r.msPerStep, info: d.info() });
  } else if (m.type === "cancel") {
    ctrl?.abort();
  }
}

// Cancel must act at once; everything else runs in order, so a load never overlaps a job.
let queue = Promise.resolve();
onmessage = (e) => {
  const run = () => handle(e.data).catch((err) =>
    postMessage({ type: "error", during: e.data.type, message: String(err?.message ?? err) }));
  if (e.data.type === "cancel") run();
  else queue = queue.then(run);
};
