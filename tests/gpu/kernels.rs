//! Every WGSL kernel, every conv variant the tuner can pick, held to its CPU twin.

use super::*;

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

/// The mixed precision's kernels (tensor cores where the adapter has them, else f16
/// arithmetic) held to the f32 CPU twin on the same odd shapes, within what f16 rounding of
/// the inputs allows. Skipped, with a line, on adapters with neither.
#[test]
fn every_mixed_conv_variant_matches_its_twin() {
    let Some(mut g) = gpu() else { return };
    let mut checked = 0;
    for &(ci, co, h, w) in &[(3, 32, 7, 5), (96, 33, 6, 4), (64, 130, 4, 4)] {
        for &(k, r) in &[
            (3, Resample::None),
            (1, Resample::None),
            (3, Resample::Down),
            (3, Resample::Up),
        ] {
            if r == Resample::Down && (h % 2 == 1 || w % 2 == 1) {
                continue;
            }
            let (slots, op) = offset_conv(ci, co, h, w, k, r);
            let n = 3;
            for v in offered_mixed(&g, &op, &slots, n) {
                let what = format!("conv {ci}->{co} {h}x{w} k{k} {r:?} {}", v.name());
                let params = vec![vec![co, ci, k, k], vec![co]];
                // f16 keeps 11 bits: about 5e-4 per rounded input, summed over up to 864 terms.
                g = twin_with(
                    g,
                    &what,
                    slots.clone(),
                    params,
                    op.clone(),
                    n,
                    1e-2,
                    Some(v),
                    false,
                );
                checked += 1;
            }
        }
    }
    if checked == 0 {
        eprintln!("skipped: this adapter has neither cooperative matrices nor shader-f16");
    }
    eprintln!("{checked} mixed conv cases");
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

/// With shader-f16 and weights that are exact f16 values, the convs read f16 weights: every
/// variant the tuner can pick, on odd shapes, at channel offsets, at batch 2.
#[test]
fn f16_conv_weights_match_the_twin() {
    let Some(mut g) = gpu() else { return };
    if !g.features.contains(wgpu::Features::SHADER_F16) {
        eprintln!("skipped: the adapter has no shader-f16");
        return;
    }
    for &(ci, co, h, w, k, r) in &[
        (3, 32, 7, 5, 3, Resample::None),
        (33, 17, 6, 4, 3, Resample::Down),
        (64, 96, 8, 8, 3, Resample::Up),
        (5, 7, 3, 3, 1, Resample::None),
    ] {
        let (slots, op) = offset_conv(ci, co, h, w, k, r);
        for kind in offered(&g, &op, &slots, 2) {
            let what = format!("f16 conv {ci}->{co} {h}x{w} k{k} {r:?} {}", kind.name());
            let params = vec![vec![co, ci, k, k], vec![co]];
            let op = op.clone();
            g = twin_with(
                g,
                &what,
                slots.clone(),
                params,
                op,
                2,
                1e-5,
                Some(kind),
                true,
            );
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
