//! The whole load path from bytes, `model::model_from_bytes`, against the fixed tiny config
//! (tests/fixtures/tiny): the safetensors reader, then name mapping (official, `module.`,
//! diffusers) and the shape checks against the plan. Errors, never a panic.
#![no_main]

use ddim_webgpu::model::{model_from_bytes, parse_config, Config};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

#[global_allocator]
static ALLOC: ddim_webgpu_fuzz::Capped = ddim_webgpu_fuzz::Capped;

fn config() -> &'static Config {
    static CONFIG: OnceLock<Config> = OnceLock::new();
    CONFIG.get_or_init(|| parse_config(ddim_webgpu_fuzz::TINY_CONFIG, "tiny", None).unwrap())
}

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = model_from_bytes(data, "fuzz.safetensors", config().clone()) {
        assert_eq!(m.weights.tensors.len(), m.plan.params.len());
    }
});
