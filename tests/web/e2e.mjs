// Browser end-to-end tests: the page and the embed example in headless Chromium (WebGPU on
// SwiftShader, and a second browser without WebGPU for the CPU fallback), checked pixel by
// pixel against the native CLI's output for the same model, seed and steps.
// Usage: node tests/web/e2e.mjs   (expects `ddim serve` on $DDIM_URL and the reference .npy
// files written by .ci/run; see there). Prints "N passed, N failed".
import { chromium } from "playwright-core";
import { readFileSync, mkdirSync } from "node:fs";

const URL_ = process.env.DDIM_URL ?? "http://127.0.0.1:8080";
const REF = process.env.DDIM_REF ?? "target/e2e";
const CHROME = process.env.CHROMIUM ?? "/usr/bin/chromium";
mkdirSync(REF, { recursive: true });
const base = ["--headless", "--no-sandbox", "--disable-quic", "--no-first-run", "--disable-background-networking",
  "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"];
const webgpu = ["--enable-unsafe-webgpu", "--enable-features=Vulkan", "--use-vulkan=swiftshader", "--use-angle=swiftshader"];

// float32 .npy [N,C,H,W] → per-sample RGBA bytes, with the CLI's (x+1)/2·255 rounding.
function refImages(path) {
  const b = readFileSync(path);
  const hlen = b.readUInt16LE(8);
  const header = b.subarray(10, 10 + hlen).toString();
  const shape = header.match(/\(([^)]*)\)/)[1].split(",").filter((s) => s.trim()).map(Number);
  const data = new Float32Array(b.buffer.slice(b.byteOffset + 10 + hlen, b.byteOffset + b.length));
  const [n, c, h, w] = shape;
  return Array.from({ length: n }, (_, i) => {
    const px = new Uint8Array(h * w * 4).fill(255);
    for (let p = 0; p < h * w; p++)
      for (let k = 0; k < 3; k++) {
        const v = data[(i * c + (c >= 3 ? k : 0)) * h * w + p];
        px[p * 4 + k] = Math.round(Math.min(Math.max((v + 1) / 2, 0), 1) * 255);
      }
    return px;
  });
}

const results = [];
async function test(name, fn) {
  const t = Date.now();
  try {
    await fn();
    results.push([name, true]);
    console.log(`ok   ${name} (${((Date.now() - t) / 1000).toFixed(1)} s)`);
  } catch (e) {
    results.push([name, false]);
    console.log(`FAIL ${name}: ${e.stack ?? e}`);
  }
}

async function waitState(page, states, timeout = 600_000) {
  await page.waitForFunction((s) => s.includes(document.body.dataset.state), states, { timeout, polling: 200 });
  return page.evaluate(() => [document.body.dataset.state, document.getElementById("status")?.textContent]);
}

async function pixels(page, selector) {
  return page.$$eval(`${selector} canvas`, (cs) => cs.map((c) => Array.from(c.getContext("2d").getImageData(0, 0, c.width, c.height).data)));
}

function compare(got, want, tol = 3) {
  if (got.length !== want.length) throw new Error(`${got.length} images, expected ${want.length}`);
  let worst = 0;
  got.forEach((g, i) => {
    if (g.length !== want[i].length) throw new Error(`image ${i}: ${g.length} bytes, expected ${want[i].length}`);
    for (let j = 0; j < g.length; j++) worst = Math.max(worst, Math.abs(g[j] - want[i][j]));
  });
  if (worst > tol) throw new Error(`pixels differ by up to ${worst} levels (tolerance ${tol})`);
  return worst;
}

async function generate(page, { steps, seed, n }) {
  await page.fill("#steps", String(steps));
  await page.fill("#seed", String(seed));
  await page.fill("#n", String(n));
  await page.fill("#eta", "0");
  await page.selectOption("#skip", "uniform");
  await page.setChecked("#clip", true);
  await page.click("#generate");
}

// The shipped emoji32 model (the page's default and the CLI's built-in), seed 5, 3 steps, 2
// samples, x0 clipped so that float noise the sampler tolerates cannot push an out-of-range
// value across the 8-bit clamp differently in the two runs.
const ref = refImages(`${REF}/ref.npy`);
const gpuBrowser = await chromium.launch({ executablePath: CHROME, args: [...base, ...webgpu] });
const ctx = await gpuBrowser.newContext();

await test("page generates on WebGPU and matches the CLI", async () => {
  const page = await ctx.newPage();
  page.on("console", (m) => m.type() === "error" && console.log("  console:", m.text()));
  await page.goto(`${URL_}/?backend=gpu`);
  const [s, msg] = await waitState(page, ["ready", "error"]);
  if (s !== "ready") throw new Error(`load: ${msg}`);
  const device = await page.textContent("#device");
  if (!/backend gpu/.test(device)) throw new Error(`not on WebGPU: ${device}`);
  await generate(page, { steps: 3, seed: 5, n: 2 });
  const [s2, m2] = await waitState(page, ["done", "error"]);
  if (s2 !== "done") throw new Error(m2);
  const worst = compare(await pixels(page, "#results"), ref);
  console.log(`     ${device}; max pixel difference ${worst}`);
  await page.screenshot({ path: `${REF}/page-webgpu.png`, fullPage: true });
  await page.close();
});

