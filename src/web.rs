//! The browser module (wasm-bindgen): `Ddim.load`, `info`, `sample`, `interpolate`, `free`.
//! It runs the same engine as the native binary: WebGPU through wgpu when the browser has a
//! hardware adapter, else the CPU backend compiled to wasm. Results come back as `ImageData`
//! (RGBA) plus the raw NCHW floats. Every failure is a JavaScript `Error` with a message.

use crate::backend::cpu::CpuBackend;
use crate::backend::gpu::device::{auto_adapter, describe, Gpu};
use crate::backend::gpu::precision::{Arith, Precision};
use crate::backend::gpu::GpuBackend;
use crate::backend::{Backend, NoiseKey};
use crate::error::Error;
use crate::model::{
    is_torch, metadata_config, model_from_tensors, parse_config, read_weights, Model,
};
use crate::sampler::{initial_noise, interpolation_latents, resolve, StepRequest};
use crate::schedule;
use crate::tensor::Tensor;
use js_sys::{Array, Float32Array, Function, Object, Promise, Reflect, Uint8Array};
use std::cell::RefCell;
use std::rc::Rc;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::{future_to_promise, JsFuture};

enum Engine {
    Cpu(Box<CpuBackend>),
    Gpu(Box<GpuBackend>),
}

struct Inner {
    model: Model,
    engine: Engine,
    adapter: String,
    /// The precision last asked for (the GPU engine settles it on the first sample).
    precision: Precision,
}

/// A loaded model on its device.
#[wasm_bindgen]
pub struct Ddim {
    inner: Rc<RefCell<Option<Inner>>>,
}

fn js_err(e: impl std::fmt::Display) -> JsValue {
    js_sys::Error::new(&e.to_string()).into()
}

fn get(o: &JsValue, key: &str) -> Option<JsValue> {
    if o.is_undefined() || o.is_null() {
        return None;
    }
    Reflect::get(o, &key.into())
        .ok()
        .filter(|v| !v.is_undefined() && !v.is_null())
}

fn num(o: &JsValue, key: &str) -> Result<Option<f64>, JsValue> {
    match get(o, key) {
        None => Ok(None),
        Some(v) => v
            .as_f64()
            .map(Some)
            .ok_or_else(|| js_err(format!("{key} must be a number"))),
    }
}

fn count(o: &JsValue, key: &str, default: usize) -> Result<usize, JsValue> {
    match num(o, key)? {
        None => Ok(default),
        Some(x) if x >= 0.0 && x.fract() == 0.0 && x < 1e9 => Ok(x as usize),
        Some(x) => Err(js_err(format!(
            "{key} must be a non-negative integer, got {x}"
        ))),
    }
}

/// A seed: a non-negative integer that a double holds exactly.
fn seed(o: &JsValue, key: &str, default: f64) -> Result<f64, JsValue> {
    let s = num(o, key)?.unwrap_or(default);
    if !(s >= 0.0 && s.fract() == 0.0 && s <= 9_007_199_254_740_991.0) {
        return Err(js_err(format!(
            "{key} must be a non-negative integer, got {s}"
        )));
    }
    Ok(s)
}

/// The most images one call makes: beyond this the page would run out of memory first.
const MAX_IMAGES: usize = 4096;

fn images_count(o: &JsValue, key: &str, default: usize) -> Result<usize, JsValue> {
    match count(o, key, default)? {
        0 => Err(js_err(format!("{key} must be at least 1"))),
        n if n > MAX_IMAGES => Err(js_err(format!(
            "{key} = {n} is over the limit of {MAX_IMAGES}"
        ))),
        n => Ok(n),
    }
}

fn global() -> JsValue {
    js_sys::global().into()
}

fn has_webgpu() -> bool {
    get(&global(), "navigator")
        .and_then(|n| get(&n, "gpu"))
        .is_some()
}

