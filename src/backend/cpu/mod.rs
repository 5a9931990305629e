//! The CPU backend: runs the plan op by op on host memory. Convolutions and attention go
//! through GEMM. On native targets every op uses the rayon pool, even for one image: a
//! convolution splits its batch-folded columns and its channels (conv.rs), a group norm its
//! (image, group) pairs; attention and resampling run the images in parallel (or, for a
//! single image, attention's GEMMs are threaded).

pub mod attention;
pub mod conv;
pub mod conv_chan;
pub mod conv_direct;
pub mod conv_layout;
pub mod conv_wino;
pub mod fuse;
pub mod gemm;
pub mod group_norm;
pub mod linear;
pub mod resample;

#[cfg(not(target_arch = "wasm32"))]
use super::profile::LayerTime;
use super::{Backend, NoiseKey};
use crate::error::{Error, Result};
use crate::model::unet::timestep_embedding;
use crate::model::{Model, Op, Plan, View};
use crate::rng;
use crate::schedule::{apply_step, StepCoeffs};
use crate::tensor::Tensor;

/// Keep a batch's activations under this many bytes; bigger jobs are split by the sampler.
const MEMORY_BUDGET: usize = 2 << 30;

pub struct CpuBackend {
    /// The model's plan with the GroupNorms the direct convs absorb folded in (fuse.rs).
    plan: Plan,
    /// For each op, the GroupNorm it applies to its input.
    norms: Vec<Option<fuse::Norm>>,
    weights: Vec<Tensor>,
    /// 3×3 weights packed for the direct kernel, by parameter index, where it applies.
    packed: Vec<Option<conv_direct::Packed>>,
    buf_of: Vec<usize>,
    buf_len: Vec<usize>,
    bufs: Vec<Vec<f32>>,
    n: usize,
    latent: Vec<f32>,
    x0: Vec<f32>,
    table: Vec<StepCoeffs>,
    noise: NoiseKey,
}

fn threads() -> usize {
    #[cfg(not(target_arch = "wasm32"))]
    return rayon::current_num_threads();
    #[cfg(target_arch = "wasm32")]
    return 1;
}

/// Run `f` on a thread of the rayon pool. Called from outside it, every op's parallel loop
/// would hand its work to a sleeping worker and block until it is done: a wake-up per op,
/// which cost more than the whole of a 4×4 layer. From inside, a loop starts on this
/// thread at once and the other workers join it.
fn on_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    #[cfg(not(target_arch = "wasm32"))]
    return rayon::scope(|_| f());
    #[cfg(target_arch = "wasm32")]
    return f();
}

/// Run `f(image, chunk)` over the per-image chunks of `out`, in parallel when asked.
fn per_image<F>(out: &mut [f32], stride: usize, n: usize, parallel: bool, f: F)
where
    F: Fn(usize, &mut [f32]) + Sync + Send,
{
    #[cfg(not(target_arch = "wasm32"))]
    if parallel {
        use rayon::prelude::*;
        out[..n * stride]
            .par_chunks_mut(stride)
            .enumerate()
            .for_each(|(i, c)| f(i, c));
        return;
    }
    let _ = parallel;
    for (i, c) in out[..n * stride].chunks_mut(stride).enumerate() {
        f(i, c);
    }
}

/// GroupNorm statistics of every (image, group) of n images of `len` values each, at
/// `buf[i·stride + off..]`, computed in parallel.
fn norm_stats(buf: &[f32], stride: usize, off: usize, len: usize, n: usize) -> Vec<(f32, f64)> {
    let per = len / group_norm::GROUPS;
    let group = |k: usize| {
        let (i, g) = (k / group_norm::GROUPS, k % group_norm::GROUPS);
        group_norm::wide(group_norm::Stats(&buf[i * stride + off + g * per..][..per]))
    };
    let count = n * group_norm::GROUPS;
    #[cfg(not(target_arch = "wasm32"))]
    {
        use rayon::prelude::*;
        (0..count).into_par_iter().map(group).collect()
    }
    #[cfg(target_arch = "wasm32")]
    (0..count).map(group).collect()
}

impl CpuBackend {
    pub fn new(model: &Model) -> Self {
        Self::with_plan(model.plan.clone(), model.weights.tensors.clone())
    }

