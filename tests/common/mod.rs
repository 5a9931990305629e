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
