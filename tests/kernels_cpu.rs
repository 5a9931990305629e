//! Each fast CPU kernel against its plain f64 twin, on odd shapes (sizes that are not
//! multiples of any block size, channel counts of 32·k, every resampling mode).

mod common;

use common::{max_rel, randn};
use ddim_webgpu::backend::cpu::attention::{attention_batch, attention_naive};
use ddim_webgpu::backend::cpu::conv::{conv2d_batch, conv2d_naive, out_size, ConvJob, Epilogue};
use ddim_webgpu::backend::cpu::conv_direct::{pack, pack_at, pack_for, Kernel};
use ddim_webgpu::backend::cpu::conv_layout::fits;
use ddim_webgpu::backend::cpu::group_norm::{group_norm, group_norm_naive};
use ddim_webgpu::model::Resample;

/// The batched conv against the plain twin: odd shapes, every mode, views at channel
/// offsets inside wider slots (as the skip concatenation uses them), temb and a residual,
/// and 3 images, so that column blocks cross image boundaries; on 1, 2 and 5 threads,
/// which split the work into column blocks and channel ranges differently.
#[test]
fn conv_matches_its_twin() {
    let mut seed = 0;
    for &(ci, co, h, w) in &[
        (3, 32, 7, 5),
        (32, 64, 8, 8),
        (64, 32, 6, 10),
        (5, 7, 1, 1),
        (96, 33, 3, 4),
        (256, 48, 4, 4),
        // Rows of a vector and more (the direct kernel), with partial runs and tiles.
        (13, 25, 5, 33),
        (64, 64, 16, 16),
        (40, 14, 9, 21),
        // More than 64 output channels (the 12-channel tile on AVX-512).
        (32, 70, 5, 17),
        // At most 4 output channels (the last conv's tile), and rows of 2 and 3.
        (64, 3, 6, 20),
        (7, 4, 2, 3),
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
            // One image (the batch-1 splits: rows in whole tiles, then channel blocks) and
            // three.
            for n in [1, 3] {
                seed += 1;
                let (ho, wo) = out_size(h, w, k, r);
                // Input channels 2.. of a slot with ci + 2; output channels 3.. of co + 3.
                let (xs, ys, rs) = ((ci + 2) * h * w, (co + 3) * ho * wo, (co + 1) * ho * wo);
                let x = randn(99, seed, n * xs);
                let wt: Vec<f32> = randn(99, seed + 1000, co * ci * k * k)
                    .iter()
                    .map(|v| v / ((ci * k * k) as f32).sqrt())
                    .collect();
                let b = randn(99, seed + 2000, co);
                let t = randn(99, seed + 3000, n * (co + 5));
                let res = randn(99, seed + 4000, n * rs);
                for with in [false, true] {
                    let mut slow = vec![0.0; n * ys];
                    for i in 0..n {
                        let ep = Epilogue {
                            bias: &b,
                            temb: with.then(|| &t[i * (co + 5)..i * (co + 5) + co]),
                            residual: with.then(|| &res[i * rs + ho * wo..][..co * ho * wo]),
                        };
                        let xi = &x[i * xs + 2 * h * w..][..ci * h * w];
                        let yi = &mut slow[i * ys + 3 * ho * wo..][..co * ho * wo];
                        conv2d_naive(xi, ci, h, w, &wt, k, r, &ep, yi);
                    }
                    let job = ConvJob {
                        n,
                        x: &x,
                        x_stride: xs,
                        x_off: 2 * h * w,
                        ci,
                        h,
                        w,
                        weight: &wt,
                        k,
                        r,
                        bias: &b,
                        temb: with.then_some((&t[..], co + 5)),
                        residual: with.then_some((&res[..], rs, ho * wo)),
                        y_stride: ys,
                        y_off: 3 * ho * wo,
                        packed: None,
                        norm: None,
                    };
                    let packed = (k == 3).then(|| pack(&wt, co, ci));
                    let chan = (k == 3).then(|| pack_for(&wt, co, ci, Kernel::Channels));
                    // Winograd with this CPU's tile, and with AVX2's (6 × 2, run here).
                    let wino = (k == 3 && r != Resample::Down)
                        .then(|| pack_for(&wt, co, ci, Kernel::Winograd));
                    let wino8 = (k == 3 && r != Resample::Down)
                        .then(|| pack_at(&wt, co, ci, Kernel::Winograd, 8));
                    // The im2col GEMM, and both direct kernels where the shape fits them.
                    let packed_as = |packed| ConvJob { packed, ..job };
                    let (direct, channels) = (packed_as(packed.as_ref()), packed_as(chan.as_ref()));
                    let (winograd, winograd8) =
                        (packed_as(wino.as_ref()), packed_as(wino8.as_ref()));
                    let mut paths = if packed.is_some() && fits(&direct) {
                        vec![
                            ("direct", &direct),
                            ("channels", &channels),
                            ("im2col", &job),
                        ]
                    } else {
                        vec![("im2col", &job)]
                    };
                    if wino.is_some() {
                        paths.push(("winograd", &winograd));
                        paths.push(("winograd 6x2", &winograd8));
                    }
                    let mut first: Vec<Option<Vec<f32>>> = vec![None; paths.len()];
                    for (threads, (p, (path, job))) in [1, 2, 5]
                        .into_iter()
                        .flat_map(|t| paths.iter().enumerate().map(move |p| (t, p)))
                    {
                        let mut fast = vec![0.0; n * ys];
                        conv2d_batch(job, &mut fast, threads);
                        let e = max_rel(&fast, &slow);
                        let what = format!("conv {ci}->{co} {h}x{w} k{k} {r:?} epilogue {with}");
                        // Winograd's transforms round where the direct sum does not: at most
                        // 6.1e-7 here (256 input channels), against the same bound.
                        assert!(e < 1e-5, "{what}, {path}, {threads} threads: rel err {e}");
                        // The bits never depend on the thread count (samples are reproducible
                        // on any machine with the same SIMD width).
                        let first = first[p].get_or_insert_with(|| fast.clone());
                        assert!(
                            *first == fast,
                            "{what}, {path}: {threads} threads change bits"
                        );
                        // Channels outside the view are never written.
                        for i in 0..n {
                            let outside = &fast[i * ys..i * ys + 3 * ho * wo];
                            assert!(outside.iter().all(|&v| v == 0.0), "{what}: wrote outside");
                        }
                    }
                    // The two direct kernels add in the same order: choosing one by shape
                    // never changes a sample.
                    if paths.len() >= 3 {
                        assert!(
                            first[0] == first[1],
                            "conv {ci}->{co} {h}x{w} {r:?} epilogue {with}: the channel \
                             kernel's bits differ from the pixel kernel's"
                        );
                    }
                }
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

/// Attention over 3 images whose operands sit at channel offsets inside wider slots, on 1,
/// 2 and 5 threads (identical bits), against the plain twin image by image; hw from 1 to
/// past one block of queries.
#[test]
fn attention_matches_its_twin() {
    use ddim_webgpu::backend::cpu::attention::{AttnJob, Operand};
    for (i, &(c, hw)) in [(32, 1), (32, 9), (64, 37), (96, 64), (32, 133)]
        .iter()
        .enumerate()
    {
        let n = 3;
        let s = i as u32 * 3;
        // Each operand's slot holds 2c channels; the view starts at channel c/2.
        let (stride, off) = (2 * c * hw, c / 2 * hw);
        let (q, k, v) = (
            randn(99, s, n * stride),
            randn(99, s + 1, n * stride),
            randn(99, s + 2, n * stride),
        );
        let view = |d| Operand {
            data: d,
            stride,
            off,
        };
        let mut slow = vec![0.0; n * c * hw];
        for (img, y) in slow.chunks_mut(c * hw).enumerate() {
            let at = |d: &[f32]| d[img * stride + off..][..c * hw].to_vec();
            attention_naive(&at(&q), &at(&k), &at(&v), c, hw, y);
        }
        let mut first = None;
        for threads in [1, 2, 5] {
            let job = AttnJob {
                n,
                c,
                hw,
                q: view(&q),
                k: view(&k),
                v: view(&v),
                y_stride: stride,
                y_off: off,
            };
            let mut y = vec![7.0; n * stride];
            attention_batch(&job, &mut y, threads);
            let first = first.get_or_insert_with(|| y.clone());
            assert!(
                *first == y,
                "attention c{c} hw{hw}: {threads} threads change bits"
            );
            for img in 0..n {
                let got = &y[img * stride + off..][..c * hw];
                let e = max_rel(got, &slow[img * c * hw..][..c * hw]);
                assert!(e < 1e-5, "attention c{c} hw{hw} x{threads}: rel err {e}");
                // Outside the view nothing is written.
                assert!(y[img * stride..][..off].iter().all(|&v| v == 7.0));
            }
        }
    }
}

/// The batched dense layer against its twin, image by image, with and without swish.
#[test]
fn linear_matches_its_twin() {
    use ddim_webgpu::backend::cpu::linear::{linear, linear_naive};
    let (n, inp, out) = (3, 37, 19);
    let x = randn(97, 1, n * inp);
    let w = randn(97, 2, out * inp);
    let b = randn(97, 3, out);
    for act in [false, true] {
        let mut fast = vec![0.0; n * out];
        linear(&x, n, &w, &b, act, &mut fast);
        for i in 0..n {
            let mut slow = vec![0.0; out];
            linear_naive(&x[i * inp..][..inp], &w, &b, act, &mut slow);
            let e = max_rel(&fast[i * out..][..out], &slow);
            assert!(e < 1e-5, "linear act {act}, image {i}: rel err {e}");
        }
    }
}

/// A GroupNorm (with and without swish) folded into the direct conv, against the plain norm
/// followed by the plain conv: 3 images read at a channel offset, in every layout.
#[test]
fn folded_group_norm_matches_norm_then_conv() {
    use ddim_webgpu::backend::cpu::group_norm::{stats, Fused};
    let mut seed = 500;
    for &(ci, co, h, w, r) in &[
        (32, 20, 5, 17, Resample::None),
        (64, 13, 4, 16, Resample::None),
        (32, 24, 3, 9, Resample::Up),
        (32, 11, 7, 6, Resample::Down),
    ] {
        for swish in [false, true] {
            seed += 1;
            let n = 3;
            let (ho, wo) = out_size(h, w, 3, r);
            let xs = (ci + 32) * h * w;
            let x: Vec<f32> = randn(98, seed, n * xs)
                .iter()
                .map(|v| v * 2.0 + 3.0)
                .collect();
            let wt = randn(98, seed + 1, co * ci * 9);
            let (gamma, beta, b) = (
                randn(98, seed + 2, ci),
                randn(98, seed + 3, ci),
                randn(98, seed + 4, co),
            );
            let mut want = vec![0.0; n * co * ho * wo];
            for i in 0..n {
                let mut normed = vec![0.0; ci * h * w];
                let xi = &x[i * xs + 32 * h * w..][..ci * h * w];
                group_norm_naive(xi, ci, h * w, &gamma, &beta, swish, &mut normed);
                let ep = Epilogue {
                    bias: &b,
                    temb: None,
                    residual: None,
                };
                let yi = &mut want[i * co * ho * wo..][..co * ho * wo];
                conv2d_naive(&normed, ci, h, w, &wt, 3, r, &ep, yi);
            }
            let per = ci * h * w / 32;
            let fused = Fused {
                gamma: &gamma,
                beta: &beta,
                swish,
                stats: (0..n * 32)
                    .map(|k| stats(&x[(k / 32) * xs + 32 * h * w + (k % 32) * per..][..per]))
                    .collect(),
            };
            let packed = pack(&wt, co, ci);
            let wino = pack_for(&wt, co, ci, Kernel::Winograd);
            let job = ConvJob {
                n,
                x: &x,
                x_stride: xs,
                x_off: 32 * h * w,
                ci,
                h,
                w,
                weight: &wt,
                k: 3,
                r,
                bias: &b,
                temb: None,
                residual: None,
                y_stride: co * ho * wo,
                y_off: 0,
                packed: Some(&packed),
                norm: Some(&fused),
            };
            assert!(fits(&job), "the shape must take the direct kernel");
            // Winograd's layout applies the norm as it copies, too.
            let winograd = ConvJob {
                packed: Some(&wino),
                ..job
            };
            let jobs = if r != Resample::Down {
                vec![&job, &winograd]
            } else {
                vec![&job]
            };
            for (job, threads) in jobs.into_iter().flat_map(|j| [(j, 1), (j, 2)]) {
                let mut got = vec![0.0; n * co * ho * wo];
                conv2d_batch(job, &mut got, threads);
                let e = max_rel(&got, &want);
                let kernel = job.packed.map(|p| p.kernel);
                assert!(
                    e < 2e-5,
                    "folded norm {ci}->{co} {h}x{w} {r:?} swish {swish} {kernel:?}: rel err {e}"
                );
            }
        }
    }
}

/// Batches of at least four images per thread take the per-image path of the direct kernel
/// (each item copies its own image, then convolves it): the same bits as one thread, and
/// the twin's values, in every 3×3 mode (the 12-channel tile too), with a GroupNorm folded
/// in.
#[test]
fn direct_per_image_path_matches_one_thread() {
    use ddim_webgpu::backend::cpu::group_norm::{stats, Fused};
    let n = 9;
    for (s, &(ci, co, h, w, r)) in [
        (32, 20, 9, 11, Resample::None),
        (64, 70, 6, 5, Resample::Up),
        (32, 8, 9, 8, Resample::Down),
    ]
    .iter()
    .enumerate()
    {
        let s = 700 + 10 * s as u32;
        let (ho, wo) = out_size(h, w, 3, r);
        let (xs, ys) = (ci * h * w, co * ho * wo);
        let x = randn(96, s, n * xs);
        let wt = randn(96, s + 1, co * ci * 9);
        let b = randn(96, s + 2, co);
        let res = randn(96, s + 3, n * ys);
        let (gamma, beta) = (randn(96, s + 4, ci), randn(96, s + 5, ci));
        let fused = Fused {
            gamma: &gamma,
            beta: &beta,
            swish: true,
            stats: (0..n * 32)
                .map(|k| stats(&x[(k / 32) * xs + (k % 32) * (xs / 32)..][..xs / 32]))
                .collect(),
        };
        let packed = pack(&wt, co, ci);
        let job = ConvJob {
            n,
            x: &x,
            x_stride: xs,
            x_off: 0,
            ci,
            h,
            w,
            weight: &wt,
            k: 3,
            r,
            bias: &b,
            temb: None,
            residual: Some((&res[..], ys, 0)),
            y_stride: ys,
            y_off: 0,
            packed: Some(&packed),
            norm: Some(&fused),
        };
        assert!(fits(&job), "the shape must take the direct kernel");
        let mut slow = vec![0.0; n * ys];
        for i in 0..n {
            let ep = Epilogue {
                bias: &b,
                temb: None,
                residual: Some(&res[i * ys..][..ys]),
            };
            let mut normed = vec![0.0; xs];
            group_norm_naive(
                &x[i * xs..][..xs],
                ci,
                h * w,
                &gamma,
                &beta,
                true,
                &mut normed,
            );
            let yi = &mut slow[i * ys..][..ys];
            conv2d_naive(&normed, ci, h, w, &wt, 3, r, &ep, yi);
        }
        let (mut one, mut two) = (vec![0.0; n * ys], vec![0.0; n * ys]);
        conv2d_batch(&job, &mut one, 1);
        conv2d_batch(&job, &mut two, 2);
        let e = max_rel(&two, &slow);
        assert!(e < 1e-5, "{ci}->{co} {h}x{w} {r:?}: rel err {e}");
        assert!(
            one == two,
            "{ci}->{co} {h}x{w} {r:?}: the per-image path changes bits"
        );
    }
}

/// Both direct kernels compiled for AVX2 (8 lanes), as a CPU without AVX-512 runs them, against
/// the twin: this machine's dispatch would pick AVX-512, so the test picks AVX2 itself.
#[cfg(target_arch = "x86_64")]
#[test]
fn direct_kernel_on_avx2_matches_its_twin() {
    use ddim_webgpu::backend::cpu::conv_direct::{items, Rows};
    use ddim_webgpu::backend::cpu::conv_layout::{fill, layout};
    use pulp::WithSimd;
    let Some(v3) = pulp::x86::V3::try_new() else {
        eprintln!("no AVX2 here: skipped");
        return;
    };
    for (s, &(ci, co, h, w, r)) in [
        (32, 20, 9, 11, Resample::None),
        (16, 70, 4, 5, Resample::Up),
        (8, 3, 9, 8, Resample::Down),
        (24, 13, 8, 16, Resample::None),
    ]
    .iter()
    .enumerate()
    {
        let (n, s) = (2, 800 + 10 * s as u32);
        let (ho, wo) = out_size(h, w, 3, r);
        let (xs, ys) = (ci * h * w, co * ho * wo);
        let x = randn(95, s, n * xs);
        let wt = randn(95, s + 1, co * ci * 9);
        let b = randn(95, s + 2, co);
        for kernel in [Kernel::Pixels, Kernel::Channels] {
            let packed = pack_at(&wt, co, ci, kernel, 8);
            let job = ConvJob {
                n,
                x: &x,
                x_stride: xs,
                x_off: 0,
                ci,
                h,
                w,
                weight: &wt,
                k: 3,
                r,
                bias: &b,
                temb: None,
                residual: None,
                y_stride: ys,
                y_off: 0,
                packed: Some(&packed),
                norm: None,
            };
            let l = layout(&job);
            let mut src = Vec::new();
            fill(&job, &l, &mut src);
            let mut y = vec![0.0; n * ys];
            for [img, oy0, oy1, cb0, cb1] in items(&job, &l, &packed, 1) {
                let rows = Rows {
                    job: &job,
                    layout: &l,
                    packed: &packed,
                    src: &src,
                    img,
                    src_img: img,
                    oy0,
                    oy1,
                    cb0,
                    cb1,
                    y: y.as_mut_ptr(),
                    y_len: y.len(),
                };
                v3.vectorize(|| rows.with_simd(v3));
            }
            let mut slow = vec![0.0; n * ys];
            for i in 0..n {
                let ep = Epilogue {
                    bias: &b,
                    temb: None,
                    residual: None,
                };
                let yi = &mut slow[i * ys..][..ys];
                conv2d_naive(&x[i * xs..][..xs], ci, h, w, &wt, 3, r, &ep, yi);
            }
            let e = max_rel(&y, &slow);
            assert!(
                e < 1e-5,
                "AVX2 {kernel:?} {ci}->{co} {h}x{w} {r:?}: rel err {e}"
            );
        }
    }
}
