// Browser timing: ms per sampling step of a model in headless Chromium, on WebGPU (SwiftShader
// here) and on the wasm CPU backend. Not a test: prints one line per backend.
// Usage: node tests/web/bench.mjs [model.safetensors config.yml steps n]   (with `ddim serve` on $DDIM_URL;
//   BACKENDS=cpu or gpu times one backend only)
import { chromium } from "playwright-core";

const URL_ = process.env.DDIM_URL ?? "http://127.0.0.1:8080";
const [model = "models/emoji32.safetensors", config = "models/emoji32.yml", steps = "10", n = "1"] =
  process.argv.slice(2);
const base = ["--headless", "--no-sandbox", "--disable-quic", "--no-first-run", "--disable-background-networking",
  "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"];
const webgpu = ["--enable-unsafe-webgpu", "--enable-features=Vulkan", "--use-vulkan=swiftshader", "--use-angle=swiftshader"];

for (const backend of (process.env.BACKENDS ?? "gpu,cpu").split(",")) {
  const b = await chromium.launch({ executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium", args: backend === "gpu" ? [...base, ...webgpu] : base });
  const page = await b.newPage();
  await page.goto(`${URL_}/index.html?backend=${backend}`);
  const r = await page.evaluate(async ({ model, config, steps, n, backend }) => {
    const m = await import("/pkg/ddim_webgpu.js");
    await m.default();
    const cfg = await (await fetch("/" + config)).text();
    const d = await m.Ddim.load("/" + model, cfg, { backend });
    await d.sample({ steps: 2, n }); // warm-up: pipelines, buffers
    const out = await d.sample({ steps, n, seed: 1 });
    return { info: d.info(), ms: out.msPerStep };
  }, { model, config, steps: Number(steps), n: Number(n), backend });
  console.log(`${backend}: ${r.info.adapter}: ${r.ms.toFixed(1)} ms/step (${model}, batch ${n}, ${steps} steps)`);
  await b.close();
}
