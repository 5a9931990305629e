// The page: loads a model (cached with the Cache API), drives the workers, draws results.
import { WorkerPool } from "./pool.js";
// Test hooks: inputs #steps #eta #seed #n #skip, buttons #generate #cancel, result canvases in
// #results, document.body.dataset.state (loading, ready, running, done, error), #status.

// The shipped model. The ?v= query (the export's training step, checked by tests/shipped.rs)
// changes with the weights, so a cached copy of older weights is never reused.
const DEFAULT = {
  weights: "models/emoji32.safetensors?v=20938",
  config: "models/emoji32.yml",
  name: "emoji32 (trained on Noto Emoji, © Google, Apache-2.0)",
};
const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
// One worker on the GPU; on the CPU backend a pool that splits each batch across the cores.
// ?simd=relaxed|simd128 picks the wasm build (default: relaxed SIMD where the browser has it).
const workerUrl = new URL("./worker.js", import.meta.url);
if (params.has("simd")) workerUrl.searchParams.set("simd", params.get("simd"));
const worker = new WorkerPool(workerUrl);
let lastImages = [];
let t0 = 0;

function state(s, msg) {
  document.body.dataset.state = s;
  if (msg !== undefined) $("status").textContent = msg;
  const busy = s === "running" || s === "loading";
  $("generate").disabled = busy || !lastLoaded;
  for (const id of ["backend", "model-file", "config-file"]) $(id).disabled = busy;
  $("interpolate").disabled = $("generate").disabled;
  $("cancel").disabled = s !== "running";
}
let lastLoaded = false;

function draw(container, images) {
  container.replaceChildren(...images.map((img) => {
    const c = document.createElement("canvas");
    c.width = img.width;
    c.height = img.height;
    c.getContext("2d").putImageData(img, 0, 0);
    return c;
  }));
}

// Fetch with a progress bar, through the Cache API so a second visit needs no download.
async function fetchCached(url, bar) {
  const cache = "caches" in self ? await caches.open("ddim-models-v1") : null;
  const hit = cache && (await cache.match(url));
  if (hit) {
    bar.value = 1;
    return new Uint8Array(await hit.arrayBuffer());
  }
  const resp = await fetch(url);
  if (!resp.ok) throw new Error(`${url}: HTTP ${resp.status}`);
  const total = Number(resp.headers.get("content-length")) || 0;
  const reader = resp.body.getReader();
  const chunks = [];
  let got = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    got += value.length;
    if (total) bar.value = got / total;
  }
  const bytes = new Uint8Array(got);
  let off = 0;
  for (const c of chunks) { bytes.set(c, off); off += c.length; }
  if (cache) await cache.put(url, new Response(bytes.slice()));
  bar.value = 1;
  return bytes;
}

async function loadModel(weights, config, name) {
  lastLoaded = false;
  state("loading", `loading ${name}…`);
  $("model-name").textContent = `model: ${name}`;
  worker.postMessage({ type: "load", weights, config, backend: $("backend").value });
}

async function loadDefault() {
  const weightsUrl = params.get("model") ?? DEFAULT.weights;
  // ?model= without ?config= uses the config in the file's own metadata.
  const configUrl = params.get("config") ?? (params.get("model") ? null : DEFAULT.config);
  try {
    const [weights, config] = await Promise.all([
      fetchCached(weightsUrl, $("download")),
      configUrl === null ? undefined
        : fetch(configUrl).then((r) => (r.ok ? r.text() : Promise.reject(new Error(`${configUrl}: HTTP ${r.status}`)))),
    ]);
    await loadModel(weights, config, params.get("model") ? weightsUrl : DEFAULT.name);
  } catch (e) {
    state("error", String(e.message ?? e));
  }
}

async function loadFiles(files) {
  const w = [...files].find((f) => /\.(safetensors|pth|pt|ckpt)$/.test(f.name));
  const c = [...files].find((f) => /\.(ya?ml|json)$/.test(f.name)) ?? $("config-file").files[0];
  if (!w) return;
  const weights = new Uint8Array(await w.arrayBuffer());
  const config = c ? await c.text() : undefined;
  await loadModel(weights, config, w.name);
}

