//! The WGSL kernels against their CPU twins, and the GPU backend against the PyTorch fixtures
//! and the CPU backend. CI runs these on lavapipe (Vulkan on the CPU). Without any adapter they
//! are skipped, unless DDIM_REQUIRE_GPU is set (CI sets it), in which case they fail.

mod common;

use common::{
    assert_close, fixture, get, max_rel, randn, read_tensors, sample_uniform, shipped_model,
};
use ddim_webgpu::backend::cpu::CpuBackend;
use ddim_webgpu::backend::gpu::device::Gpu;
use ddim_webgpu::backend::gpu::ops::conv::{variants, ConvShape, ConvVariant};
use ddim_webgpu::backend::gpu::ops::tiles::{CONV_TILES, SPLITS};
use ddim_webgpu::backend::gpu::tune::Tune;
use ddim_webgpu::backend::gpu::GpuBackend;
use ddim_webgpu::backend::{Backend, NoiseKey};
use ddim_webgpu::model::config::ModelConfig;
use ddim_webgpu::model::Param;
use ddim_webgpu::model::{load_model, random_model, Config, Model, Op, Plan, Resample, Slot, View};
use ddim_webgpu::rng;
use ddim_webgpu::sampler::{self, Job};
use ddim_webgpu::schedule::{step_table, timesteps, Sampler, Skip, StepCoeffs, StepOptions};
use ddim_webgpu::Tensor;

fn gpu() -> Option<Gpu> {
    match pollster::block_on(Gpu::adapter()) {
        Some(a) => Some(pollster::block_on(Gpu::open(a)).unwrap()),
        None if std::env::var_os("DDIM_REQUIRE_GPU").is_some() => {
            panic!("DDIM_REQUIRE_GPU is set but wgpu found no adapter")
        }
        None => {
            eprintln!("skipped: no GPU adapter");
            None
        }
    }
}

fn dummy_config() -> ModelConfig {
    ModelConfig {
        ch: 32,
        out_ch: 3,
        ch_mult: vec![1],
        num_res_blocks: 1,
        attn_resolutions: vec![],
        in_channels: 3,
        resolution: 8,
        resamp_with_conv: true,
    }
}

/// One op over hand-made slots; every slot the op reads is filled with noise, and the slot it
/// writes is compared between the two backends.
fn twin(
    gpu: Gpu,
    what: &str,
    slots: Vec<Slot>,
    params: Vec<Vec<usize>>,
    op: Op,
    n: usize,
    tol: f32,
) -> Gpu {
    twin_with(gpu, what, slots, params, op, n, tol, None, false)
}

/// `twin`, with the convolution kernel forced (None: the adapter's default), and optionally
/// with every weight rounded to f16 (so the GPU may store them as f16, losslessly).
#[allow(clippy::too_many_arguments)]
fn twin_with(
    gpu: Gpu,
    what: &str,
    slots: Vec<Slot>,
    params: Vec<Vec<usize>>,
    op: Op,
    n: usize,
    tol: f32,
    conv: Option<ConvVariant>,
    f16: bool,
) -> Gpu {
    let out = op.writes()[0];
    let params: Vec<Param> = params
        .into_iter()
        .enumerate()
        .map(|(i, shape)| Param {
            name: format!("p{i}"),
            shape,
        })
        .collect();
    let weights: Vec<Tensor> = params
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let numel: usize = p.shape.iter().product();
            let fan = p
                .shape
                .get(1..)
                .map_or(1, |s| s.iter().product::<usize>())
                .max(1);
            let v = randn(5, 1000 + i as u32, numel)
                .iter()
                .map(|x| x / (fan as f32).sqrt())
                .map(|x| {
                    if f16 {
                        half::f16::from_f32(x).to_f32()
                    } else {
                        x
                    }
                })
                .collect();
            Tensor::new(p.shape.clone(), v).unwrap()
        })
        .collect();
    let plan = Plan {
        config: dummy_config(),
        params,
        slots: slots.clone(),
        ops: vec![op.clone()],
        input: 0,
        temb: 0,
        output: out,
    };
    let inputs: Vec<(usize, Vec<f32>)> = op
        .reads()
        .into_iter()
        .map(|s| (s, randn(5, s as u32, slots[s].len() * n)))
        .collect();
    let refs: Vec<(usize, &[f32])> = inputs.iter().map(|(s, v)| (*s, v.as_slice())).collect();
    let want = CpuBackend::with_plan(plan.clone(), weights.clone()).execute(n, &refs, out);
    let has_f16 = gpu.features.contains(wgpu::Features::SHADER_F16);
    let mut g = pollster::block_on(GpuBackend::with_plan(gpu, plan, &weights)).unwrap();
    let is_conv = matches!(op, Op::Conv { .. });
    assert_eq!(
        g.half_weights(),
        f16 && has_f16 && is_conv,
        "{what}: f16 weights"
    );
    g.set_conv(conv);
    let got = pollster::block_on(g.execute(n, &refs, out)).unwrap();
    // Compare only the channels the op wrote.
    let View { c_off, c, .. } = match op {
        Op::Conv { y, .. }
        | Op::GroupNorm { y, .. }
        | Op::Attention { y, .. }
        | Op::AvgPool { y, .. }
        | Op::Upsample { y, .. } => y,
        Op::Linear { y, .. } => View {
            slot: y,
            c_off: 0,
            c: slots[y].len(),
        },
    };
    let (h, w) = slots[out].hw();
    let per = slots[out].len();
    for i in 0..n {
        let r = i * per + c_off * h * w..i * per + (c_off + c) * h * w;
        let e = max_rel(&got[r.clone()], &want[r]);
        assert!(e <= tol, "{what}: image {i}: rel err {e:e}");
    }
    eprintln!("{what}: ok");
    g.into_gpu()
}

