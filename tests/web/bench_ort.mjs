// The onnxruntime-web baseline: ms per forward of an ONNX model (tools/export_onnx.py) in headless
// Chromium, on ORT's wasm backend (its default thread count, 1 thread, and one per logical core)
// and on its WebGPU backend (SwiftShader here). Not a test: prints one JSON line per backend, with
// "error" for a backend that failed (then the exit status is 1, after the other backends ran),
// and the largest difference of its output from the first wasm run's, so that a backend that
// computes garbage shows.
// Usage: node tests/web/bench_ort.mjs MODEL.onnx [STEPS=10] [BATCH=1]
//   One "step" is one forward at batch BATCH; each backend gets WARMUP (default 2) untimed
//   forwards first, then the median of STEPS. Env: CHROMIUM (default /usr/bin/chromium),
//   BENCH_TIMEOUT_S (per backend, default 600), BACKENDS (comma list of wasm-default, wasm-1,
//   wasm-all, webgpu; default all four). V8 tiers wasm up while it runs, so the first timed
//   forwards can be slow: prefer STEPS >= 10 for the wasm rows.
// Needs onnxruntime-web, which CI does not install: `npm install --no-save onnxruntime-web@1.30.0`
// in tests/web. Everything is served by a small server in this
// script, because wasm threads need a crossOriginIsolated page (COOP + COEP headers), which
// `ddim serve` and python's http.server do not send.
import { chromium } from "playwright-core";
import { createServer } from "node:http";
import { createReadStream, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, extname, join, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, "../..");
const dist = join(here, "node_modules/onnxruntime-web/dist");
const [model, steps = "10", batch = "1"] = process.argv.slice(2);
if (!model || !(Number(steps) >= 1) || !(Number(batch) >= 1)) {
  console.error("usage: node tests/web/bench_ort.mjs MODEL.onnx [STEPS] [BATCH]");
  process.exit(2);
}
for (const [f, what] of [[model, "model"], [join(dist, "ort.all.min.mjs"), "onnxruntime-web (run npm install in tests/web)"]]) {
  try { statSync(f); } catch { console.error(`${f}: no such file (${what})`); process.exit(2); }
}
const version = JSON.parse(readFileSync(join(dist, "../package.json"), "utf8")).version;

const types = { ".html": "text/html", ".js": "text/javascript", ".mjs": "text/javascript", ".wasm": "application/wasm",
  ".json": "application/json", ".onnx": "application/octet-stream" };
const missing = new Set();
const server = createServer((req, res) => {
  const p = decodeURIComponent(new URL(req.url, "http://x").pathname);
  const headers = { "Cross-Origin-Opener-Policy": "same-origin", "Cross-Origin-Embedder-Policy": "require-corp",
    "Cross-Origin-Resource-Policy": "same-origin", "Cache-Control": "no-store" };
  if (p === "/favicon.ico") { res.writeHead(204, headers); return res.end(); }
  if (p === "/") {
    res.writeHead(200, { ...headers, "Content-Type": "text/html" });
    return res.end("<!doctype html><title>ort bench</title>");
  }
  // /model.onnx is the file named on the command line (it may live outside the repository),
  // /ort/ is onnxruntime-web's dist, anything else comes from the repository root.
  const base = p.startsWith("/ort/") ? dist : root;
  const file = p === "/model.onnx" ? resolve(model) : resolve(base, "." + (base === dist ? p.slice(4) : p));
  let ok = file === resolve(model) || file.startsWith(base + sep);
  try { ok = ok && statSync(file).isFile(); } catch { ok = false; }
  if (!ok) { missing.add(p); res.writeHead(404, headers); return res.end(); }
  res.writeHead(200, { ...headers, "Content-Type": types[extname(file)] ?? "application/octet-stream" });
  createReadStream(file).pipe(res);
});
await new Promise((r) => server.listen(0, "127.0.0.1", r));
const url = `http://127.0.0.1:${server.address().port}`;

const args = ["--headless", "--no-sandbox", "--enable-unsafe-webgpu", "--enable-features=Vulkan", "--use-vulkan=swiftshader",
  "--use-angle=swiftshader", "--disable-quic", "--no-first-run", "--disable-background-networking",
  "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"];
// threads: 0 leaves env.wasm.numThreads to ORT (min(4, ceil(cores / 2)) when crossOriginIsolated),
// "all" sets it to navigator.hardwareConcurrency.
const all = { "wasm-default": ["wasm", 0], "wasm-1": ["wasm", 1], "wasm-all": ["wasm", "all"], webgpu: ["webgpu", 0] };
const chosen = (process.env.BACKENDS ?? Object.keys(all).join(",")).split(",");
const timeoutS = Number(process.env.BENCH_TIMEOUT_S ?? 600);
const warmup = Number(process.env.WARMUP ?? 2);