    /// Run any plan (the twin tests run single-op plans).
    pub fn with_plan(plan: Plan, weights: Vec<Tensor>) -> Self {
        let direct = |op: &Op| match *op {
            Op::Conv { k, .. } => conv_layout::fits_shape(k),
            _ => false,
        };
        let (plan, norms) = fuse::fold(&plan, &direct);
        let (buf_of, buf_len) = plan.assign_buffers();
        let mut packed: Vec<Option<conv_direct::Packed>> = weights.iter().map(|_| None).collect();
        for op in &plan.ops {
            if let Op::Conv {
                x, y, w, resample, ..
            } = *op
            {
                if direct(op) && packed[w].is_none() {
                    let (h, wd) = plan.slots[x.slot].hw();
                    let (ho, wo, pitch) = conv_layout::grid(h, wd, resample);
                    let kernel = if conv_wino::fits(resample, x.c, y.c, ho, wo) {
                        conv_direct::Kernel::Winograd
                    } else {
                        conv_direct::choose(y.c, ho, wo, pitch)
                    };
                    packed[w] = Some(conv_direct::pack_for(&weights[w].data, y.c, x.c, kernel));
                }
            }
        }
        CpuBackend {
            plan,
            norms,
            weights,
            packed,
            buf_of,
            buf_len,
            bufs: Vec::new(),
            n: 0,
            latent: Vec::new(),
            x0: Vec::new(),
            table: Vec::new(),
            noise: NoiseKey {
                seed: 0,
                first_sample: 0,
            },
        }
    }

    fn image_len(&self) -> usize {
        self.plan.slots[self.plan.input].len()
    }

    fn ensure(&mut self, n: usize) {
        if self.n != n {
            self.bufs = self.buf_len.iter().map(|&l| vec![0.0; l * n]).collect();
            self.n = n;
        }
    }

