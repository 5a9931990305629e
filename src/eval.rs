//! Sample quality without Inception weights: the sliced Wasserstein distance on Laplacian
//! pyramids (SWD; Karras et al. 2018, "Progressive Growing of GANs", §5).
//!
//! The feature space is fixed and needs no trained network, so the numbers are reproducible
//! anywhere:
//! - each image ([-1, 1], C channels) is decomposed into a Laplacian pyramid down to 8×8;
//! - at every level, 128 random 7×7 patches per image (C·49 values) are the descriptors;
//! - at most 32,768 descriptors per set and level are kept (an even stride);
//! - each set's descriptors are normalised per channel (mean 0, std 1 over the set);
//! - the distance between two sets is the mean |sorted projection difference| over 4 × 512
//!   random unit directions, ×10³ as the paper reports it.
//!
//! All randomness (patch positions, directions) comes from the project's Philox generator,
//! so a given pair of sets always gets the same number.

use crate::error::{Error, Result};
use crate::rng;
use crate::tensor::Tensor;

pub const PATCH: usize = 7;
pub const PATCHES_PER_IMAGE: usize = 128;
pub const DIRECTIONS: usize = 512;
pub const REPEATS: usize = 4;
/// The coarsest pyramid level.
pub const MIN_RES: usize = 8;
/// Descriptors kept per set and level (an even stride through them), as the paper samples a
/// fixed number: it bounds time and memory whatever the set size.
pub const MAX_DESCRIPTORS: usize = 32_768;

/// One image's planes, [c][h][w].
fn downsample(img: &[f32], c: usize, h: usize, w: usize) -> Vec<f32> {
    // A 2×2 box filter: the binomial filter of the paper changes little at 32×32.
    let (ho, wo) = (h / 2, w / 2);
    let mut out = vec![0.0; c * ho * wo];
    for ch in 0..c {
        for y in 0..ho {
            for x in 0..wo {
                let at = |dy: usize, dx: usize| img[(ch * h + 2 * y + dy) * w + 2 * x + dx];
                out[(ch * ho + y) * wo + x] = (at(0, 0) + at(0, 1) + at(1, 0) + at(1, 1)) * 0.25;
            }
        }
    }
    out
}

fn upsample(img: &[f32], c: usize, h: usize, w: usize) -> Vec<f32> {
    let mut out = vec![0.0; c * 4 * h * w];
    for ch in 0..c {
        for y in 0..2 * h {
            for x in 0..2 * w {
                out[(ch * 2 * h + y) * 2 * w + x] = img[(ch * h + y / 2) * w + x / 2];
            }
        }
    }
    out
}

/// The Laplacian pyramid of one image: band-pass levels from full resolution down, then the
/// low-pass residual at `MIN_RES`.
pub fn laplacian_pyramid(img: &[f32], c: usize, res: usize) -> Vec<(usize, Vec<f32>)> {
    let mut levels = Vec::new();
    let (mut cur, mut r) = (img.to_vec(), res);
    // Stop before a level would be smaller than a patch.
    while r > MIN_RES && r.is_multiple_of(2) && r / 2 >= PATCH {
        let low = downsample(&cur, c, r, r);
        let up = upsample(&low, c, r / 2, r / 2);
        levels.push((r, cur.iter().zip(&up).map(|(a, b)| a - b).collect()));
        cur = low;
        r /= 2;
    }
    levels.push((r, cur));
    levels
}