async fn fetch_bytes(url: &str) -> Result<Vec<u8>, JsValue> {
    let g = global();
    let fetch: Function = get(&g, "fetch")
        .ok_or_else(|| js_err("fetch is not available"))?
        .dyn_into()?;
    let resp = JsFuture::from(fetch.call1(&g, &url.into())?.dyn_into::<Promise>()?)
        .await
        .map_err(|e| js_err(format!("{url}: download failed: {e:?}")))?;
    if get(&resp, "ok").and_then(|v| v.as_bool()) != Some(true) {
        let status = get(&resp, "status").and_then(|v| v.as_f64()).unwrap_or(0.0);
        return Err(js_err(format!("{url}: HTTP {status}")));
    }
    let ab: Function = get(&resp, "arrayBuffer")
        .ok_or_else(|| js_err("bad response"))?
        .dyn_into()?;
    let buf = JsFuture::from(ab.call0(&resp)?.dyn_into::<Promise>()?).await?;
    Ok(Uint8Array::new(&buf).to_vec())
}

/// Resolve after the event loop has run, so messages (a cancel) can arrive between steps.
async fn yield_now() {
    let g = global();
    let p = Promise::new(&mut |resolve, _| {
        if let Some(Ok(st)) = get(&g, "setTimeout").map(|f| f.dyn_into::<Function>()) {
            let _ = st.call2(&g, &resolve, &0.into());
        } else {
            let _ = resolve.call0(&JsValue::UNDEFINED);
        }
    });
    let _ = JsFuture::from(p).await;
}

fn now_ms() -> f64 {
    get(&global(), "performance")
        .and_then(|p| {
            let f: Function = get(&p, "now")?.dyn_into().ok()?;
            f.call0(&p).ok()?.as_f64()
        })
        .unwrap_or_else(js_sys::Date::now)
}

/// RGBA ImageData per sample: (x+1)/2 clamped, ×255, rounded; gray is replicated.
fn images(t: &Tensor) -> Result<Array, JsValue> {
    let (n, c, h, w) = (t.shape[0], t.shape[1], t.shape[2], t.shape[3]);
    let out = Array::new();
    for i in 0..n {
        let x = &t.data[i * c * h * w..(i + 1) * c * h * w];
        let mut rgba = vec![255u8; h * w * 4];
        for p in 0..h * w {
            for k in 0..3 {
                let ch = if c >= 3 { k } else { 0 };
                rgba[p * 4 + k] = crate::tensor::to_u8(x[ch * h * w + p]);
            }
        }
        // Copy into JS-owned memory: an ImageData made from a view of wasm memory would keep
        // pointing at `rgba` after it is freed and reused.
        let arr = js_sys::Uint8ClampedArray::new_with_length(rgba.len() as u32);
        arr.copy_from(&rgba);
        let img =
            web_sys::ImageData::new_with_js_u8_clamped_array_and_sh(&arr, w as u32, h as u32)?;
        out.push(&img);
    }
    Ok(out)
}

/// The page's options as the request the CLI also resolves (see sampler::resolve).
fn step_options(o: &JsValue, model: &Model) -> Result<Vec<schedule::StepCoeffs>, JsValue> {
    let text = |key: &str| get(o, key).and_then(|v| v.as_string());
    let req = StepRequest {
        steps: count(o, "steps", 50)?,
        skip: text("skip"),
        steps_offset: None,
        eta: num(o, "eta")?.unwrap_or(0.0),
        sampler: text("sampler"),
        clip: get(o, "clip").and_then(|v| v.as_bool()),
        prediction: None,
        final_alpha: text("finalAlpha"),
    };
    let (_, _, table) = resolve(&model.config.diffusion, &req).map_err(js_err)?;
    Ok(table)
}

impl Inner {
    fn max_batch(&self) -> usize {
        match &self.engine {
            Engine::Cpu(b) => b.max_batch(),
            Engine::Gpu(b) => b.max_batch(),
        }
    }

    fn backend(&mut self) -> &mut dyn Backend {
        match &mut self.engine {
            Engine::Cpu(b) => b.as_mut(),
            Engine::Gpu(b) => b.as_mut(),
        }
    }