fn map(c: usize, h: usize, w: usize) -> Slot {
    Slot::Map { c, h, w }
}

/// A conv as the skip concatenation uses it: reading channels 2.. of a wider slot, writing
/// channels 3.. of another, with a temb vector and a residual. Slot 2 is the output's size.
fn offset_conv(ci: usize, co: usize, h: usize, w: usize, k: usize, r: Resample) -> (Vec<Slot>, Op) {
    let (ho, wo) = match r {
        Resample::Up => (2 * h, 2 * w),
        Resample::Down => (h / 2, w / 2),
        Resample::None => (h, w),
    };
    let slots = vec![
        map(ci + 2, h, w),
        Slot::Vector { len: co },
        map(co, ho, wo),
        map(co + 3, ho, wo),
    ];
    let op = Op::Conv {
        x: View {
            slot: 0,
            c_off: 2,
            c: ci,
        },
        y: View {
            slot: 3,
            c_off: 3,
            c: co,
        },
        w: 0,
        b: 1,
        k,
        resample: r,
        temb: Some(1),
        residual: Some(View {
            slot: 2,
            c_off: 0,
            c: co,
        }),
    };
    (slots, op)
}

/// Every variant the tuner may pick for a conv of this shape on this adapter.
fn offered(g: &Gpu, op: &Op, slots: &[Slot], n: usize) -> Vec<ConvVariant> {
    let plan = Plan {
        config: dummy_config(),
        params: vec![],
        slots: slots.to_vec(),
        ops: vec![op.clone()],
        input: 0,
        temb: 0,
        output: 0,
    };
    variants(&ConvShape::of(&plan, op, n).unwrap(), &g.limits)
}

/// Every kernel variant the tuner can choose, held to the CPU twin: on odd shapes, reading
/// and writing at channel offsets with temb and a residual, and at batch 3, so that the
/// GEMM's batch-folded columns cross image boundaries inside a tile. A faster wrong kernel
/// must be impossible to pick.
#[test]
fn every_conv_variant_matches_its_twin() {
    let Some(mut g) = gpu() else { return };
    let mut checked = 0;
    for &(ci, co, h, w) in &[
        (3, 32, 7, 5),
        (32, 64, 8, 8),
        (96, 33, 6, 4),
        (5, 7, 1, 1),
        (64, 130, 4, 4),
    ] {
        for &(k, r) in &[
            (3, Resample::None),
            (1, Resample::None),
            (3, Resample::Down),
            (3, Resample::Up),
        ] {
            if r == Resample::Down && (h < 2 || w < 2 || h % 2 == 1 || w % 2 == 1) {
                continue;
            }
            let (slots, op) = offset_conv(ci, co, h, w, k, r);
            let n = 3;
            let all = offered(&g, &op, &slots, n);
            assert!(all.len() > 1, "only {all:?} offered");
            for v in all {
                let what = format!("conv {ci}->{co} {h}x{w} k{k} {r:?} {}", v.name());
                let params = vec![vec![co, ci, k, k], vec![co]];
                let op = op.clone();
                g = twin_with(g, &what, slots.clone(), params, op, n, 1e-5, Some(v), false);
                checked += 1;
            }
        }
    }
    eprintln!("{checked} conv cases");
}

