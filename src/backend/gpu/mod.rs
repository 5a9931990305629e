//! The GPU backend: the same plan as the CPU backend, run as WGSL compute dispatches through
//! wgpu. Weights live in one buffer per tensor and activations in one buffer per liveness
//! class, so no binding exceeds the device limit. The host side of each layer family lives
//! in `ops/`, beside its WGSL file; `prepare` compiles and binds a batch size once, choosing
//! each convolution's kernel (`tune.rs`). Once a trajectory starts, each step is a few
//! buffer-to-buffer copies (its coefficients and timestep embedding, from tables uploaded
//! once) plus the dispatches; steps are encoded in groups and nothing comes back to the host
//! until a result is read.

mod batch;
pub mod device;
mod encode;
pub mod ops;
pub mod pipelines;
pub mod precision;
mod profile;
mod self_check;
pub mod tune;

use super::{Backend, NoiseKey};
use crate::error::{Error, Result};
use crate::model::unet::timestep_embedding;
use crate::model::{Model, Op, Plan};
use crate::schedule::StepCoeffs;
use crate::tensor::Tensor;
use batch::Batch;
pub use batch::Choice;
use device::{describe, is_software, Gpu};
use ops::conv::{self, ConvShape, ConvVariant};
use precision::{Arith, Precision};
use tune::{Tune, Tuner};
use wgpu::util::DeviceExt;

/// Steps encoded into one submission.
pub const STEPS_PER_SUBMIT: usize = 8;

/// A trajectory in progress.
struct Trajectory {
    steps: wgpu::Buffer,
    temb: wgpu::Buffer,
    len: usize,
    encoder: Option<wgpu::CommandEncoder>,
    pending: usize,
    bytes: u64,
}

pub struct GpuBackend {
    gpu: Gpu,
    /// The convolutions read f16 weights.
    half: bool,
    plan: Plan,
    weights: Vec<wgpu::Buffer>,
    dummy: wgpu::Buffer,
    buf_of: Vec<usize>,
    buf_len: Vec<usize>,
    attn_len: usize,
    max_batch: usize,
    forced: Option<ConvVariant>,
    tuner: Tuner,
    /// What the convolutions compute with (the resolved `--precision`).
    arith: Arith,
    /// The adapter's subgroup size, where it is fixed (the tensor-core kernel needs it).
    subgroup: Option<u32>,
    /// Self-check results by mode, so a device is checked once per mode.
    checked: std::collections::HashMap<Arith, std::result::Result<f32, String>>,
    /// Make this mode's self-check disagree (tests of the fallback only).
    fault: Option<Arith>,
    /// What the user should hear about the precision, once.
    precision_notes: Vec<String>,
    /// Host time spent encoding and submitting steps (not waiting for the device).
    #[cfg(not(target_arch = "wasm32"))]
    pub host_time: std::time::Duration,
    batch: Option<Batch>,
    traj: Option<Trajectory>,
}

/// The f16 bits of `data`, padded to whole 4-byte words, if every value is exactly an f16.
fn exact_f16(data: &[f32]) -> Option<Vec<u16>> {
    let mut bits = data
        .iter()
        .map(|&v| {
            let h = half::f16::from_f32(v);
            (h.to_f32().to_bits() == v.to_bits()).then_some(h.to_bits())
        })
        .collect::<Option<Vec<u16>>>()?;
    if bits.len() % 2 == 1 {
        bits.push(0);
    }
    Some(bits)
}

/// Conv weights go to the device as f16 only when that loses nothing: the device has
/// shader-f16 and every conv weight is exactly an f16 (a model stored as f16, say). The
/// conv modules are built for one weight type, so it is all convs or none.
fn f16_weights(gpu: &Gpu, plan: &Plan, weights: &[Tensor]) -> Vec<Option<Vec<u16>>> {
    let mut out = vec![None; weights.len()];
    if !gpu.features.contains(wgpu::Features::SHADER_F16) {
        return out;
    }
    for op in &plan.ops {
        if let Op::Conv { w, .. } = op {
            match exact_f16(&weights[*w].data) {
                Some(bits) => out[*w] = Some(bits),
                None => return vec![None; weights.len()],
            }
        }
    }
    out
}

