//! Each fast CPU kernel against its plain f64 twin, on odd shapes (sizes that are not
//! multiples of any block size, channel counts of 32·k, every resampling mode).

mod common;

use common::{max_rel, randn};
use ddim_webgpu::backend::cpu::attention::{attention, attention_naive};
use ddim_webgpu::backend::cpu::conv::{conv2d, conv2d_naive, out_size, Epilogue};
use ddim_webgpu::backend::cpu::group_norm::{group_norm, group_norm_naive};
use ddim_webgpu::model::Resample;

#[test]
fn conv_matches_its_twin() {
    let mut seed = 0;
    for &(ci, co, h, w) in &[
        (3, 32, 7, 5),
        (32, 64, 8, 8),
        (64, 32, 6, 10),
        (5, 7, 1, 1),
        (96, 33, 3, 4),
    ] {
        for &(k, r) in &[
            (3, Resample::None),
            (1, Resample::None),
            (3, Resample::Down),
            (3, Resample::Up),
        ] {
            if r == Resample::Down && (h < 2 || w < 2) {
                continue;
            }
            seed += 1;
            let x = randn(99, seed, ci * h * w);
            let wt: Vec<f32> = randn(99, seed + 1000, co * ci * k * k)
                .iter()
                .map(|v| v / ((ci * k * k) as f32).sqrt())
                .collect();
            let b = randn(99, seed + 2000, co);
            let t = randn(99, seed + 3000, co);
            let (ho, wo) = out_size(h, w, k, r);
            let res = randn(99, seed + 4000, co * ho * wo);
            for (temb, residual) in [(None, None), (Some(&t[..]), Some(&res[..]))] {
                let ep = Epilogue {
                    bias: &b,
                    temb,
                    residual,
                };
                let (mut fast, mut slow) = (vec![0.0; co * ho * wo], vec![0.0; co * ho * wo]);
                conv2d(&x, ci, h, w, &wt, k, r, &ep, &mut fast, false);
                conv2d_naive(&x, ci, h, w, &wt, k, r, &ep, &mut slow);
                let e = max_rel(&fast, &slow);
                assert!(e < 1e-5, "conv {ci}->{co} {h}x{w} k{k} {r:?}: rel err {e}");
            }
        }
    }
}

#[test]
fn group_norm_matches_its_twin() {
    for (i, &(c, hw)) in [(32, 1), (64, 49), (96, 17), (256, 16)].iter().enumerate() {
        // An offset makes the mean large against the spread: the case naive f32 sums get wrong.
        let x: Vec<f32> = randn(99, i as u32, c * hw)
            .iter()
            .map(|v| v * 3.0 + 50.0)
            .collect();
        let g = randn(99, 100 + i as u32, c);
        let b = randn(99, 200 + i as u32, c);
        for act in [false, true] {
            let (mut fast, mut slow) = (vec![0.0; c * hw], vec![0.0; c * hw]);
            group_norm(&x, c, hw, &g, &b, act, &mut fast);
            group_norm_naive(&x, c, hw, &g, &b, act, &mut slow);
            let e = max_rel(&fast, &slow);
            assert!(e < 2e-5, "group norm c{c} hw{hw} act {act}: rel err {e}");
        }
    }
}

#[test]
fn attention_matches_its_twin() {
    for (i, &(c, hw)) in [(32, 1), (32, 9), (64, 37), (96, 64)].iter().enumerate() {
        let s = i as u32 * 3;
        let (q, k, v) = (
            randn(99, s, c * hw),
            randn(99, s + 1, c * hw),
            randn(99, s + 2, c * hw),
        );
        let (mut fast, mut slow) = (vec![0.0; c * hw], vec![0.0; c * hw]);
        attention(&q, &k, &v, c, hw, &mut fast, false);
        attention_naive(&q, &k, &v, c, hw, &mut slow);
        let e = max_rel(&fast, &slow);
        assert!(e < 1e-5, "attention c{c} hw{hw}: rel err {e}");
    }
}