async function inPage({ backend, threads, steps, batch, warmup }) {
  // The wasm-only bundle for the wasm rows, so they run the plain build (no JSEP).
  const ort = await import(backend === "webgpu" ? "/ort/ort.webgpu.min.mjs" : "/ort/ort.wasm.min.mjs");
  if (threads === "all") ort.env.wasm.numThreads = navigator.hardwareConcurrency;
  else if (threads > 0) ort.env.wasm.numThreads = threads;
  let adapter = null;
  if (backend === "webgpu") {
    const a = await navigator.gpu?.requestAdapter();
    if (!a) throw new Error(navigator.gpu ? "requestAdapter() returned null" : "no navigator.gpu");
    adapter = `${a.info?.vendor} ${a.info?.architecture} ${a.info?.description ?? ""}`.trim();
  }
  const sess = await ort.InferenceSession.create("/model.onnx", { executionProviders: [backend], graphOptimizationLevel: "all" });
  const [, c, h, w] = sess.inputMetadata.find((m) => m.name === "x").shape;
  let s = 1;  // a fixed input, the same on every backend
  const x = Float32Array.from({ length: batch * c * h * w }, () => ((s = (s * 48271) % 2147483647) / 2147483647) * 2 - 1);
  const t = Float32Array.from({ length: batch }, (_, i) => (batch > 1 ? (999 * i) / (batch - 1) : 0));
  const feeds = { x: new ort.Tensor("float32", x, [batch, c, h, w]), t: new ort.Tensor("float32", t, [batch]) };
  for (let i = 0; i < warmup; i++) await sess.run(feeds);
  const times = [];
  let out;
  for (let i = 0; i < steps; i++) {
    const t0 = performance.now();
    out = await sess.run(feeds);
    times.push(performance.now() - t0);
  }
  return { times, eps: Array.from(await out.eps.getData()), threads: ort.env.wasm.numThreads, adapter,
    coi: self.crossOriginIsolated, cores: navigator.hardwareConcurrency, version: ort.env.versions?.web };
}

let reference = null;
const median = (v) => { const s = [...v].sort((a, b) => a - b); const m = s.length >> 1; return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2; };
for (const name of chosen) {
  const [backend, threads] = all[name] ?? [];
  const line = { impl: "onnxruntime-web", backend: backend ?? name, batch: Number(batch), steps: Number(steps), version };
  if (!backend) { console.log(JSON.stringify({ ...line, error: `unknown backend ${name}` })); process.exitCode = 1; continue; }
  const dir = mkdtempSync(join(tmpdir(), "ortweb-"));
  let ctx;
  try {
    ctx = await chromium.launchPersistentContext(dir, { executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium", headless: true, args });
    const page = ctx.pages()[0] ?? (await ctx.newPage());
    const wasm = new Set();
    page.on("response", (r) => r.url().endsWith(".wasm") && wasm.add(r.url().split("/").pop()));
    const logs = [];
    page.on("console", (m) => m.type() === "error" && logs.push(m.text()));
    await page.goto(url + "/");
    let timer;
    const r = await Promise.race([
      page.evaluate(inPage, { backend, threads, steps: Number(steps), batch: Number(batch), warmup }),
      new Promise((_, rej) => { timer = setTimeout(() => rej(new Error(`timed out after ${timeoutS} s`)), timeoutS * 1e3); }),
    ]).finally(() => clearTimeout(timer));
    reference ??= backend === "wasm" ? r.eps : null;
    const maxRef = reference ? Math.max(...reference.map(Math.abs)) : null;
    const diff = reference && reference.length === r.eps.length
      ? Math.max(...r.eps.map((v, i) => Math.abs(v - reference[i]))) / maxRef : null;
    console.log(JSON.stringify({ ...line, threads: r.threads, threads_asked: threads === 0 ? "default" : threads,
      crossOriginIsolated: r.coi, hardwareConcurrency: r.cores, median_ms: +median(r.times).toFixed(3),
      min_ms: +Math.min(...r.times).toFixed(3), times_ms: r.times.map((v) => +v.toFixed(3)), version: r.version ?? version,
      adapter: r.adapter, wasm: [...wasm], rel_diff_vs_first_wasm: diff, finite: r.eps.every(Number.isFinite),
      warmup, console_errors: logs.length ? logs.slice(0, 3) : undefined, not_found: missing.size ? [...missing] : undefined }));
    missing.clear();
  } catch (e) {
    console.log(JSON.stringify({ ...line, threads_asked: threads === 0 ? "default" : threads, error: String(e?.message ?? e).split("\n")[0] }));
    process.exitCode = 1;
  } finally {
    await ctx?.close().catch(() => {});
    rmSync(dir, { recursive: true, force: true });
  }
}
server.close();