    async fn read(&mut self, x0: bool) -> Result<Tensor, Error> {
        match &mut self.engine {
            Engine::Cpu(b) if x0 => b.x0(),
            Engine::Cpu(b) => b.latent(),
            Engine::Gpu(b) if x0 => b.read_x0().await,
            Engine::Gpu(b) => b.read_latent().await,
        }
    }

    /// The sampling loop, awaiting between steps so the page stays live and can cancel.
    async fn run(
        &mut self,
        o: &JsValue,
        init: Option<Tensor>,
        seed: u64,
        first_sample: usize,
        n: usize,
    ) -> Result<JsValue, JsValue> {
        let table = step_options(o, &self.model)?;
        let precision: Precision = get(o, "precision")
            .and_then(|v| v.as_string())
            .unwrap_or_else(|| "f32".into())
            .parse()
            .map_err(js_err)?;
        // Mixed in the browser: f16 arithmetic where the adapter has shader-f16 (wgpu maps
        // no cooperative matrices to WebGPU), else f32; the CPU engine is always f32.
        let arith = match &mut self.engine {
            Engine::Gpu(g) => {
                if precision != self.precision {
                    g.set_precision(precision).await.map_err(js_err)?;
                    self.precision = precision;
                }
                g.arith().name()
            }
            Engine::Cpu(_) => Arith::F32.name(),
        };
        let on_step: Option<Function> = get(o, "onStep").and_then(|f| f.dyn_into().ok());
        let every = count(o, "previewEvery", 0)?;
        let signal: Option<web_sys::AbortSignal> = get(o, "signal").and_then(|s| s.dyn_into().ok());
        let (c, r) = (
            self.model.config.model.in_channels,
            self.model.config.model.resolution,
        );
        let batch = self.max_batch().min(n).max(1);
        let total = table.len() * n.div_ceil(batch);
        let (mut parts, mut done) = (Vec::new(), 0);
        let t0 = now_ms();
        for first in (0..n).step_by(batch) {
            let m = batch.min(n - first);
            let x = match &init {
                Some(t) => t.slice_batch(first, first + m),
                None => initial_noise(seed, first_sample + first, m, c, r),
            };
            if let Engine::Gpu(g) = &mut self.engine {
                // Compiling (and, on a new device, tuning) must be awaited in the browser.
                g.prepare(m).await.map_err(js_err)?;
            }
            self.backend()
                .start(
                    &x,
                    &table,
                    NoiseKey {
                        seed,
                        first_sample: first_sample + first,
                    },
                )
                .map_err(js_err)?;
            for k in 0..table.len() {
                self.backend().step(k).map_err(js_err)?;
                done += 1;
                let preview = every > 0 && (done % every == 0 || done == total);
                let prev = if preview {
                    Some(images(&self.read(true).await.map_err(js_err)?)?)
                } else {
                    None
                };
                if !preview {
                    if let Engine::Gpu(g) = &mut self.engine {
                        if done % 4 == 0 {
                            g.sync().await.map_err(js_err)?;
                        }
                    }
                    yield_now().await;
                }
                if signal.as_ref().is_some_and(|s| s.aborted()) {
                    return Err(js_err("cancelled"));
                }
                if let Some(f) = &on_step {
                    let p = prev.map_or(JsValue::UNDEFINED, JsValue::from);
                    f.call3(
                        &JsValue::NULL,
                        &(done as f64).into(),
                        &(total as f64).into(),
                        &p,
                    )?;
                }
            }
            parts.push(self.read(false).await.map_err(js_err)?);
        }
        let ms_per_step = (now_ms() - t0) / total.max(1) as f64;
        let mut shape = parts[0].shape.clone();
        shape[0] = n;
        let all = Tensor {
            shape,
            data: parts.into_iter().flat_map(|p| p.data).collect(),
        };
        let out = Object::new();
        Reflect::set(&out, &"images".into(), &images(&all)?.into())?;
        Reflect::set(&out, &"raw".into(), &Float32Array::from(&all.data[..]))?;
        Reflect::set(&out, &"msPerStep".into(), &ms_per_step.into())?;
        Reflect::set(&out, &"precision".into(), &arith.into())?;
        Ok(out.into())
    }
}