    /// The slice of view `v` for image `i` of buffer `buf`.
    fn view<'a>(&self, buf: &'a [f32], v: View, i: usize) -> &'a [f32] {
        let s = self.plan.slots[v.slot];
        let (h, w) = s.hw();
        let start = i * s.len() + v.c_off * h * w;
        &buf[start..start + v.c * h * w]
    }

    fn run_op(&mut self, index: usize, op: &Op, n: usize) {
        let parallel = n > 1 && threads() > 1;
        let out_slot = op.writes()[0];
        let ob = self.buf_of[out_slot];
        let mut out = std::mem::take(&mut self.bufs[ob]);
        let stride = self.plan.slots[out_slot].len();
        let this = &*self;
        let buf = |s: usize| this.bufs[this.buf_of[s]].as_slice();
        let w = |p: usize| this.weights[p].data.as_slice();
        // The part of an image's output chunk that a view covers.
        let part = |y: View| -> (usize, usize) {
            let (h, w) = this.plan.slots[y.slot].hw();
            (y.c_off * h * w, (y.c_off + y.c) * h * w)
        };
        match *op {
            Op::Linear {
                x, w: wi, b, swish, ..
            } => {
                let xb = &buf(x)[..n * this.plan.slots[x].len()];
                assert_eq!(w(wi).len(), w(b).len() * this.plan.slots[x].len());
                assert_eq!(stride, w(b).len(), "a linear's output slot is its features");
                linear::linear(xb, n, w(wi), w(b), swish, &mut out);
            }
            Op::GroupNorm {
                x,
                y,
                gamma,
                beta,
                swish,
            } => {
                let xb = buf(x.slot);
                let (h, ww) = this.plan.slots[x.slot].hw();
                let (a, e) = part(y);
                let len = (e - a) / group_norm::GROUPS;
                // Every (image, group) is independent: all of them go to the pool at once.
                let mut items: Vec<(usize, usize, &mut [f32])> = out[..n * stride]
                    .chunks_mut(stride)
                    .enumerate()
                    .flat_map(|(i, chunk)| {
                        chunk[a..e]
                            .chunks_mut(len)
                            .enumerate()
                            .map(move |(g, ys)| (i, g, ys))
                    })
                    .collect();
                let run = |(i, g, ys): &mut (usize, usize, &mut [f32])| {
                    let xs = &this.view(xb, x, *i)[*g * len..(*g + 1) * len];
                    group_norm::one_group(xs, h * ww, w(gamma), w(beta), *g, swish, ys);
                };
                #[cfg(not(target_arch = "wasm32"))]
                {
                    use rayon::prelude::*;
                    items.par_iter_mut().for_each(run);
                }
                #[cfg(target_arch = "wasm32")]
                items.iter_mut().for_each(run);
            }
            Op::Conv {
                x,
                y,
                w: wi,
                b,
                k,
                resample,
                temb,
                residual,
            } => {
                let (h, ww) = this.plan.slots[x.slot].hw();
                let place = |v: View| {
                    let s = this.plan.slots[v.slot];
                    (s.len(), v.c_off * s.hw().0 * s.hw().1)
                };
                let (x_stride, x_off) = place(x);
                let (y_stride, y_off) = place(y);
                let fused = this.norms[index].map(|nm| group_norm::Fused {
                    gamma: w(nm.gamma),
                    beta: w(nm.beta),
                    swish: nm.swish,
                    stats: norm_stats(buf(x.slot), x_stride, x_off, x.c * h * ww, n),
                });
                let job = conv::ConvJob {
                    n,
                    x: buf(x.slot),
                    x_stride,
                    x_off,
                    ci: x.c,
                    h,
                    w: ww,
                    weight: w(wi),
                    k,
                    r: resample,
                    bias: w(b),
                    temb: temb.map(|t| (buf(t), this.plan.slots[t].len())),
                    residual: residual.map(|r| {
                        let (s, o) = place(r);
                        (buf(r.slot), s, o)
                    }),
                    y_stride,
                    y_off,
                    packed: this.packed[wi].as_ref(),
                    norm: fused.as_ref(),
                };
                conv::conv2d_batch(&job, &mut out, threads());
            }
            Op::Attention { q, k, v, y } => {
                let (h, ww) = this.plan.slots[q.slot].hw();
                let operand = |v: View| {
                    let s = this.plan.slots[v.slot];
                    attention::Operand {
                        data: buf(v.slot),
                        stride: s.len(),
                        off: v.c_off * s.hw().0 * s.hw().1,
                    }
                };
                let job = attention::AttnJob {
                    n,
                    c: q.c,
                    hw: h * ww,
                    q: operand(q),
                    k: operand(k),
                    v: operand(v),
                    y_stride: stride,
                    y_off: part(y).0,
                };
                attention::attention_batch(&job, &mut out, threads());
            }
            Op::AvgPool { x, y } | Op::Upsample { x, y } => {
                let xb = buf(x.slot);
                let (h, ww) = this.plan.slots[x.slot].hw();
                let up = matches!(op, Op::Upsample { .. });
                per_image(&mut out, stride, n, parallel, |i, chunk| {
                    let (a, e) = part(y);
                    let xv = this.view(xb, x, i);
                    if up {
                        resample::upsample_nearest(xv, x.c, h, ww, &mut chunk[a..e]);
                    } else {
                        resample::avg_pool(xv, x.c, h, ww, &mut chunk[a..e]);
                    }
                });
            }
        }
        self.bufs[ob] = out;
    }

    /// Run the plan on n images: `inputs` fill slots, `output` is read back.
    pub fn execute(&mut self, n: usize, inputs: &[(usize, &[f32])], output: usize) -> Vec<f32> {
        self.execute_with(n, inputs, output, &mut |_| {})
    }

    /// `execute`, calling `after(i)` when op i is done.
    fn execute_with(
        &mut self,
        n: usize,
        inputs: &[(usize, &[f32])],
        output: usize,
        after: &mut (dyn FnMut(usize) + Send),
    ) -> Vec<f32> {
        self.ensure(n);
        for (slot, data) in inputs {
            let len = self.plan.slots[*slot].len() * n;
            self.bufs[self.buf_of[*slot]][..len].copy_from_slice(data);
        }
        let ops = std::mem::take(&mut self.plan.ops);
        on_pool(|| {
            for (i, op) in ops.iter().enumerate() {
                self.run_op(i, op, n);
                after(i);
            }
        });
        self.plan.ops = ops;
        let ol = self.plan.slots[output].len();
        self.bufs[self.buf_of[output]][..ol * n].to_vec()
    }

    /// The network on n images at timesteps t.
    fn run(&mut self, x: &[f32], t: &[f32], after: &mut (dyn FnMut(usize) + Send)) -> Vec<f32> {
        let ch = self.plan.config.ch;
        let temb: Vec<f32> = t
            .iter()
            .flat_map(|&ti| timestep_embedding(ti, ch))
            .collect();
        let (inp, ts, out) = (self.plan.input, self.plan.temb, self.plan.output);
        self.execute_with(t.len(), &[(inp, x), (ts, &temb)], out, after)
    }

    /// One forward pass with the wall time of every op, in plan order.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn profile(&mut self, x: &Tensor, t: &[f32]) -> Vec<LayerTime> {
        let mut ms = Vec::with_capacity(self.plan.ops.len());
        let mut last = std::time::Instant::now();
        self.run(&x.data, t, &mut |_| {
            ms.push(last.elapsed().as_secs_f64() * 1e3);
            last = std::time::Instant::now();
        });
        self.plan
            .ops
            .iter()
            .zip(ms)
            .map(|(op, ms)| LayerTime {
                family: op.family(),
                layer: self.plan.layer_name(op),
                variant: match *op {
                    Op::Conv { w, .. } => match self.packed[w].as_ref().map(|p| p.kernel) {
                        Some(conv_direct::Kernel::Pixels) => "pixel vectors".into(),
                        Some(conv_direct::Kernel::Channels) => "channel vectors".into(),
                        Some(conv_direct::Kernel::Winograd) => "winograd".into(),
                        None => "gemm".into(),
                    },
                    _ => String::new(),
                },
                dispatches: 1,
                ms,
                gflop: 2.0 * (self.plan.macs(op) * t.len() as u64) as f64 / 1e9,
            })
            .collect()
    }

    fn image_shape(&self, n: usize, c: usize) -> Vec<usize> {
        let r = self.plan.config.resolution;
        vec![n, c, r, r]
    }
}

