//! The config parsers again, but with the bytes choosing field values rather than text: a
//! well-formed ddim YAML and a diffusers config.json + scheduler_config.json, whose numbers
//! lean to edge cases (0, powers of two, 10^k, 2^62, u64::MAX). The text target rarely writes
//! a 12-digit count into the right key; this one does so at once. Same contract: what parses
//! builds its plan and schedule without a panic, a hang or an unbounded allocation.
#![no_main]

use ddim_webgpu::model::{parse_config, Plan};
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use serde_json::json;

#[global_allocator]
static ALLOC: ddim_webgpu_fuzz::Capped = ddim_webgpu_fuzz::Capped;

const EDGES: &[u64] = &[
    0,
    1,
    2,
    3,
    32,
    64,
    1 << 14,
    1 << 16,
    (1 << 16) + 1,
    1 << 20,
    (1 << 20) + 1,
    1 << 32,
    1 << 62,
    i64::MAX as u64,
    u64::MAX,
];

fn num(u: &mut Unstructured) -> Result<u64> {
    Ok(match u.int_in_range(0u8..=3)? {
        0 => u.int_in_range(0..=130)?,
        1 => *u.choose(EDGES)?,
        2 => 10u64.pow(u.int_in_range(0..=19)?),
        _ => u.arbitrary()?,
    })
}

fn nums(u: &mut Unstructured) -> Result<Vec<u64>> {
    (0..u.int_in_range(0..=14)?).map(|_| num(u)).collect()
}

fn real(u: &mut Unstructured) -> Result<f64> {
    Ok(match u.int_in_range(0u8..=2)? {
        0 => *u.choose(&[0.0, 1e-4, 0.02, 0.5, 1.0, -1.0, 1e308])?,
        1 => u.arbitrary::<f64>()?,
        _ => u.int_in_range(0..=1000)? as f64 / 1000.0,
    })
}

fn list(v: &[u64]) -> String {
    v.iter().map(u64::to_string).collect::<Vec<_>>().join(", ")
}

fn yaml(u: &mut Unstructured) -> Result<String> {
    let sched = *u.choose(&["linear", "quad", "const", "jsd", "sigmoid", "cosine"])?;
    Ok(format!(
        "data: {{image_size: {}, channels: {}}}\n\
         model: {{in_channels: {}, out_ch: {}, ch: {}, ch_mult: [{}], num_res_blocks: {}, \
         attn_resolutions: [{}], resamp_with_conv: {}}}\n\
         diffusion: {{beta_schedule: {sched}, beta_start: {:?}, beta_end: {:?}, \
         num_diffusion_timesteps: {}}}\n",
        num(u)?,
        num(u)?,
        num(u)?,
        num(u)?,
        num(u)?,
        list(&nums(u)?),
        num(u)?,
        list(&nums(u)?),
        u.arbitrary::<bool>()?,
        real(u)?,
        real(u)?,
        num(u)?,
    ))
}

fn diffusers(u: &mut Unstructured) -> Result<String> {
    let boc = nums(u)?;
    let mut down = Vec::new();
    for _ in &boc {
        down.push(*u.choose(&["DownBlock2D", "AttnDownBlock2D"])?);
    }
    let up: Vec<_> = down.iter().rev().map(|d| d.replace("Down", "Up")).collect();
    let model = json!({
        "block_out_channels": boc,
        "down_block_types": down,
        "up_block_types": up,
        "sample_size": num(u)?,
        "in_channels": num(u)?,
        "out_channels": num(u)?,
        "layers_per_block": num(u)?,
    });
    let spacing = *u.choose(&["leading", "trailing", "linspace"])?;
    let sched = *u.choose(&["linear", "scaled_linear", "squaredcos_cap_v2", "sigmoid"])?;
    let scheduler = json!({
        "num_train_timesteps": num(u)?,
        "beta_start": real(u)?,
        "beta_end": real(u)?,
        "beta_schedule": sched,
        "steps_offset": num(u)?,
        "timestep_spacing": spacing,
        "rescale_betas_zero_snr": u.arbitrary::<bool>()?,
        "set_alpha_to_one": u.arbitrary::<bool>()?,
    });
    Ok(format!("{model}\0{scheduler}"))
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let text = match u.arbitrary::<bool>() {
        Ok(true) => yaml(&mut u),
        _ => diffusers(&mut u),
    };
    let Ok(text) = text else {
        return;
    };
    // To see what a saved input stands for: FUZZ_SHOW=1 config_fields FILE
    if std::env::var_os("FUZZ_SHOW").is_some() {
        eprintln!("{text:?}");
    }
    let (config, scheduler) = match text.split_once('\0') {
        Some((c, s)) => (c, Some((s, "scheduler_config.json"))),
        None => (text.as_str(), None),
    };
    let Ok(cfg) = parse_config(config, "fuzz-config", scheduler) else {
        return;
    };
    let plan = Plan::new(&cfg.model);
    let _ = plan.param_count();
    let _ = cfg.diffusion.schedule();
});