/// A plain conv (no offsets, temb or residual) with the adapter's default kernel.
#[test]
fn plain_conv_matches_its_twin() {
    let Some(mut g) = gpu() else { return };
    for &(ci, co, h, w, k, r) in &[
        (3, 32, 7, 5, 3, Resample::None),
        (64, 32, 6, 10, 1, Resample::None),
        (32, 64, 8, 8, 3, Resample::Down),
        (33, 17, 3, 4, 3, Resample::Up),
    ] {
        // Slot 2 of the offset case has the output's size.
        let (slots, _) = offset_conv(ci, co, h, w, k, r);
        let plain = Op::Conv {
            x: View {
                slot: 0,
                c_off: 0,
                c: ci,
            },
            y: View {
                slot: 1,
                c_off: 0,
                c: co,
            },
            w: 0,
            b: 1,
            k,
            resample: r,
            temb: None,
            residual: None,
        };
        g = twin(
            g,
            &format!("plain conv {ci}->{co} {h}x{w} k{k} {r:?}"),
            vec![map(ci, h, w), slots[2]],
            vec![vec![co, ci, k, k], vec![co]],
            plain,
            2,
            1e-5,
        );
    }
}

/// With shader-f16 and weights that are exact f16 values, the convs read f16 weights.
#[test]
fn f16_conv_weights_match_the_twin() {
    let Some(mut g) = gpu() else { return };
    if !g.features.contains(wgpu::Features::SHADER_F16) {
        eprintln!("skipped: the adapter has no shader-f16");
        return;
    }
    let kinds = [
        ConvVariant::Direct,
        ConvVariant::Gemm {
            tile: CONV_TILES[0],
            split: 1,
        },
        ConvVariant::Gemm {
            tile: CONV_TILES[5],
            split: SPLITS[1],
        },
    ];
    for kind in kinds {
        for &(ci, co, h, w, k, r) in &[
            (3, 32, 7, 5, 3, Resample::None),
            (33, 17, 6, 4, 3, Resample::Down),
            (64, 96, 8, 8, 3, Resample::Up),
            (5, 7, 3, 3, 1, Resample::None),
        ] {
            let (slots, op) = offset_conv(ci, co, h, w, k, r);
            if !offered(&g, &op, &slots, 2).contains(&kind) {
                continue;
            }
            let what = format!("f16 conv {ci}->{co} {h}x{w} k{k} {r:?} {}", kind.name());
            let params = vec![vec![co, ci, k, k], vec![co]];
            g = twin_with(g, &what, slots, params, op, 2, 1e-5, Some(kind), true);
        }
    }
}

