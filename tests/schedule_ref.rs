//! Schedules and timestep sequences against the official code and diffusers
//! (values dumped by tools/make_fixtures.py).

mod common;

use common::{get, read_tensors};
use ddim_webgpu::schedule::{
    betas, rescale_zero_terminal_snr, timesteps, BetaSchedule, Schedule, Skip,
};

#[test]
fn seed_schedules_match_the_official_values() {
    let r = read_tensors("schedules.safetensors");
    // The fixture stores f64; our reader widens to f32, so read the raw bytes for f64 precision.
    let raw = std::fs::read(common::fixture("schedules.safetensors")).unwrap();
    let n = u64::from_le_bytes(raw[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&raw[8..8 + n]).unwrap();
    let f64s = |key: &str| -> Vec<f64> {
        let o = header[key]["data_offsets"].as_array().unwrap();
        let (s, e) = (
            o[0].as_u64().unwrap() as usize,
            o[1].as_u64().unwrap() as usize,
        );
        raw[8 + n + s..8 + n + e]
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
            .collect()
    };
    for (key, kind, t) in [
        ("betas_linear", BetaSchedule::Linear, 1000),
        ("betas_quad", BetaSchedule::Quad, 1000),
        ("betas_const", BetaSchedule::Const, 1000),
        ("betas_jsd", BetaSchedule::Jsd, 1000),
        ("betas_sigmoid", BetaSchedule::Sigmoid, 1000),
        ("betas_linear_T100", BetaSchedule::Linear, 100),
    ] {
        let want = f64s(key);
        let got = betas(kind, 1e-4, 0.02, t).unwrap();
        assert_eq!(got.len(), want.len());
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!((g - w).abs() <= 1e-12 * w.abs(), "{key}[{i}]: {g} vs {w}");
        }
    }
    let lin = betas(BetaSchedule::Linear, 1e-4, 0.02, 100).unwrap();
    assert_eq!(&format!("{:.8}", lin[1]), "0.00030101");
    assert_eq!(&format!("{:.8}", lin[2]), "0.00050202");

    // The sampler's f32 ᾱ is bit-identical to torch's.
    let s = Schedule::new(betas(BetaSchedule::Linear, 1e-4, 0.02, 1000).unwrap());
    let want = get(&r, "abar_f32_linear");
    for (i, (g, w)) in s.abar_f32.iter().zip(&want.data).enumerate() {
        assert_eq!(g.to_bits(), w.to_bits(), "abar[{i}]: {g} vs {w}");
    }

    // diffusers' own schedules are computed in f32, so these agree to f32 precision.
    let cos = betas(BetaSchedule::Cosine, 1e-4, 0.02, 1000).unwrap();
    for (g, w) in cos.iter().zip(&get(&r, "betas_cosine_diffusers").data) {
        assert!(
            (*g as f32 - w).abs() <= 1e-6 * w.abs().max(1e-3),
            "cosine {g} vs {w}"
        );
    }
    let z = rescale_zero_terminal_snr(&betas(BetaSchedule::Linear, 1e-4, 0.02, 1000).unwrap());
    // diffusers takes the cumprod, square roots and ratios in f32, which drifts by a few
    // parts in 10⁴ over 1000 steps; ours is f64. A wrong algorithm would be off by far more.
    for (g, w) in z.iter().zip(&get(&r, "betas_linear_zsnr_diffusers").data) {
        assert!((*g as f32 - w).abs() <= 2e-3 * w.abs(), "zsnr {g} vs {w}");
    }
    assert_eq!(*z.last().unwrap(), 1.0);
}

#[test]
fn timestep_sequences_match_the_reference() {
    let text = std::fs::read_to_string(common::fixture("timesteps.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut checked = 0;
    for (group, skip, offset, ascending) in [
        ("uniform", Skip::Uniform, 0, true),
        ("quad", Skip::Quad, 0, true),
        ("leading", Skip::Leading, 0, false),
        ("trailing", Skip::Trailing, 0, false),
        ("linspace", Skip::Linspace, 0, false),
        ("leading_offset1", Skip::Leading, 1, false),
    ] {
        for (s, want) in v[group].as_object().unwrap() {
            let mut want: Vec<i64> = want
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_i64().unwrap())
                .collect();
            if ascending {
                want.reverse();
            }
            let got = timesteps(skip, 1000, s.parse().unwrap(), offset).unwrap();
            assert_eq!(got, want, "{group} S={s}");
            checked += 1;
        }
    }
    assert_eq!(checked, 39);
}