await test("embed example draws the same sample", async () => {
  const page = await ctx.newPage();
  await page.goto(`${URL_}/web/embed-example.html?backend=gpu&steps=3&seed=5&clip`);
  const [s, msg] = await waitState(page, ["done", "error"]);
  if (s !== "done") throw new Error(msg);
  compare(await pixels(page, "body"), [ref[0]]);
  await page.screenshot({ path: `${REF}/embed.png` });
  await page.close();
});

// A PyTorch checkpoint dropped on the page, with its config: the tiny fixture in torch's zip
// format, against the CLI's sample of the same weights from their safetensors file.
await test("a dropped PyTorch checkpoint samples as its safetensors file does in the CLI", async () => {
  const page = await ctx.newPage();
  page.on("console", (m) => m.type() === "error" && console.log("  console:", m.text()));
  await page.goto(`${URL_}/?backend=gpu`);
  const [s, msg] = await waitState(page, ["ready", "error"]);
  if (s !== "ready") throw new Error(`load: ${msg}`);
  const pth = readFileSync("tests/fixtures/torch/tiny_zip.pth").toString("base64");
  const yml = readFileSync("tests/fixtures/torch/tiny_zip.yml", "utf8");
  const drop = await page.evaluateHandle(([b64, text]) => {
    const bytes = Uint8Array.from(atob(b64), (ch) => ch.charCodeAt(0));
    const dt = new DataTransfer();
    dt.items.add(new File([bytes], "tiny_zip.pth"));
    dt.items.add(new File([text], "tiny_zip.yml"));
    return dt;
  }, [pth, yml]);
  await page.evaluate(() => { document.body.dataset.state = "dropping"; });
  await page.dispatchEvent("body", "drop", { dataTransfer: drop });
  const [s1, m1] = await waitState(page, ["ready", "error"]);
  if (s1 !== "ready") throw new Error(`drop: ${m1}`);
  const name = await page.textContent("#model-name");
  if (!/tiny_zip\.pth/.test(name)) throw new Error(`the page did not load the dropped file: ${name}`);
  await generate(page, { steps: 3, seed: 5, n: 2 });
  const [s2, m2] = await waitState(page, ["done", "error"]);
  if (s2 !== "done") throw new Error(m2);
  const worst = compare(await pixels(page, "#results"), refImages(`${REF}/ref_tiny.npy`));
  console.log(`     ${name}; max pixel difference ${worst}`);
  await page.close();
});

// sample({ precision: "mixed" }) on WebGPU: f16 arithmetic where the adapter has shader-f16
// (browsers get no cooperative matrices), else f32; the result says which, and stays within
// the pixel tolerance of the f32 CLI.
await test("the web module's mixed precision says what ran and matches the CLI", async () => {
  const page = await ctx.newPage();
  await page.goto(`${URL_}/web/embed-example.html?backend=gpu&steps=1&seed=5&clip`);
  const [s, msg] = await waitState(page, ["done", "error"]);
  if (s !== "done") throw new Error(msg);
  const r = await page.evaluate(async () => {
    const { Ddim } = await import("../pkg/ddim_webgpu.js");
    const d = await Ddim.load("../models/emoji32.safetensors", undefined, { backend: "gpu" });
    const f16 = (await navigator.gpu.requestAdapter()).features.has("shader-f16");
    const out = await d.sample({ steps: 3, seed: 5, n: 2, clip: true, precision: "mixed" });
    const plain = await d.sample({ steps: 3, seed: 5, n: 1, clip: true });
    let bad = "";
    try { await d.sample({ steps: 1, n: 1, precision: "half" }); } catch (e) { bad = String(e.message ?? e); }
    d.free();
    return { f16, precision: out.precision, plain: plain.precision, bad,
      images: out.images.map((im) => Array.from(im.data)) };
  });
  const want = r.f16 ? "f16 arithmetic" : "f32";
  if (r.precision !== want) throw new Error(`mixed ran ${r.precision}, expected ${want} (shader-f16: ${r.f16})`);
  if (r.plain !== "f32") throw new Error(`back to f32 ran ${r.plain}`);
  if (!/precision/.test(r.bad)) throw new Error(`a bad precision was not refused clearly: ${r.bad}`);
  const worst = compare(r.images, ref);
  console.log(`     mixed: ${r.precision}; max pixel difference ${worst}`);
  await page.close();
});

await test("cancel stops a long run", async () => {
  const page = await ctx.newPage();
  await page.goto(`${URL_}/?backend=gpu`);
  await waitState(page, ["ready"]);
  await generate(page, { steps: 500, seed: 1, n: 1 });
  await page.waitForFunction(() => /step \d+/.test(document.getElementById("status").textContent), null, { timeout: 120_000 });
  await page.click("#cancel");
  const [s, msg] = await waitState(page, ["ready", "done", "error"], 120_000);
  if (s !== "ready" || !/cancel/.test(msg)) throw new Error(`after cancel: ${s}: ${msg}`);
  await page.close();
});

