//! `model::parse_config` on any text, both branches: the ddim YAML, and diffusers'
//! config.json with its scheduler_config.json after a NUL byte. A config that parses must
//! also be usable as loading uses it: its plan and its noise schedule build without a panic,
//! a hang or an unbounded allocation.
#![no_main]

use ddim_webgpu::model::{parse_config, Plan};
use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOC: ddim_webgpu_fuzz::Capped = ddim_webgpu_fuzz::Capped;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (config, scheduler) = match text.split_once('\0') {
        Some((c, s)) => (c, Some((s, "scheduler_config.json"))),
        None => (text, None),
    };
    let Ok(cfg) = parse_config(config, "fuzz-config", scheduler) else {
        return;
    };
    let plan = Plan::new(&cfg.model);
    let _ = plan.param_count();
    let _ = cfg.diffusion.schedule();
});