#[test]
fn norm_linear_attention_resample_match_their_twins() {
    let Some(mut g) = gpu() else { return };
    for &(c, h, w) in &[(32, 7, 5), (64, 8, 8), (96, 17, 1), (256, 4, 4)] {
        for swish in [false, true] {
            let op = Op::GroupNorm {
                x: View {
                    slot: 0,
                    c_off: 0,
                    c,
                },
                y: View {
                    slot: 1,
                    c_off: 0,
                    c,
                },
                gamma: 0,
                beta: 1,
                swish,
            };
            g = twin(
                g,
                &format!("group norm {c} {h}x{w} swish {swish}"),
                vec![map(c, h, w), map(c, h, w)],
                vec![vec![c], vec![c]],
                op,
                2,
                2e-5,
            );
        }
    }
    for &(ni, no, swish) in &[(128, 512, true), (37, 5, false)] {
        let op = Op::Linear {
            x: 0,
            y: 1,
            w: 0,
            b: 1,
            swish,
        };
        g = twin(
            g,
            &format!("linear {ni}->{no}"),
            vec![Slot::Vector { len: ni }, Slot::Vector { len: no }],
            vec![vec![no, ni], vec![no]],
            op,
            3,
            1e-5,
        );
    }
    for &(c, h, w) in &[(32, 3, 3), (64, 8, 8), (96, 5, 7)] {
        let v = |s| View {
            slot: s,
            c_off: 0,
            c,
        };
        let op = Op::Attention {
            q: v(0),
            k: v(1),
            v: v(2),
            y: v(3),
        };
        g = twin(
            g,
            &format!("attention {c} {h}x{w}"),
            vec![map(c, h, w); 4],
            vec![],
            op,
            2,
            1e-5,
        );
    }
    let op = Op::AvgPool {
        x: View {
            slot: 0,
            c_off: 0,
            c: 32,
        },
        y: View {
            slot: 1,
            c_off: 0,
            c: 32,
        },
    };
    g = twin(
        g,
        "avg pool",
        vec![map(32, 6, 4), map(32, 3, 2)],
        vec![],
        op,
        2,
        1e-6,
    );
    let op = Op::Upsample {
        x: View {
            slot: 0,
            c_off: 0,
            c: 32,
        },
        y: View {
            slot: 1,
            c_off: 0,
            c: 32,
        },
    };
    twin(
        g,
        "upsample",
        vec![map(32, 3, 5), map(32, 6, 10)],
        vec![],
        op,
        2,
        0.0,
    );
}

fn tiny(name: &str) -> Model {
    load_model(&fixture(&format!("{name}/model.safetensors")), None).unwrap()
}

#[test]
fn step_noise_matches_the_host_generator() {
    let Some(g) = gpu() else { return };
    let model = tiny("tiny");
    let mut be = pollster::block_on(GpuBackend::with_plan(
        g,
        model.plan.clone(),
        &model.weights.tensors,
    ))
    .unwrap();
    // A step whose result is the noise alone.
    let only_z = StepCoeffs {
        c_z: 1.0,
        ..Default::default()
    };
    let n = 3;
    let x = Tensor::zeros(vec![n, 3, 16, 16]);
    let key = NoiseKey {
        seed: 0x1234_5678_9abc,
        first_sample: 5,
    };
    be.start(&x, &[only_z, only_z], key).unwrap();
    be.step(0).unwrap();
    be.step(1).unwrap();
    let got = be.latent().unwrap();
    let want = rng::normal_batch(key.seed, rng::stream_step(1), 5, n, 768);
    let d = got
        .data
        .iter()
        .zip(&want)
        .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(d < 2e-5, "GPU noise differs from the host's by {d}");
}

#[test]
fn gpu_matches_pytorch_on_the_fixtures() {
    let Some(mut g) = gpu() else { return };
    for name in ["tiny", "tiny_odd"] {
        let model = tiny(name);
        let r = read_tensors(&format!("{name}/ref.safetensors"));
        let mut be = pollster::block_on(GpuBackend::with_plan(
            g,
            model.plan.clone(),
            &model.weights.tensors,
        ))
        .unwrap();
        let x = get(&r, "x");
        // The adapter's default, the direct kernel and a tiled GEMM with split-K.
        let gemm = ConvVariant::Gemm {
            tile: CONV_TILES[5],
            split: 2,
        };
        for kind in [None, Some(ConvVariant::Direct), Some(gemm)] {
            be.set_conv(kind);
            for (key, t) in [
                ("eps_t0", [0.0, 0.0]),
                ("eps_t999", [999.0, 999.0]),
                ("eps_mixed", [17.0, 903.0]),
            ] {
                assert_close(
                    &format!("gpu {name} {key} {kind:?}"),
                    &be.forward(&x, &t).unwrap(),
                    &get(&r, key),
                    1e-4,
                );
            }
        }
        let d = &model.config.diffusion;
        let sched = d.schedule().unwrap();
        let xt = get(&r, "xT");
        let (c, res) = (
            model.config.model.in_channels,
            model.config.model.resolution,
        );
        for (key, skip, clip) in [
            ("sample_uniform_s10", Skip::Uniform, None),
            ("sample_quad_s10", Skip::Quad, None),
            ("sample_leading_clip_s10", Skip::Leading, Some(1.0)),
        ] {
            let seq = timesteps(skip, d.num_timesteps, 10, 0).unwrap();
            let table = step_table(
                &sched,
                &seq,
                &StepOptions {
                    clip,
                    ..Default::default()
                },
            )
            .unwrap();
            let job = Job {
                table: &table,
                seed: 0,
                first: 0,
                n: 2,
                init: Some(&xt),
                batch: 2,
                keep_x0: false,
            };
            let out = sampler::run(&mut be, &job, c, res, &mut |_| Ok(())).unwrap();
            assert_close(
                &format!("gpu {name} {key}"),
                &out.samples,
                &get(&r, key),
                1e-3,
            );
        }
        g = be.into_gpu();
    }
}

