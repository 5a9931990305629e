// Philox4x32-10 and Box–Muller: the WGSL twin of src/rng.rs (see there for the counter layout).
// WGSL has no 32×32→64 multiply, so the high word is assembled from 16-bit halves.

const PHILOX_M0: u32 = 0xD2511F53u;
const PHILOX_M1: u32 = 0xCD9E8D57u;
const PHILOX_W0: u32 = 0x9E3779B9u;
const PHILOX_W1: u32 = 0xBB67AE85u;
const RNG_TAG: u32 = 0x6464696du;

// (high, low) words of a * b.
fn mulhilo(a: u32, b: u32) -> vec2<u32> {
    let a_lo = a & 0xffffu;
    let a_hi = a >> 16u;
    let b_lo = b & 0xffffu;
    let b_hi = b >> 16u;
    let ll = a_lo * b_lo;
    let hl = a_hi * b_lo;
    let lh = a_lo * b_hi;
    let mid = (ll >> 16u) + (hl & 0xffffu) + (lh & 0xffffu);
    let hi = a_hi * b_hi + (hl >> 16u) + (lh >> 16u) + (mid >> 16u);
    return vec2<u32>(hi, a * b);
}

fn philox4x32(key_in: vec2<u32>, ctr_in: vec4<u32>) -> vec4<u32> {
    var k = key_in;
    var c = ctr_in;
    for (var i = 0u; i < 10u; i++) {
        if (i > 0u) {
            k = k + vec2<u32>(PHILOX_W0, PHILOX_W1);
        }
        let p0 = mulhilo(PHILOX_M0, c.x);
        let p1 = mulhilo(PHILOX_M1, c.z);
        c = vec4<u32>(p1.x ^ c.y ^ k.x, p1.y, p0.x ^ c.w ^ k.y, p0.y);
    }
    return c;
}

fn box_muller(a: u32, b: u32) -> vec2<f32> {
    let u1 = (f32(a >> 8u) + 1.0) * (1.0 / 16777216.0);
    let u2 = f32(b >> 8u) * (1.0 / 16777216.0);
    let r = sqrt(-2.0 * log(u1));
    let th = 6.283185307179586 * u2;
    return vec2<f32>(r * cos(th), r * sin(th));
}

// Four standard normals: elements 4·block .. 4·block+3 of `sample` in `stream`.
fn normal4(seed: vec2<u32>, block: u32, sample: u32, stream: u32) -> vec4<f32> {
    let r = philox4x32(seed, vec4<u32>(block, sample, stream, RNG_TAG));
    return vec4<f32>(box_muller(r.x, r.y), box_muller(r.z, r.w));
}