/// Descriptors of one set at every pyramid level: per level, a row-major
/// [n·PATCHES_PER_IMAGE, c·49] matrix, normalised per channel.
fn descriptors(set: &Tensor, key: u64) -> Result<Vec<Vec<f32>>> {
    if set.shape.len() != 4 || set.shape[2] != set.shape[3] || set.shape[2] < PATCH {
        return Err(Error::Shape {
            what: "images for SWD".into(),
            expected: vec![set.shape.first().copied().unwrap_or(0), 3, 32, 32],
            found: set.shape.clone(),
        });
    }
    let (n, c, r) = (set.shape[0], set.shape[1], set.shape[2]);
    let d = c * PATCH * PATCH;
    let mut out: Vec<Vec<f32>> = Vec::new();
    for i in 0..n {
        let img = &set.data[i * c * r * r..(i + 1) * c * r * r];
        for (li, (lr, band)) in laplacian_pyramid(img, c, r).into_iter().enumerate() {
            if out.len() <= li {
                out.push(Vec::with_capacity(n * PATCHES_PER_IMAGE * d));
            }
            // Patch corners straight from Philox words, keyed by image, patch and level.
            let span = (lr - PATCH + 1) as u32;
            for p in 0..PATCHES_PER_IMAGE {
                let w = rng::philox4x32(
                    [key as u32, 0x5357_4400 + li as u32],
                    [p as u32, i as u32, 0, rng::TAG],
                );
                let (y0, x0) = ((w[0] % span) as usize, (w[1] % span) as usize);
                for ch in 0..c {
                    for y in 0..PATCH {
                        let row = (ch * lr + y0 + y) * lr + x0;
                        out[li].extend_from_slice(&band[row..row + PATCH]);
                    }
                }
            }
        }
    }
    for level in &mut out {
        let rows = level.len() / d;
        if rows > MAX_DESCRIPTORS {
            let kept: Vec<f32> = (0..MAX_DESCRIPTORS)
                .flat_map(|i| level[i * rows / MAX_DESCRIPTORS * d..][..d].to_vec())
                .collect();
            *level = kept;
        }
        normalise(level, c, d);
    }
    Ok(out)
}

fn normalise(desc: &mut [f32], c: usize, d: usize) {
    let per = d / c;
    for ch in 0..c {
        let (mut s, mut q, mut k) = (0.0f64, 0.0f64, 0.0f64);
        for row in desc.chunks(d) {
            for &v in &row[ch * per..(ch + 1) * per] {
                s += v as f64;
                q += (v as f64) * (v as f64);
                k += 1.0;
            }
        }
        let mean = s / k;
        let std = (q / k - mean * mean).max(1e-12).sqrt();
        for row in desc.chunks_mut(d) {
            for v in &mut row[ch * per..(ch + 1) * per] {
                *v = ((*v as f64 - mean) / std) as f32;
            }
        }
    }
}

fn sliced_distance(a: &[f32], b: &[f32], d: usize, key: u64) -> f64 {
    let (na, nb) = (a.len() / d, b.len() / d);
    let mut total = 0.0;
    for rep in 0..REPEATS {
        let mut dirs = vec![0.0f32; d * DIRECTIONS];
        rng::fill_normal(key, 0x5357_4401, rep as u32, &mut dirs);
        // Columns of `dirs` ([d, DIRECTIONS]) are unit directions.
        for j in 0..DIRECTIONS {
            let norm = (0..d)
                .map(|i| (dirs[i * DIRECTIONS + j] as f64).powi(2))
                .sum::<f64>()
                .sqrt();
            for i in 0..d {
                dirs[i * DIRECTIONS + j] /= norm as f32;
            }
        }
        let project = |x: &[f32], n: usize| {
            let mut p = vec![0.0f32; n * DIRECTIONS];
            crate::backend::cpu::gemm::matmul(
                n,
                DIRECTIONS,
                d,
                &mut p,
                crate::backend::cpu::gemm::Mat::rows(x, d),
                crate::backend::cpu::gemm::Mat::rows(&dirs, DIRECTIONS),
                1.0,
                false,
                true,
            );
            // Sorted values per direction, [DIRECTIONS][n].
            let mut cols: Vec<Vec<f32>> = (0..DIRECTIONS)
                .map(|j| (0..n).map(|i| p[i * DIRECTIONS + j]).collect())
                .collect();
            cols.iter_mut().for_each(|c| c.sort_by(f32::total_cmp));
            cols
        };
        let (pa, pb) = (project(a, na), project(b, nb));
        // Compare quantiles when the sets differ in size.
        let m = na.min(nb);
        let mut sum = 0.0;
        for (ca, cb) in pa.iter().zip(&pb) {
            for q in 0..m {
                let (ia, ib) = (q * na / m, q * nb / m);
                sum += (ca[ia] - cb[ib]).abs() as f64;
            }
        }
        total += sum / (m * DIRECTIONS) as f64;
    }
    total / REPEATS as f64
}