#[test]
fn same_seed_same_samples_on_cpu_and_gpu() {
    let Some(g) = gpu() else { return };
    let model = tiny("tiny");
    let mut gb = pollster::block_on(GpuBackend::with_plan(
        g,
        model.plan.clone(),
        &model.weights.tensors,
    ))
    .unwrap();
    let mut cb = CpuBackend::new(&model);
    let d = &model.config.diffusion;
    let sched = d.schedule().unwrap();
    let seq = timesteps(Skip::Uniform, d.num_timesteps, 10, 0).unwrap();
    for (what, opt) in [
        (
            "eta 1",
            StepOptions {
                eta: 1.0,
                ..Default::default()
            },
        ),
        (
            "ddpm",
            StepOptions {
                sampler: Sampler::Ddpm,
                ..Default::default()
            },
        ),
        (
            "eta 0.5 clip",
            StepOptions {
                eta: 0.5,
                clip: Some(1.0),
                ..Default::default()
            },
        ),
    ] {
        let table = step_table(&sched, &seq, &opt).unwrap();
        let job = Job {
            table: &table,
            seed: 9,
            first: 4,
            n: 3,
            init: None,
            batch: 3,
            keep_x0: true,
        };
        let a = sampler::run(&mut cb, &job, 3, 16, &mut |_| Ok(())).unwrap();
        let b = sampler::run(&mut gb, &job, 3, 16, &mut |_| Ok(())).unwrap();
        assert_close(&format!("{what}: samples"), &b.samples, &a.samples, 1e-3);
        assert_close(
            &format!("{what}: last x0"),
            &b.x0_seq[9],
            &a.x0_seq[9],
            1e-3,
        );
    }
}

#[test]
fn shipped_model_samples_the_same_on_gpu() {
    let Some(g) = gpu() else { return };
    let model = shipped_model();
    let has_f16 = g.features.contains(wgpu::Features::SHADER_F16);
    let mut gb = pollster::block_on(GpuBackend::with_plan(
        g,
        model.plan.clone(),
        &model.weights.tensors,
    ))
    .unwrap();
    // Stored as f16, so with shader-f16 the convs read f16 weights.
    assert_eq!(gb.half_weights(), has_f16);
    let a = sample_uniform(&mut CpuBackend::new(&model), &model, 3, 5, 2);
    let b = sample_uniform(&mut gb, &model, 3, 5, 2);
    assert_close("emoji32 samples", &b, &a, 1e-3);
}

#[test]
fn cifar10_sized_model_matches_the_cpu() {
    let Some(g) = gpu() else { return };
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tools/configs/cifar10.yml"
    ))
    .unwrap();
    let cfg: Config = ddim_webgpu::model::parse_config(&text, "cifar10.yml", None).unwrap();
    let model = random_model(cfg, 3);
    assert_eq!(model.plan.param_count(), 35_746_307);
    let x = ddim_webgpu::sampler::initial_noise(1, 0, 1, 3, 32);
    let want = CpuBackend::new(&model).forward(&x, &[421.0]).unwrap();
    let mut be = pollster::block_on(GpuBackend::with_plan(
        g,
        model.plan.clone(),
        &model.weights.tensors,
    ))
    .unwrap();
    assert_close(
        "cifar10 eps",
        &be.forward(&x, &[421.0]).unwrap(),
        &want,
        1e-4,
    );
}

