//! Shared helpers for the integration tests: fixture paths and tolerance checks.
#![allow(dead_code)]

use ddim_webgpu::safetensors::{self, TensorFile};
use ddim_webgpu::Tensor;
use std::path::PathBuf;

pub fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(rel)
}

pub fn read_tensors(rel: &str) -> TensorFile {
    let p = fixture(rel);
    safetensors::parse(&std::fs::read(&p).unwrap(), &p.display().to_string()).unwrap()
}

pub fn get(f: &TensorFile, name: &str) -> Tensor {
    f.get(name)
        .unwrap_or_else(|| panic!("fixture has no {name}"))
        .clone()
}

/// max|got − want| ≤ rel · max|want|, with a readable failure.
pub fn assert_close(what: &str, got: &Tensor, want: &Tensor, rel: f32) {
    let d = got.max_abs_diff(want).unwrap();
    let m = want.max_abs();
    assert!(
        d <= rel * m,
        "{what}: max|d| = {d:e} > {rel:e} · max|ref| ({m:e})"
    );
    eprintln!(
        "{what}: max|d| = {d:.3e}, max|ref| = {m:.3e}, ratio {:.2e}",
        d / m
    );
}

/// Seeded standard normals (the project's own generator), for random test inputs.
pub fn randn(stream: u32, seed: u32, n: usize) -> Vec<f32> {
    let mut v = vec![0.0; n];
    ddim_webgpu::rng::fill_normal(1234, stream, seed, &mut v);
    v
}

/// max|a − b| / max|b|.
pub fn max_rel(a: &[f32], b: &[f32]) -> f32 {
    let m = b.iter().fold(0.0f32, |m, x| m.max(x.abs())).max(1e-6);
    a.iter()
        .zip(b)
        .fold(0.0f32, |d, (x, y)| d.max((x - y).abs()))
        / m
}
