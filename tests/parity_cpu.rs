//! The CPU backend against the PyTorch reference (tools/make_fixtures.py): eps at several t,
//! and whole η=0 trajectories for the uniform, quad and clipped leading sequences.

mod common;

use common::{assert_close, fixture, get, read_tensors};
use ddim_webgpu::backend::cpu::CpuBackend;
use ddim_webgpu::backend::Backend;
use ddim_webgpu::model::{load_model, model_from_bytes, Model};
use ddim_webgpu::safetensors::{serialize, Dtype};
use ddim_webgpu::sampler::{self, Job};
use ddim_webgpu::schedule::{step_table, timesteps, Skip, StepOptions};
use ddim_webgpu::Tensor;

const EPS_TOL: f32 = 1e-4;
const SAMPLE_TOL: f32 = 1e-3;

fn load(name: &str) -> Model {
    load_model(&fixture(&format!("{name}/model.safetensors")), None).unwrap()
}

fn check_eps(name: &str, model: &Model, tol: f32) {
    let r = read_tensors(&format!("{name}/ref.safetensors"));
    let x = get(&r, "x");
    let mut be = CpuBackend::new(model);
    for (key, t) in [
        ("eps_t0", [0.0, 0.0]),
        ("eps_t1", [1.0, 1.0]),
        ("eps_t500", [500.0, 500.0]),
        ("eps_t999", [999.0, 999.0]),
        ("eps_mixed", [17.0, 903.0]),
    ] {
        let got = be.forward(&x, &t).unwrap();
        assert_close(&format!("{name} {key}"), &got, &get(&r, key), tol);
    }
}

fn sample(
    model: &Model,
    skip: Skip,
    steps: usize,
    clip: Option<f64>,
    keep_x0: bool,
) -> sampler::Output {
    let d = &model.config.diffusion;
    let sched = d.schedule().unwrap();
    let seq = timesteps(skip, d.num_timesteps, steps, 0).unwrap();
    let opt = StepOptions {
        clip,
        ..Default::default()
    };
    let table = step_table(&sched, &seq, &opt).unwrap();
    let name = model.source.clone();
    let dir = std::path::Path::new(&name).parent().unwrap();
    let xt =
        ddim_webgpu::npy::parse_f32(&std::fs::read(dir.join("xT.npy")).unwrap(), "xT.npy").unwrap();
    let mut be = CpuBackend::new(model);
    let m = &model.config.model;
    let job = Job {
        table: &table,
        seed: 0,
        first: 0,
        n: 2,
        init: Some(&xt),
        batch: 2,
        keep_x0,
    };
    sampler::run(&mut be, &job, m.in_channels, m.resolution, &mut |_| Ok(())).unwrap()
}

#[test]
fn eps_matches_pytorch() {
    for name in ["tiny", "tiny_odd"] {
        check_eps(name, &load(name), EPS_TOL);
    }
}

#[test]
fn diffusers_folder_gives_the_same_network() {
    let m = load_model(&fixture("tiny/diffusers"), None).unwrap();
    // The scheduler_config.json beside it turns on diffusers' defaults.
    assert_eq!(m.config.diffusion.clip_sample, Some(1.0));
    assert_eq!(m.config.diffusion.skip, Some(Skip::Leading));
    check_eps("tiny", &m, EPS_TOL);
}

#[test]
fn prefixed_and_half_precision_checkpoints_load() {
    let base = load("tiny");
    let names: Vec<String> = base
        .plan
        .params
        .iter()
        .map(|p| format!("module.{}", p.name))
        .collect();
    let pairs: Vec<(&str, &Tensor)> = names
        .iter()
        .map(String::as_str)
        .zip(&base.weights.tensors)
        .collect();
    // The fixture weights are exactly representable in f16, so f16 must match to f32 precision.
    for (dtype, tol) in [
        (Dtype::F32, EPS_TOL),
        (Dtype::F16, EPS_TOL),
        (Dtype::BF16, 3e-2),
    ] {
        let bytes = serialize(&pairs, dtype, &[]);
        let m = model_from_bytes(&bytes, "prefixed.safetensors", base.config.clone()).unwrap();
        check_eps("tiny", &m, tol);
    }
}

#[test]
fn ddim_trajectories_match_the_official_sampler() {
    for name in ["tiny", "tiny_odd"] {
        let model = load(name);
        let r = read_tensors(&format!("{name}/ref.safetensors"));
        let out = sample(&model, Skip::Uniform, 1, None, false);
        assert_close(
            &format!("{name} uniform S=1"),
            &out.samples,
            &get(&r, "sample_uniform_s1"),
            SAMPLE_TOL,
        );
        let out = sample(&model, Skip::Uniform, 10, None, true);
        assert_close(
            &format!("{name} uniform S=10"),
            &out.samples,
            &get(&r, "sample_uniform_s10"),
            SAMPLE_TOL,
        );
        let seq = get(&r, "x0_preds_uniform_s10");
        assert_eq!(out.x0_seq.len(), 10);
        for (k, x0) in out.x0_seq.iter().enumerate() {
            let want = seq.slice_batch(k, k + 1);
            let want = Tensor::new(x0.shape.clone(), want.data).unwrap();
            assert_close(&format!("{name} x0 step {k}"), x0, &want, SAMPLE_TOL);
        }
        let out = sample(&model, Skip::Quad, 10, None, false);
        assert_close(
            &format!("{name} quad S=10"),
            &out.samples,
            &get(&r, "sample_quad_s10"),
            SAMPLE_TOL,
        );
        let out = sample(&model, Skip::Leading, 10, Some(1.0), false);
        assert_close(
            &format!("{name} leading clip S=10"),
            &out.samples,
            &get(&r, "sample_leading_clip_s10"),
            SAMPLE_TOL,
        );
        // One-step runs of the other sequences (quad: [0]; leading, clipped: [0] to ᾱ = 1).
        for (skip, clip, key) in [
            (Skip::Quad, None, "sample_quad_s1"),
            (Skip::Leading, Some(1.0), "sample_leading_clip_s1"),
        ] {
            let out = sample(&model, skip, 1, clip, false);
            assert_close(
                &format!("{name} {key}"),
                &out.samples,
                &get(&r, key),
                SAMPLE_TOL,
            );
        }
    }
}

#[test]
fn batch_split_does_not_change_samples() {
    let model = load("tiny");
    let d = &model.config.diffusion;
    let sched = d.schedule().unwrap();
    let seq = timesteps(Skip::Uniform, d.num_timesteps, 3, 0).unwrap();
    let opt = StepOptions {
        eta: 1.0,
        ..Default::default()
    };
    let table = step_table(&sched, &seq, &opt).unwrap();
    let run = |batch| {
        let mut be = CpuBackend::new(&model);
        let job = Job {
            table: &table,
            seed: 42,
            first: 0,
            n: 3,
            init: None,
            batch,
            keep_x0: false,
        };
        sampler::run(&mut be, &job, 3, 16, &mut |_| Ok(()))
            .unwrap()
            .samples
    };
    let (a, b) = (run(3), run(1));
    assert!(a.max_abs_diff(&b).unwrap() <= 1e-5 * a.max_abs());
}