/// The tuner on a one-conv plan: it times every offered variant once, stores the fastest,
/// reuses a stored choice without timing (even one written by hand), and never trusts a
/// corrupt or foreign cache file: it warns, re-tunes and replaces the file.
#[test]
fn tuner_keeps_its_choices_and_distrusts_bad_caches() {
    let Some(mut g) = gpu() else { return };
    let dir = std::env::temp_dir().join(format!("ddim-tune-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let cache = dir.join("tune.json");
    let (slots, op) = offset_conv(32, 48, 8, 6, 3, Resample::None);
    let n = 2;
    let offered = offered(&g, &op, &slots, n);
    let plan = Plan {
        config: dummy_config(),
        params: vec![
            Param {
                name: "conv.weight".into(),
                shape: vec![48, 32, 3, 3],
            },
            Param {
                name: "conv.bias".into(),
                shape: vec![48],
            },
        ],
        slots: slots.clone(),
        ops: vec![op.clone()],
        input: 0,
        temb: 0,
        output: 3,
    };
    let weights = vec![
        Tensor::new(vec![48, 32, 3, 3], randn(6, 1, 48 * 32 * 9)).unwrap(),
        Tensor::new(vec![48], randn(6, 2, 48)).unwrap(),
    ];
    let inputs: Vec<(usize, Vec<f32>)> = op
        .reads()
        .into_iter()
        .map(|s| (s, randn(7, s as u32, slots[s].len() * n)))
        .collect();
    let refs: Vec<(usize, &[f32])> = inputs.iter().map(|(s, v)| (*s, v.as_slice())).collect();
    let want = CpuBackend::with_plan(plan.clone(), weights.clone()).execute(n, &refs, 3);
    // (how the choice was made, its variant, variants timed, warnings), after one forward.
    let run = |g: Gpu| -> (Gpu, &'static str, ConvVariant, usize, Vec<String>) {
        let mut be = pollster::block_on(GpuBackend::with_plan(g, plan.clone(), &weights)).unwrap();
        be.set_tuning(Tune::Quick, Some(cache.clone()));
        let got = pollster::block_on(be.execute(n, &refs, 3)).unwrap();
        let e = max_rel(&got, &want);
        assert!(e <= 1e-5, "tuned conv: rel err {e:e}");
        let c = be.choices()[0].clone();
        let (timed, warnings) = (be.variants_timed(), be.take_warnings());
        (be.into_gpu(), c.how, c.variant, timed, warnings)
    };
    let stored = |cache: &std::path::Path| -> (String, String) {
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(cache).unwrap()).unwrap();
        let e = v["entries"].as_object().unwrap();
        assert_eq!(e.len(), 1, "{v}");
        let (k, val) = e.iter().next().unwrap();
        (k.clone(), val.as_str().unwrap().to_string())
    };

    let (g1, how, tuned, timed, warnings) = run(g);
    g = g1;
    assert_eq!((how, timed), ("tuned", offered.len()), "{warnings:?}");
    let (key, name) = stored(&cache);
    assert_eq!(name, tuned.name());

    let (g1, how, v, timed, _) = run(g);
    g = g1;
    assert_eq!((how, v, timed), ("cached", tuned, 0));

    // A choice written by hand is obeyed as it is, untimed.
    let other = *offered.iter().find(|v| **v != tuned).unwrap();
    let file = serde_json::json!({"ddim_webgpu_tune": 1, "entries": {key.clone(): other.name()}});
    std::fs::write(&cache, file.to_string()).unwrap();
    let (g1, how, v, timed, _) = run(g);
    g = g1;
    assert_eq!((how, v, timed), ("cached", other, 0));

    for (bad, says) in [
        ("{ not json".to_string(), "not a tune cache"),
        (
            serde_json::json!({"ddim_webgpu_tune": 99, "entries": {key.clone(): other.name()}})
                .to_string(),
            "format 99",
        ),
        (
            serde_json::json!({"ddim_webgpu_tune": 1, "entries": {key.clone(): "gemm 7x7x7/7x7"}})
                .to_string(),
            "not a variant this build offers",
        ),
    ] {
        std::fs::write(&cache, bad).unwrap();
        let (g1, how, _, timed, warnings) = run(g);
        g = g1;
        assert_eq!((how, timed), ("tuned", offered.len()), "{says}");
        assert!(
            warnings.iter().any(|w| w.contains(says)),
            "{says}: {warnings:?}"
        );
        assert_eq!(stored(&cache).0, key, "{says}: the file is replaced");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
