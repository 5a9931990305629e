//! The counter-based noise generator: Philox4x32-10 (Salmon et al., SC'11) plus Box–Muller.
//!
//! A counter-based generator makes noise a pure function of its coordinates, so the same seed
//! gives the same x_T and the same reverse-step noise on the CPU backend, in WGSL
//! (`shaders/rng.wgsl` implements the same function) and in the browser, whatever the batch
//! split or thread count. The coordinates are:
//!
//! - key     = (seed low 32 bits, seed high 32 bits)
//! - counter = (element_index / 4, sample_index, stream, 0x6464_696d)
//!
//! `stream` is 0 for the initial noise x_T and 1 + k for the noise of sampling step k.
//! Each Philox block yields four u32; pairs (0,1) and (2,3) become two normals each by
//! Box–Muller: u1 = (hi24(a) + 1)·2⁻²⁴ ∈ (0, 1], u2 = hi24(b)·2⁻²⁴, r = √(−2 ln u1),
//! normals r·cos(2πu2) and r·sin(2πu2), in that order. The host computes in f64 and rounds.

const M0: u32 = 0xD251_1F53;
const M1: u32 = 0xCD9E_8D57;
const W0: u32 = 0x9E37_79B9;
const W1: u32 = 0xBB67_AE85;
/// The last counter word, fixed so our streams never collide with another use of the key.
pub const TAG: u32 = 0x6464_696d;
/// Stream of the initial noise x_T.
pub const STREAM_INIT: u32 = 0;

/// Stream of the reverse-process noise of sampling step k (0-based).
pub fn stream_step(k: usize) -> u32 {
    1 + k as u32
}

fn mulhilo(a: u32, b: u32) -> (u32, u32) {
    let p = a as u64 * b as u64;
    ((p >> 32) as u32, p as u32)
}

/// Philox4x32 with 10 rounds.
pub fn philox4x32(key: [u32; 2], ctr: [u32; 4]) -> [u32; 4] {
    let (mut k, mut c) = (key, ctr);
    for round in 0..10 {
        if round > 0 {
            k[0] = k[0].wrapping_add(W0);
            k[1] = k[1].wrapping_add(W1);
        }
        let (hi0, lo0) = mulhilo(M0, c[0]);
        let (hi1, lo1) = mulhilo(M1, c[2]);
        c = [hi1 ^ c[1] ^ k[0], lo1, hi0 ^ c[3] ^ k[1], lo0];
    }
    c
}

fn box_muller(a: u32, b: u32) -> (f64, f64) {
    let u1 = ((a >> 8) as f64 + 1.0) * (1.0 / 16_777_216.0);
    let u2 = (b >> 8) as f64 * (1.0 / 16_777_216.0);
    let r = (-2.0 * u1.ln()).sqrt();
    let th = std::f64::consts::TAU * u2;
    (r * th.cos(), r * th.sin())
}

/// Standard normal noise for one sample: `out[i]` is element i of sample `sample` in `stream`.
pub fn fill_normal(seed: u64, stream: u32, sample: u32, out: &mut [f32]) {
    let key = [seed as u32, (seed >> 32) as u32];
    for (b, chunk) in out.chunks_mut(4).enumerate() {
        let r = philox4x32(key, [b as u32, sample, stream, TAG]);
        let (z0, z1) = box_muller(r[0], r[1]);
        let (z2, z3) = box_muller(r[2], r[3]);
        for (o, z) in chunk.iter_mut().zip([z0, z1, z2, z3]) {
            *o = z as f32;
        }
    }
}

/// Noise for samples `first..first + n`, each of `per_sample` elements, laid out sample-major.
pub fn normal_batch(seed: u64, stream: u32, first: usize, n: usize, per_sample: usize) -> Vec<f32> {
    let mut v = vec![0.0; n * per_sample];
    for (i, s) in v.chunks_mut(per_sample).enumerate() {
        fill_normal(seed, stream, (first + i) as u32, s);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    // Known-answer vectors from the Random123 distribution (kat_vectors, philox4x32_10).
    #[test]
    fn philox_known_answers() {
        assert_eq!(
            philox4x32([0, 0], [0, 0, 0, 0]),
            [0x6627_e8d5, 0xe169_c58d, 0xbc57_ac4c, 0x9b00_dbd8]
        );
        assert_eq!(
            philox4x32([0xffff_ffff; 2], [0xffff_ffff; 4]),
            [0x408f_276d, 0x41c8_3b0e, 0xa20b_c7c6, 0x6d54_51fd]
        );
        assert_eq!(
            philox4x32(
                [0xa409_3822, 0x299f_31d0],
                [0x243f_6a88, 0x85a3_08d3, 0x1319_8a2e, 0x0370_7344]
            ),
            [0xd16c_fe09, 0x94fd_cceb, 0x5001_e420, 0x2412_6ea1]
        );
    }

    #[test]
    fn normals_look_standard() {
        let v = normal_batch(7, STREAM_INIT, 0, 4, 25_000);
        let n = v.len() as f64;
        let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n;
        let var = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n;
        assert!(mean.abs() < 0.02, "mean {mean}");
        assert!((var - 1.0).abs() < 0.02, "var {var}");
    }

    #[test]
    fn a_sample_does_not_depend_on_the_batch_split() {
        let all = normal_batch(3, 5, 0, 3, 10);
        let third = normal_batch(3, 5, 2, 1, 10);
        assert_eq!(&all[20..], &third[..]);
        assert_ne!(normal_batch(3, 6, 2, 1, 10), third);
    }
}