/// SWD between two sets of images ([N, C, R, R] in [-1, 1]), per pyramid level (finest
/// first), ×10³.
pub fn swd(a: &Tensor, b: &Tensor) -> Result<Vec<f64>> {
    if a.shape[1..] != b.shape[1..] {
        return Err(Error::Shape {
            what: "SWD: the two sets".into(),
            expected: a.shape.clone(),
            found: b.shape.clone(),
        });
    }
    let d = a.shape[1] * PATCH * PATCH;
    let (da, db) = (descriptors(a, 1)?, descriptors(b, 2)?);
    Ok(da
        .iter()
        .zip(&db)
        .enumerate()
        .map(|(li, (x, y))| 1e3 * sliced_distance(x, y, d, 3 + li as u64))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn images(seed: u64, n: usize, blur: bool) -> Tensor {
        // Smooth random images: low-frequency noise, optionally blurred further.
        let mut data = vec![0.0f32; n * 3 * 32 * 32];
        for i in 0..n {
            let mut z = vec![0.0f32; 3 * 8 * 8];
            rng::fill_normal(seed, 9, i as u32, &mut z);
            let up = upsample(&upsample(&z, 3, 8, 8), 3, 16, 16);
            let mut img: Vec<f32> = up.iter().map(|v| (v * 0.4).tanh()).collect();
            if !blur {
                let mut fine = vec![0.0f32; img.len()];
                rng::fill_normal(seed, 10, i as u32, &mut fine);
                img.iter_mut()
                    .zip(&fine)
                    .for_each(|(v, f)| *v = (*v + 0.2 * f).clamp(-1.0, 1.0));
            }
            data[i * 3072..(i + 1) * 3072].copy_from_slice(&img);
        }
        Tensor {
            shape: vec![n, 3, 32, 32],
            data,
        }
    }

    #[test]
    fn same_distribution_is_close_and_a_blurred_one_is_far() {
        let a = images(1, 24, false);
        let b = images(2, 24, false);
        let blurred = images(3, 24, true);
        let same: f64 = swd(&a, &b).unwrap().iter().sum();
        let far: f64 = swd(&a, &blurred).unwrap().iter().sum();
        assert!(
            far > 3.0 * same,
            "same-distribution SWD {same}, blurred {far}"
        );
        // Deterministic.
        assert_eq!(swd(&a, &b).unwrap(), swd(&a, &b).unwrap());
    }

    #[test]
    fn resolutions_that_halve_below_a_patch_stop_early() {
        for r in [12, 20, 24] {
            let levels = laplacian_pyramid(&vec![0.5; 3 * r * r], 3, r);
            assert!(
                levels.iter().all(|(lr, _)| *lr >= PATCH),
                "{r}: {:?}",
                levels.iter().map(|l| l.0).collect::<Vec<_>>()
            );
        }
    }

    #[test]
    fn pyramid_levels_reconstruct_the_image() {
        let img = images(4, 1, false).data;
        let levels = laplacian_pyramid(&img, 3, 32);
        assert_eq!(
            levels.iter().map(|l| l.0).collect::<Vec<_>>(),
            vec![32, 16, 8]
        );
        let mut rec = levels[2].1.clone();
        for (r, band) in levels[..2].iter().rev() {
            rec = upsample(&rec, 3, r / 2, r / 2)
                .iter()
                .zip(band)
                .map(|(a, b)| a + b)
                .collect();
        }
        let err = rec
            .iter()
            .zip(&img)
            .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(err < 1e-5, "{err}");
    }
}
