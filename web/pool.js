// A pool of model workers (worker.js), each with its own instance of the wasm module, used
// like one Worker: postMessage in, onmessage out, with the same messages. On the CPU backend
// a batch is split across the workers by sample index: the noise is keyed by sample index,
// so the images are the same however they are split. A GPU backend, a batch of one and
// interpolation stay on the first worker. Threads inside one wasm instance would need a
// nightly toolchain and a crossOriginIsolated page; separate instances need neither.
export class WorkerPool {
  constructor(url, size = Math.min(navigator.hardwareConcurrency || 1, 4)) {
    this.url = url;
    this.size = Math.max(1, size);
    this.onmessage = null;
    this.load = null; // the last load message, replayed to workers that join later
    this.workers = [];
    this.ready = []; // workers with the model loaded, first worker first
    this.job = null; // the sample split in progress
    this.add();
  }

  add() {
    const w = new Worker(this.url, { type: "module" });
    const i = this.workers.length;
    w.onmessage = (e) => this.from(i, e.data);
    this.workers.push(w);
    return w;
  }

  emit(m) {
    this.onmessage?.({ data: m });
  }

  postMessage(m) {
    if (m.type === "load") {
      this.load = m;
      this.ready = [];
      this.workers[0].postMessage(m);
    } else if (m.type === "cancel") {
      for (const w of this.workers) w.postMessage(m);
    } else if (m.type === "sample" && this.ready.length > 1 && m.options.n > 1) {
      this.split(m);
    } else {
      this.workers[0].postMessage(m);
    }
  }

  // Samples first .. first + n − 1 of the batch to each ready worker, in order.
  split(m) {
    const n = m.options.n, k = Math.min(this.ready.length, n);
    const parts = [];
    for (let j = 0, first = 0; j < k; j++) {
      const count = Math.floor(n / k) + (j < n % k ? 1 : 0);
      parts.push({ worker: this.ready[j], first, count, step: 0, total: 0, result: null });
      first += count;
    }
    this.job = { parts, failed: false };
    for (const p of parts) {
      this.workers[p.worker].postMessage({ type: "sample", options: { ...m.options, first: p.first, n: p.count } });
    }
  }

  from(i, m) {
    if (m.type === "loaded") {
      this.ready.push(i);
      this.ready.sort((a, b) => a - b);
      if (i !== 0) {
        this.emit({ type: "workers", ready: this.ready.length });
        return;
      }
      // The first worker reports; on the CPU the others load the same model behind it.
      this.emit({ ...m, info: { ...m.info, workers: m.info.backend === "cpu" ? this.size : 1 } });
      if (m.info.backend === "cpu") {
        while (this.workers.length < this.size) this.add();
        for (let j = 1; j < this.workers.length; j++) this.workers[j].postMessage(this.load);
      }
      return;
    }
    const job = this.job;
    const part = job?.parts.find((p) => p.worker === i);
    if (!part) {
      if (i === 0) this.emit(m);
      return;
    }
    if (m.type === "progress") {
      part.step = m.step;
      part.total = m.total;
      const step = job.parts.reduce((s, p) => s + p.step, 0);
      const total = job.parts.reduce((s, p) => s + (p.total || m.total), 0);
      // Previews come from the first part only: a full grid per step would flood the page.
      this.emit({ type: "progress", step, total, preview: i === job.parts[0].worker ? m.preview : undefined });
    } else if (m.type === "result" || m.type === "error") {
      part.result = m;
      if (m.type === "error" && !job.failed) {
        // One failure (or a cancel) ends the whole batch: stop the others, report it once.
        job.failed = true;
        for (const p of job.parts) if (!p.result) this.workers[p.worker].postMessage({ type: "cancel" });
        this.emit(m);
      }
      if (!job.parts.every((p) => p.result)) return;
      this.job = null;
      if (job.failed) return;
      const rs = job.parts.map((p) => p.result);
      const raw = new Float32Array(rs.reduce((s, r) => s + r.raw.length, 0));
      rs.reduce((off, r) => (raw.set(r.raw, off), off + r.raw.length), 0);
      this.emit({
        type: "result", kind: "sample", images: rs.flatMap((r) => r.images), raw,
        msPerStep: Math.max(...rs.map((r) => r.msPerStep)), info: { ...rs[0].info, workers: rs.length },
      });
    }
  }
}