impl Backend for CpuBackend {
    fn describe(&self) -> String {
        format!("cpu ({} threads)", threads())
    }

    fn max_batch(&self) -> usize {
        let per_image = 4 * self.buf_len.iter().sum::<usize>();
        (MEMORY_BUDGET / per_image.max(1)).max(1)
    }

    fn forward(&mut self, x: &Tensor, t: &[f32]) -> Result<Tensor> {
        let c = self.plan.config.in_channels;
        let want = self.image_shape(t.len(), c);
        if x.shape != want {
            return Err(Error::Shape {
                what: "model input".into(),
                expected: want,
                found: x.shape.clone(),
            });
        }
        let y = self.run(&x.data, t, &mut |_| {});
        Tensor::new(self.image_shape(t.len(), self.plan.config.out_ch), y)
    }

    fn start(&mut self, x: &Tensor, table: &[StepCoeffs], noise: NoiseKey) -> Result<()> {
        let n = x.shape.first().copied().unwrap_or(0);
        let want = self.image_shape(n, self.plan.config.in_channels);
        if x.shape != want || n == 0 {
            return Err(Error::Shape {
                what: "initial latent".into(),
                expected: want,
                found: x.shape.clone(),
            });
        }
        if self.plan.config.out_ch != self.plan.config.in_channels {
            return Err(Error::invalid(
                "model",
                format!(
                    "out_ch {} differs from in_channels {}: the output cannot be a noise prediction",
                    self.plan.config.out_ch, self.plan.config.in_channels
                ),
            ));
        }
        self.latent = x.data.clone();
        self.x0 = vec![0.0; x.data.len()];
        self.table = table.to_vec();
        self.noise = noise;
        Ok(())
    }

    fn step(&mut self, k: usize) -> Result<()> {
        let c = *self
            .table
            .get(k)
            .ok_or_else(|| Error::Backend(format!("step {k} is past the table")))?;
        let per = self.image_len();
        let n = self.latent.len() / per;
        let x = std::mem::take(&mut self.latent);
        let m = self.run(&x, &vec![c.t; n], &mut |_| {});
        self.latent = x;
        let z = (c.c_z != 0.0).then(|| {
            rng::normal_batch(
                self.noise.seed,
                rng::stream_step(k),
                self.noise.first_sample,
                n,
                per,
            )
        });
        apply_step(&c, &mut self.latent, &m, z.as_deref(), &mut self.x0);
        Ok(())
    }

    fn latent(&mut self) -> Result<Tensor> {
        let n = self.latent.len() / self.image_len();
        Tensor::new(
            self.image_shape(n, self.plan.config.in_channels),
            self.latent.clone(),
        )
    }

    fn x0(&mut self) -> Result<Tensor> {
        let n = self.x0.len() / self.image_len();
        Tensor::new(
            self.image_shape(n, self.plan.config.in_channels),
            self.x0.clone(),
        )
    }
}
