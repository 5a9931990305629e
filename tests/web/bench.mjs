// Browser timing: ms per sampling step of a model in headless Chromium, on WebGPU (SwiftShader
// here) and on the wasm CPU backend. Not a test: prints one line per backend.
// Usage: node tests/web/bench.mjs [model.safetensors config.yml steps n]   (with `ddim serve` on $DDIM_URL;
//   BACKENDS=cpu or gpu times one backend only; SIMD, a comma list of the wasm builds to time on
//   the CPU backend: simd128, relaxed, auto; default simd128,relaxed). BACKENDS=pool times the
//   page itself on the CPU backend, its batch split across its worker pool (one worker per
//   core, up to 4): the wall time per step of the slowest worker, as the page reports it.
import { chromium } from "playwright-core";

const URL_ = process.env.DDIM_URL ?? "http://127.0.0.1:8080";
const [model = "models/emoji32.safetensors", config = "models/emoji32.yml", steps = "10", n = "1"] =
  process.argv.slice(2);
const base = ["--headless", "--no-sandbox", "--disable-quic", "--no-first-run", "--disable-background-networking",
  "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"];
const webgpu = ["--enable-unsafe-webgpu", "--enable-features=Vulkan", "--use-vulkan=swiftshader", "--use-angle=swiftshader"];

const runs = (process.env.BACKENDS ?? "gpu,cpu").split(",").flatMap((backend) =>
  backend !== "gpu" ? (process.env.SIMD ?? "simd128,relaxed").split(",").map((simd) => [backend, simd]) : [[backend, "auto"]]);
for (const [backend, simd] of runs) {
  const b = await chromium.launch({ executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium", args: backend === "gpu" ? [...base, ...webgpu] : base });
  const page = await b.newPage();
  if (backend === "pool") {
    await page.goto(`${URL_}/index.html?backend=cpu&simd=${simd}&model=/${model}&config=/${config}`);
    const size = await page.evaluate(() => String(Math.min(navigator.hardwareConcurrency || 1, 4)));
    await page.waitForFunction((size) => document.body.dataset.state === "ready" &&
      (size === "1" || document.body.dataset.workersReady === size), size, { timeout: 600_000 });
    let ms = 0;
    for (const [timed, s] of [[false, 2], [true, Number(steps)]]) { // the first warms every worker up
      await page.fill("#steps", String(s));
      await page.fill("#n", String(n));
      await page.click("#generate");
      await page.waitForFunction(() => ["done", "error"].includes(document.body.dataset.state), null, { timeout: 600_000 });
      const r = await page.evaluate(() => [document.body.dataset.state, document.getElementById("status").textContent,
        window.ddimLastResult?.msPerStep, window.ddimLastResult?.info]);
      if (r[0] !== "done") throw new Error(r[1]);
      ms = r[2];
      if (timed) console.log(`pool [${r[3].relaxedSimd ? "relaxed SIMD" : "SIMD128"}]: ${r[3].workers} workers: ${ms.toFixed(1)} ms/step (${model}, batch ${n}, ${steps} steps)`);
    }
    await b.close();
    continue;
  }
  await page.goto(`${URL_}/index.html?backend=${backend}`);
  const r = await page.evaluate(async ({ model, config, steps, n, backend, simd }) => {
    const m = await import("/pkg/ddim_webgpu.js");
    const { wasmUrl } = await import("/pkg/simd.js");
    await m.default({ module_or_path: wasmUrl(simd) });
    const cfg = await (await fetch("/" + config)).text();
    const d = await m.Ddim.load("/" + model, cfg, { backend });
    await d.sample({ steps: 2, n }); // warm-up: pipelines, buffers
    const out = await d.sample({ steps, n, seed: 1 });
    return { info: d.info(), ms: out.msPerStep };
  }, { model, config, steps: Number(steps), n: Number(n), backend, simd });
  const build = backend === "cpu" ? (r.info.relaxedSimd ? " [relaxed SIMD]" : " [SIMD128]") : "";
  console.log(`${backend}${build}: ${r.info.adapter}: ${r.ms.toFixed(1)} ms/step (${model}, batch ${n}, ${steps} steps)`);
  await b.close();
}