/// Exclusive use of a loaded model: a second concurrent call gets "busy", not an interleaved run.
fn lock(inner: &RefCell<Option<Inner>>) -> Result<std::cell::RefMut<'_, Inner>, JsValue> {
    let guard = inner
        .try_borrow_mut()
        .map_err(|_| js_err("busy: a sample is already running"))?;
    std::cell::RefMut::filter_map(guard, Option::as_mut).map_err(|_| js_err("this model was freed"))
}

#[wasm_bindgen]
impl Ddim {
    /// `weights`: safetensors or PyTorch checkpoint bytes, or a URL. `config`: YAML or
    /// config.json text; without it the safetensors metadata key `config` is used (a PyTorch
    /// checkpoint has none). `options.backend`: auto, gpu or cpu. `options.ckptEntry`: which
    /// item of a list checkpoint to read (default: the EMA of a training checkpoint).
    pub async fn load(
        weights: JsValue,
        config: Option<String>,
        options: JsValue,
    ) -> Result<Ddim, JsValue> {
        let (bytes, name) = match weights.as_string() {
            Some(url) => (fetch_bytes(&url).await?, url),
            None if weights.is_instance_of::<Uint8Array>() => {
                (Uint8Array::from(weights).to_vec(), "weights".into())
            }
            None if weights.is_instance_of::<js_sys::ArrayBuffer>() => {
                (Uint8Array::new(&weights).to_vec(), "weights".into())
            }
            None => {
                return Err(js_err(
                    "weights must be a Uint8Array, an ArrayBuffer or a URL",
                ))
            }
        };
        let (text, cfg_name) = match config {
            Some(t) => (t, "config".to_string()),
            None => match metadata_config(&bytes, &name).map_err(js_err)? {
                Some(t) => (t, format!("{name} (metadata \"config\")")),
                None if is_torch(&bytes, &name) => {
                    return Err(js_err(format!(
                        "{name}: a PyTorch checkpoint carries no config; pass its YAML or \
                         config.json text too"
                    )))
                }
                None => {
                    return Err(js_err(format!(
                        "{name}: no config given, and its metadata has none"
                    )))
                }
            },
        };
        let cfg = parse_config(&text, &cfg_name, None).map_err(js_err)?;
        let entry = match num(&options, "ckptEntry")? {
            None => None,
            Some(x) if x.fract() == 0.0 && x.abs() < 1e9 => Some(x as i64),
            Some(x) => return Err(js_err(format!("ckptEntry must be an integer, got {x}"))),
        };
        let tensors = read_weights(&bytes, &name, entry).map_err(js_err)?;
        let model = model_from_tensors(tensors, &name, cfg).map_err(js_err)?;
        let want = get(&options, "backend")
            .and_then(|v| v.as_string())
            .unwrap_or_else(|| "auto".into());
        let adapter = match want.as_str() {
            "cpu" => None,
            "gpu" | "auto" if !has_webgpu() => {
                if want == "gpu" {
                    return Err(js_err(
                        "WebGPU is not available in this browser (navigator.gpu is missing)",
                    ));
                }
                None
            }
            "gpu" => Some(
                Gpu::adapter()
                    .await
                    .ok_or_else(|| js_err("the browser refused a WebGPU adapter"))?,
            ),
            "auto" => auto_adapter().await.ok(),
            other => {
                return Err(js_err(format!(
                    "backend {other:?} (expected auto, gpu or cpu)"
                )))
            }
        };
        let (engine, name) = match adapter {
            Some(a) => {
                let info = describe(&a.get_info());
                (
                    Engine::Gpu(Box::new(
                        GpuBackend::create(&model, a).await.map_err(js_err)?,
                    )),
                    info,
                )
            }
            None => (
                Engine::Cpu(Box::new(CpuBackend::new(&model))),
                "CPU (wasm)".to_string(),
            ),
        };
        Ok(Ddim {
            inner: Rc::new(RefCell::new(Some(Inner {
                model,
                engine,
                adapter: name,
                precision: Precision::F32,
            }))),
        })
    }

