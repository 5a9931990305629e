//! The whole model on the GPU: against the PyTorch fixtures, the CPU backend and the host noise.

use super::*;

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