impl GpuBackend {
    /// Open the best adapter (software ones included) and prepare the model on it.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn new(model: &Model, precision: Precision) -> Result<Self> {
        let adapter = pollster::block_on(Gpu::adapter())
            .ok_or_else(|| Error::Backend("no GPU adapter found (wgpu saw none)".into()))?;
        Self::with_adapter(model, adapter, precision)
    }

    #[cfg(not(target_arch = "wasm32"))]
    pub fn with_adapter(
        model: &Model,
        adapter: wgpu::Adapter,
        precision: Precision,
    ) -> Result<Self> {
        pollster::block_on(Self::create_with(model, adapter, precision))
    }

    /// Open a device on `adapter` and prepare the model on it, in f32.
    pub async fn create(model: &Model, adapter: wgpu::Adapter) -> Result<Self> {
        Self::create_with(model, adapter, Precision::F32).await
    }

    /// Open a device on `adapter` (with cooperative matrices when `precision` may use them),
    /// prepare the model, and settle the precision (running its self-checks).
    pub async fn create_with(
        model: &Model,
        adapter: wgpu::Adapter,
        precision: Precision,
    ) -> Result<Self> {
        let gpu = Gpu::open_for(adapter, precision).await?;
        let mut b = Self::with_plan(gpu, model.plan.clone(), &model.weights.tensors).await?;
        b.set_precision(precision).await?;
        Ok(b)
    }

    /// Prepare any plan (the twin tests run single-op plans). The tuner follows `DDIM_TUNE`,
    /// else it is off on software adapters and quick on hardware ones.
    pub async fn with_plan(gpu: Gpu, plan: Plan, weights: &[Tensor]) -> Result<Self> {
        let limit = gpu
            .limits
            .max_storage_buffer_binding_size
            .min(gpu.limits.max_buffer_size);
        let as_f16 = f16_weights(&gpu, &plan, weights);
        let half = as_f16.iter().any(Option::is_some);
        let mut wbufs = Vec::with_capacity(weights.len());
        for ((p, t), h) in plan.params.iter().zip(weights).zip(&as_f16) {
            let contents: &[u8] = match h {
                Some(bits) => bytemuck::cast_slice(bits),
                None => bytemuck::cast_slice(&t.data),
            };
            let bytes = contents.len() as u64;
            if bytes > limit {
                return Err(Error::Backend(format!(
                    "tensor {} is {bytes} bytes, over the device's max_storage_buffer_binding_size of {limit}",
                    p.name
                )));
            }
            wbufs.push(
                gpu.device
                    .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                        label: Some(&p.name),
                        contents,
                        usage: wgpu::BufferUsages::STORAGE,
                    }),
            );
        }
        let (buf_of, buf_len) = plan.assign_buffers();
        let attn_len = plan
            .ops
            .iter()
            .filter_map(|op| match op {
                Op::Attention { q, .. } => {
                    let (h, w) = plan.slots[q.slot].hw();
                    Some(h * w * h * w)
                }
                _ => None,
            })
            .max()
            .unwrap_or(1);
        let per_image_max = buf_len.iter().copied().chain([attn_len]).max().unwrap_or(1) as u64 * 4;
        if per_image_max > limit {
            return Err(Error::Backend(format!(
                "one image needs a {per_image_max}-byte activation buffer, over the device's \
                 max_storage_buffer_binding_size of {limit}"
            )));
        }
        let max_batch = ((limit / per_image_max) as usize).clamp(1, 65_535);
        gpu.check()?;
        let dummy = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("unused binding"),
            size: 16,
            usage: wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        });
        // In the browser kernels can be timed only with timestamp queries.
        let can_time = cfg!(not(target_arch = "wasm32"))
            || gpu.features.contains(wgpu::Features::TIMESTAMP_QUERY);
        let mode = Tune::from_env()?.unwrap_or(if is_software(&gpu.info) || !can_time {
            Tune::Off
        } else {
            Tune::Quick
        });
        Ok(GpuBackend {
            gpu,
            half,
            plan,
            weights: wbufs,
            dummy,
            buf_of,
            buf_len,
            attn_len,
            max_batch,
            forced: None,
            tuner: Tuner::new(mode, tune::default_path()),
            arith: Arith::F32,
            subgroup: None,
            checked: Default::default(),
            fault: None,
            precision_notes: Vec::new(),
            #[cfg(not(target_arch = "wasm32"))]
            host_time: Default::default(),
            batch: None,
            traj: None,
        })
    }

    pub fn adapter_info(&self) -> &wgpu::AdapterInfo {
        &self.gpu.info
    }

    /// Whether the convolutions read f16 weights (shader-f16 present, weights exact in f16).
    pub fn half_weights(&self) -> bool {
        self.half
    }

    /// Device memory held now: weights, the current batch and trajectory. Readback staging
    /// buffers are transient and not counted.
    pub fn gpu_bytes(&self) -> u64 {
        self.weights.iter().map(|b| b.size()).sum::<u64>()
            + self.batch.as_ref().map_or(0, |b| b.bytes)
            + self.traj.as_ref().map_or(0, |t| t.bytes)
    }

    /// Run every convolution that this variant can run with it (None: the tuner's or the
    /// default choice for each). Takes effect for the next batch size prepared.
    pub fn set_conv(&mut self, v: Option<ConvVariant>) {
        self.forced = v;
        self.batch = None;
        self.traj = None;
    }

    /// Tune with this effort, keeping choices in `cache` (None: for this process only).
    pub fn set_tuning(&mut self, mode: Tune, cache: Option<std::path::PathBuf>) {
        self.tuner = Tuner::new(mode, cache);
        self.batch = None;
        self.traj = None;
    }

    pub fn tuning(&self) -> Tune {
        self.tuner.mode
    }

    /// Variants timed by the tuner so far (0 when every choice came from its cache).
    pub fn variants_timed(&self) -> usize {
        self.tuner.timed
    }

    /// What the tuner had to say about its cache since the last call.
    pub fn take_warnings(&mut self) -> Vec<String> {
        std::mem::take(&mut self.tuner.warnings)
    }

    /// Every convolution variant this device can run for a layer shape at the current
    /// precision.
    pub fn conv_variants(&self, shape: &ConvShape) -> Vec<ConvVariant> {
        conv::variants(shape, &self.gpu.limits, self.arith, self.subgroup)
    }

    /// The kernel of each convolution shape at the prepared batch size.
    pub fn choices(&self) -> &[Choice] {
        self.batch.as_ref().map_or(&[], |b| &b.choices)
    }

    /// Give the device back (to build another backend on it without reopening).
    pub fn into_gpu(self) -> Gpu {
        self.gpu
    }

    /// Run a plan on n images: `inputs` fill slots, `output` is read back.
    pub async fn execute(
        &mut self,
        n: usize,
        inputs: &[(usize, &[f32])],
        output: usize,
    ) -> Result<Vec<f32>> {
        self.flush()?;
        self.prepare(n).await?;
        let b = self.batch.as_ref().expect("batch prepared");
        for (slot, data) in inputs {
            let want = self.plan.slots[*slot].len() * n;
            if data.len() != want {
                return Err(Error::Shape {
                    what: format!("input slot {slot}"),
                    expected: vec![want],
                    found: vec![data.len()],
                });
            }
            self.gpu
                .queue
                .write_buffer(&b.bufs[self.buf_of[*slot]], 0, bytemuck::cast_slice(data));
        }
        let mut enc = self.gpu.device.create_command_encoder(&Default::default());
        encode::record(&mut enc.begin_compute_pass(&Default::default()), &b.ops);
        self.gpu.queue.submit([enc.finish()]);
        let len = self.plan.slots[output].len() * n;
        self.gpu
            .read(&b.bufs[self.buf_of[output]], (len * 4) as u64)
            .await
    }

    /// Submit the steps encoded so far.
    fn flush(&mut self) -> Result<()> {
        if let Some(t) = self.traj.as_mut() {
            if let Some(enc) = t.encoder.take() {
                self.gpu.queue.submit([enc.finish()]);
                t.pending = 0;
            }
        }
        self.gpu.check()
    }

    async fn read_image_buffer(&mut self, which: fn(&Batch) -> &wgpu::Buffer) -> Result<Tensor> {
        self.flush()?;
        let b = self
            .batch
            .as_ref()
            .ok_or_else(|| Error::Backend("no trajectory started".into()))?;
        let c = self.plan.config.in_channels;
        let r = self.plan.config.resolution;
        let data = self
            .gpu
            .read(which(b), (b.n * c * r * r * 4) as u64)
            .await?;
        Tensor::new(vec![b.n, c, r, r], data)
    }

    /// The current latent (awaitable: the browser's path).
    pub async fn read_latent(&mut self) -> Result<Tensor> {
        self.read_image_buffer(|b| &b.latent).await
    }

    /// The x0 predicted by the last step (awaitable).
    pub async fn read_x0(&mut self) -> Result<Tensor> {
        self.read_image_buffer(|b| &b.x0).await
    }

    /// Submit what is encoded and wait until the device has finished it (awaitable).
    pub async fn sync(&mut self) -> Result<()> {
        self.flush()?;
        let (tx, rx) = futures_channel::oneshot::channel();
        self.gpu.queue.on_submitted_work_done(move || {
            let _ = tx.send(());
        });
        #[cfg(not(target_arch = "wasm32"))]
        self.gpu.wait()?;
        rx.await
            .map_err(|_| Error::Backend("the device never finished (lost?)".into()))?;
        self.gpu.check()
    }

    /// The timestep embeddings of `t`, one row per image.
    fn temb(&self, t: impl IntoIterator<Item = f32>) -> Vec<f32> {
        let ch = self.plan.config.ch;
        t.into_iter()
            .flat_map(|ti| timestep_embedding(ti, ch))
            .collect()
    }

    /// The network output (awaitable).
    pub async fn forward_async(&mut self, x: &Tensor, t: &[f32]) -> Result<Tensor> {
        let (c, r) = (self.plan.config.in_channels, self.plan.config.resolution);
        let n = t.len();
        if x.shape != [n, c, r, r] {
            return Err(Error::Shape {
                what: "model input".into(),
                expected: vec![n, c, r, r],
                found: x.shape.clone(),
            });
        }
        let temb = self.temb(t.iter().copied());
        let (inp, tslot, out) = (self.plan.input, self.plan.temb, self.plan.output);
        let y = self
            .execute(n, &[(inp, &x.data), (tslot, &temb)], out)
            .await?;
        Tensor::new(vec![n, self.plan.config.out_ch, r, r], y)
    }

    /// Natively: prepare batch n now. In the browser it must have been awaited already.
    fn ready(&mut self, n: usize) -> Result<()> {
        if self.batch.as_ref().is_some_and(|b| b.n == n) {
            return Ok(());
        }
        #[cfg(not(target_arch = "wasm32"))]
        return pollster::block_on(self.prepare(n));
        #[cfg(target_arch = "wasm32")]
        Err(Error::Backend(format!(
            "batch {n} was not prepared (await prepare first)"
        )))
    }
}