    /// { adapter, backend, params, resolution, channels, gpuBytes, simd, relaxedSimd }
    pub fn info(&self) -> Result<JsValue, JsValue> {
        let guard = self
            .inner
            .try_borrow()
            .map_err(|_| js_err("busy: a sample is running"))?;
        let inner = guard
            .as_ref()
            .ok_or_else(|| js_err("this model was freed"))?;
        let o = Object::new();
        let backend = if matches!(inner.engine, Engine::Gpu(_)) {
            "gpu"
        } else {
            "cpu"
        };
        Reflect::set(&o, &"adapter".into(), &inner.adapter.clone().into())?;
        Reflect::set(&o, &"backend".into(), &backend.into())?;
        Reflect::set(
            &o,
            &"params".into(),
            &(inner.model.plan.param_count() as f64).into(),
        )?;
        Reflect::set(
            &o,
            &"resolution".into(),
            &(inner.model.config.model.resolution as f64).into(),
        )?;
        Reflect::set(
            &o,
            &"channels".into(),
            &(inner.model.config.model.in_channels as f64).into(),
        )?;
        let bytes = match &inner.engine {
            Engine::Gpu(g) => g.gpu_bytes() as f64,
            Engine::Cpu(_) => 0.0,
        };
        Reflect::set(&o, &"gpuBytes".into(), &bytes.into())?;
        // The CPU fallback's GEMM runs SIMD128 kernels only when built for them.
        let simd = cfg!(target_feature = "simd128") && gemm::get_wasm_simd128();
        Reflect::set(&o, &"simd".into(), &simd.into())?;
        // The optional module (cargo feature relaxed-simd, built with +relaxed-simd): the
        // direct 3×3 kernel's multiply-adds are then single relaxed_madd instructions.
        let relaxed = cfg!(all(
            feature = "relaxed-simd",
            target_feature = "relaxed-simd"
        ));
        Reflect::set(&o, &"relaxedSimd".into(), &relaxed.into())?;
        Ok(o.into())
    }

    /// Sample: { steps, eta, skip, seed, n, first, clip, sampler, precision, onStep,
    /// previewEvery, signal }. `precision`: "f32" (default) or "mixed"; the result's
    /// `precision` says what ran. `first` numbers the samples from there (default 0): the noise is keyed by
    /// sample index, so workers that split a batch by index make the very same images.
    // The borrow is held across awaits on purpose: it is the lock that refuses a second
    // concurrent call (try_borrow_mut fails with "busy") instead of interleaving two runs.
    #[allow(clippy::await_holding_refcell_ref)]
    pub fn sample(&self, options: JsValue) -> Promise {
        let inner = self.inner.clone();
        future_to_promise(async move {
            let mut me = lock(&inner)?;
            let n = images_count(&options, "n", 1)?;
            let seed = seed(&options, "seed", 0.0)?;
            let first = count(&options, "first", 0)?;
            me.run(&options, None, seed as u64, first, n).await
        })
    }

    /// Slerp between the x_T of two seeds: { seedA, seedB, frames, steps, eta, ... }.
    #[allow(clippy::await_holding_refcell_ref)]
    pub fn interpolate(&self, options: JsValue) -> Promise {
        let inner = self.inner.clone();
        future_to_promise(async move {
            let mut me = lock(&inner)?;
            let (a, b) = (seed(&options, "seedA", 0.0)?, seed(&options, "seedB", 1.0)?);
            let frames = images_count(&options, "frames", 8)?;
            let (c, r) = (
                me.model.config.model.in_channels,
                me.model.config.model.resolution,
            );
            let z = interpolation_latents(a as u64, b as u64, frames, c, r).map_err(js_err)?;
            me.run(&options, Some(z), a as u64, 0, frames).await
        })
    }
}