worker.onmessage = (e) => {
  const m = e.data;
  if (m.type === "loaded") {
    lastLoaded = true;
    const i = m.info;
    const fallback = i.backend === "cpu" ? ` (no WebGPU adapter in use: running on the CPU, ${i.workers} workers)` : "";
    $("device").textContent = `device: ${i.adapter}, backend ${i.backend}${fallback}`;
    $("model-name").textContent += ` · ${(i.params / 1e6).toFixed(2)}M parameters, ${i.resolution}×${i.resolution}×${i.channels}`;
    state("ready", "ready");
  } else if (m.type === "workers") {
    document.body.dataset.workersReady = String(m.ready); // the CPU pool, as its workers load
  } else if (m.type === "progress") {
    $("progress").value = m.step / m.total;
    const ms = (performance.now() - t0) / m.step;
    $("status").textContent = `step ${m.step}/${m.total}, ${ms.toFixed(0)} ms/step`;
    if (m.preview) draw($("preview"), m.preview);
  } else if (m.type === "result") {
    document.body.dataset.gpuBytes = String(m.info.gpuBytes);
    document.body.dataset.workers = String(m.info.workers ?? 1);
    document.body.dataset.relaxedSimd = String(m.info.relaxedSimd);
    window.ddimLastResult = m; // for tests and the console: images, raw (NCHW floats), msPerStep
    if (m.kind === "interpolate") {
      draw($("interp"), m.images);
    } else {
      lastImages = m.images;
      draw($("results"), m.images);
      $("download-png").disabled = false;
    }
    state("done", `done: ${m.images.length} images, ${m.msPerStep.toFixed(1)} ms/step`);
  } else if (m.type === "error") {
    if (/cancelled/.test(m.message)) state("ready", "cancelled");
    else state("error", m.message);
  }
};

function options() {
  const steps = Number($("steps").value);
  return {
    steps,
    eta: Number($("eta").value),
    skip: $("skip").value,
    seed: Number($("seed").value),
    n: Number($("n").value),
    clip: $("clip").checked,
    previewEvery: Math.max(1, Math.floor(steps / 5)),
  };
}

$("generate").onclick = () => {
  t0 = performance.now();
  $("progress").value = 0;
  state("running", "starting…");
  worker.postMessage({ type: "sample", options: options() });
};
$("interpolate").onclick = () => {
  t0 = performance.now();
  state("running", "interpolating…");
  const o = options();
  worker.postMessage({ type: "interpolate", options: { ...o, seedA: Number($("seed-a").value), seedB: Number($("seed-b").value), frames: Number($("frames").value) } });
};
$("cancel").onclick = () => worker.postMessage({ type: "cancel" });
$("random-seed").onclick = () => { $("seed").value = Math.floor(Math.random() * 2 ** 31); };
$("model-file").onchange = (e) => loadFiles(e.target.files);
$("config-file").onchange = () => { if ($("model-file").files.length) loadFiles($("model-file").files); };
$("backend").onchange = () => loadDefault();
$("download-png").onclick = () => {
  const size = lastImages[0].width, cols = Math.ceil(Math.sqrt(lastImages.length));
  const grid = document.createElement("canvas");
  grid.width = cols * (size + 2) + 2;
  grid.height = Math.ceil(lastImages.length / cols) * (size + 2) + 2;
  const g = grid.getContext("2d");
  lastImages.forEach((img, i) => g.putImageData(img, 2 + (i % cols) * (size + 2), 2 + Math.floor(i / cols) * (size + 2)));
  const a = document.createElement("a");
  a.href = grid.toDataURL("image/png");
  a.download = "ddim-samples.png";
  a.click();
};
document.addEventListener("dragover", (e) => e.preventDefault());
document.addEventListener("drop", (e) => { e.preventDefault(); loadFiles(e.dataTransfer.files); });

if (params.get("backend")) $("backend").value = params.get("backend");
loadDefault();