/// Natively the trait's reads block on the device; in the browser use the async methods.
fn block_on<T>(f: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    #[cfg(not(target_arch = "wasm32"))]
    return pollster::block_on(f);
    #[cfg(target_arch = "wasm32")]
    {
        drop(f);
        Err(Error::Backend(
            "blocking GPU reads are not possible in the browser".into(),
        ))
    }
}

impl Backend for GpuBackend {
    fn describe(&self) -> String {
        let half = if self.half { ", f16 conv weights" } else { "" };
        let arith = match self.arith {
            Arith::F32 => String::new(),
            a => format!(", mixed precision: {}", a.name()),
        };
        let tune = match (self.forced, self.tuner.mode) {
            (Some(v), _) => format!("conv {}", v.name()),
            (None, Tune::Off) => "default kernels".into(),
            (None, Tune::Quick) => "tuned (quick)".into(),
            (None, Tune::Full) => "tuned (full)".into(),
        };
        format!("gpu: {}{half}{arith}, {tune}", describe(&self.gpu.info))
    }

    fn max_batch(&self) -> usize {
        self.max_batch
    }

    fn forward(&mut self, x: &Tensor, t: &[f32]) -> Result<Tensor> {
        block_on(self.forward_async(x, t))
    }

    fn start(&mut self, x: &Tensor, table: &[StepCoeffs], noise: NoiseKey) -> Result<()> {
        let (c, r) = (self.plan.config.in_channels, self.plan.config.resolution);
        let n = x.shape.first().copied().unwrap_or(0);
        if x.shape != [n, c, r, r] || n == 0 {
            return Err(Error::Shape {
                what: "initial latent".into(),
                expected: vec![n.max(1), c, r, r],
                found: x.shape.clone(),
            });
        }
        if self.plan.config.out_ch != c {
            return Err(Error::invalid(
                "model",
                format!(
                    "out_ch {} differs from in_channels {c}",
                    self.plan.config.out_ch
                ),
            ));
        }
        self.flush()?;
        self.traj = None;
        self.ready(n)?;
        let temb = self.temb(table.iter().map(|c| c.t));
        let b = self.batch.as_ref().expect("batch prepared");
        self.gpu
            .queue
            .write_buffer(&b.latent, 0, bytemuck::cast_slice(&x.data));
        let rows = ops::step::rows(table, noise, c * r * r, n, b.step.groups);
        let d = &self.gpu.device;
        let src = wgpu::BufferUsages::COPY_SRC;
        let steps = d.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("step table"),
            contents: bytemuck::cast_slice(&rows),
            usage: src,
        });
        let temb = d.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("temb table"),
            contents: bytemuck::cast_slice(&temb),
            usage: src,
        });
        let bytes = steps.size() + temb.size();
        self.traj = Some(Trajectory {
            steps,
            temb,
            len: table.len(),
            encoder: None,
            pending: 0,
            bytes,
        });
        self.gpu.check()
    }

    fn step(&mut self, k: usize) -> Result<()> {
        #[cfg(not(target_arch = "wasm32"))]
        let started = std::time::Instant::now();
        let (Some(t), Some(b)) = (self.traj.as_mut(), self.batch.as_ref()) else {
            return Err(Error::Backend("no trajectory started".into()));
        };
        if k >= t.len {
            return Err(Error::Backend(format!(
                "step {k} is past the table ({} steps)",
                t.len
            )));
        }
        let mut enc = t
            .encoder
            .take()
            .unwrap_or_else(|| self.gpu.device.create_command_encoder(&Default::default()));
        let su = std::mem::size_of::<ops::step::StepParams>() as u64;
        enc.copy_buffer_to_buffer(&t.steps, k as u64 * su, &b.cur, 0, su);
        let ch = self.plan.config.ch as u64;
        let tb = &b.bufs[self.buf_of[self.plan.temb]];
        for i in 0..b.n as u64 {
            enc.copy_buffer_to_buffer(&t.temb, k as u64 * ch * 4, tb, i * ch * 4, ch * 4);
        }
        let image = (self.plan.slots[self.plan.input].len() * b.n * 4) as u64;
        let input = &b.bufs[self.buf_of[self.plan.input]];
        enc.copy_buffer_to_buffer(&b.latent, 0, input, 0, image);
        encode::record(
            &mut enc.begin_compute_pass(&Default::default()),
            b.ops.iter().chain([&b.step]),
        );
        t.pending += 1;
        let submit = t.pending >= STEPS_PER_SUBMIT;
        if submit {
            self.gpu.queue.submit([enc.finish()]);
            t.pending = 0;
        } else {
            t.encoder = Some(enc);
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            self.host_time += started.elapsed();
        }
        if submit {
            // Keep at most one group in flight, so the host never races far ahead.
            #[cfg(not(target_arch = "wasm32"))]
            self.gpu.wait()?;
        }
        Ok(())
    }

    fn latent(&mut self) -> Result<Tensor> {
        block_on(self.read_latent())
    }

    fn x0(&mut self) -> Result<Tensor> {
        block_on(self.read_x0())
    }

    fn notes(&mut self) -> Vec<String> {
        let mut out = std::mem::take(&mut self.precision_notes);
        out.extend(self.take_warnings());
        let t = &mut self.tuner;
        if t.timed > t.announced {
            out.push(format!(
                "tuner: timed {} convolution kernel variants; the choices are cached{}",
                t.timed - t.announced,
                t.path().map_or(" for this process".into(), |p| format!(
                    " in {}",
                    p.display()
                ))
            ));
            t.announced = t.timed;
        }
        out
    }
}