await test("a corrupt model file shows an error", async () => {
  const page = await ctx.newPage();
  await page.goto(`${URL_}/?backend=gpu`);
  await waitState(page, ["ready"]);
  const garbage = Buffer.from("this is not a safetensors file, just some text padding it out");
  await page.setInputFiles("#model-file", { name: "bad.safetensors", mimeType: "application/octet-stream", buffer: garbage });
  const [s, msg] = await waitState(page, ["error"], 60_000);
  if (!/safetensors/.test(msg)) throw new Error(`unhelpful message: ${msg}`);
  await page.close();
});

await test("20 generations do not grow GPU memory", async () => {
  const page = await ctx.newPage();
  await page.goto(`${URL_}/?backend=gpu`);
  await waitState(page, ["ready"]);
  const bytes = [];
  for (let i = 0; i < 20; i++) {
    await generate(page, { steps: 1, seed: i, n: 2 });
    await waitState(page, ["done"]);
    bytes.push(await page.evaluate(() => document.body.dataset.gpuBytes));
  }
  if (new Set(bytes.slice(1)).size !== 1 || !(Number(bytes[1]) > 0)) throw new Error(`GPU bytes per run: ${bytes}`);
  console.log(`     GPU buffers after each run: ${bytes[1]} bytes`);
  await page.close();
});
await gpuBrowser.close();

await test("without WebGPU the page falls back to the CPU and matches the CLI", async () => {
  const b = await chromium.launch({ executablePath: CHROME, args: base });
  const page = await b.newPage();
  await page.goto(`${URL_}/`);
  const [s, msg] = await waitState(page, ["ready", "error"]);
  if (s !== "ready") throw new Error(`load: ${msg}`);
  const device = await page.textContent("#device");
  if (!/backend cpu/.test(device) || !/CPU/.test(device)) throw new Error(`expected the CPU fallback: ${device}`);
  // A pool of workers splits the batch by sample index; the pixels must not change.
  await page.waitForFunction(() => Number(document.body.dataset.workersReady) >= 2, null, { timeout: 120_000 });
  await generate(page, { steps: 3, seed: 5, n: 2 });
  const [s2, m2] = await waitState(page, ["done", "error"]);
  if (s2 !== "done") throw new Error(m2);
  const workers = await page.evaluate(() => document.body.dataset.workers);
  if (workers !== "2") throw new Error(`the batch of 2 ran on ${workers} worker(s), not 2`);
  // Chromium validates relaxed SIMD, so the page's workers take the optional module.
  const relaxed = await page.evaluate(() => document.body.dataset.relaxedSimd);
  if (relaxed !== "true") throw new Error(`the workers ran the SIMD128 module (relaxedSimd ${relaxed})`);
  compare(await pixels(page, "#results"), ref);
  await page.screenshot({ path: `${REF}/page-cpu.png`, fullPage: true });
  await b.close();
});

for (const build of ["simd128", "relaxed"]) {
  await test(`the wasm CPU backend's ${build} module runs SIMD, and samples split by index match the CLI`, async () => {
    const b = await chromium.launch({ executablePath: CHROME, args: base });
    const page = await b.newPage();
    await page.goto(`${URL_}/web/embed-example.html?backend=cpu&steps=3&seed=5&clip&simd=${build}`);
    const [s, msg] = await waitState(page, ["done", "error"]);
    if (s !== "done") throw new Error(msg);
    const w0 = compare(await pixels(page, "body"), [ref[0]]);
    const simd = await page.evaluate(() => document.body.dataset.simd);
    if (simd !== "true") throw new Error(`info().simd is ${simd}: gemm runs its scalar kernels`);
    const relaxed = await page.evaluate(() => document.body.dataset.relaxedSimd);
    if (relaxed !== String(build === "relaxed")) throw new Error(`asked for ${build}, got relaxedSimd ${relaxed}`);
    // The second sample alone, numbered from 1, as one worker of a pool draws it.
    const px = await page.evaluate(async (build) => {
      const m = await import("../pkg/ddim_webgpu.js");
      const { wasmUrl } = await import("../pkg/simd.js");
      await m.default({ module_or_path: wasmUrl(build) });
      const d = await m.Ddim.load("../models/emoji32.safetensors", undefined, { backend: "cpu" });
      const { images } = await d.sample({ steps: 3, seed: 5, n: 1, first: 1, clip: true });
      d.free();
      return Array.from(images[0].data);
    }, build);
    const w1 = compare([px], [ref[1]]);
    console.log(`     max pixel difference from the CLI: ${Math.max(w0, w1)}`);
    await b.close();
  });
}

const passed = results.filter((r) => r[1]).length;
console.log(`\n${passed} passed, ${results.length - passed} failed`);
process.exit(passed === results.length ? 0 : 1);
