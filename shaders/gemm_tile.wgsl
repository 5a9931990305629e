// The tiled GEMM main loop that conv2d_gemm.wgsl and attention.wgsl share: one workgroup
// accumulates a BM×BN tile of C = A·B over k in [k_begin, k_end), with A (M×K) and B (K×N)
// read through the including kernel's a_value and b_value. K is walked in slices of BK
// staged through workgroup memory; the next slice is fetched into registers while the
// current one is multiplied, so global latency hides behind the arithmetic. Each invocation
// owns TM×TN outputs, strided by the thread grid so that neighbouring lanes touch
// neighbouring addresses. The tile sizes are pipeline constants, set by the host from
// backend/gpu/ops/tiles.rs, so the dispatch size and the shader cannot disagree.
//
// The host declares `Stage`, the type of the staged slices, and `SLICE_SUMS` ahead of this
// file. For f32 (Stage = f32, SLICE_SUMS = false) products go straight into the f32
// accumulators. For the mixed precision's f16 arithmetic (Stage = f16, SLICE_SUMS = true)
// each K slice is multiplied and summed in f16 (BK products per output), and only the
// slice's sum is added to the f32 accumulator, so rounding error grows with BK, not with K.

override BM: u32 = 64u;
override BN: u32 = 64u;
override BK: u32 = 16u;
override TM: u32 = 4u;
override TN: u32 = 4u;
// A is stored k-major (A[k][m], attention's keys) rather than row-major (A[m][k], weights):
// lanes then walk m instead of k when loading it.
override A_KMAJOR: bool = false;
override THREADS: u32 = (BM / TM) * (BN / TN);
// Loads per invocation per slice (the host keeps both within MAX_LOADS).
override LA: u32 = (BM * BK) / THREADS;
override LB: u32 = (BK * BN) / THREADS;
const MAX_LOADS: u32 = 8u;
const MAX_ACC: u32 = 64u;

// A is stored transposed with one float of padding per row, so the transposing store of
// consecutive lanes falls on distinct banks. (Named sizes: naga 30 mis-orders the unnamed
// overrides that a size expression creates when more overrides follow it.)
override A_LEN: u32 = BK * (BM + 1u);
override B_LEN: u32 = BK * BN;
var<workgroup> a_s: array<Stage, A_LEN>;
var<workgroup> b_s: array<Stage, B_LEN>;
var<private> acc: array<f32, MAX_ACC>;
var<private> slice_acc: array<Stage, MAX_ACC>;
var<private> ra: array<Stage, MAX_LOADS>;
var<private> rb: array<Stage, MAX_LOADS>;

fn a_slot(li: u32, r: u32) -> vec2<u32> {
    let e = li + r * THREADS;
    if (A_KMAJOR) {
        return vec2<u32>(e % BM, e / BM);
    }
    return vec2<u32>(e / BK, e % BK);
}

// Slice k0 of A and B into registers; zero outside [.., k_end) and outside M and N (the
// kernel's a_value and b_value check M and N).
fn fetch(m0: u32, n0: u32, k0: u32, k_end: u32, li: u32) {
    for (var r = 0u; r < LA; r++) {
        let mk = a_slot(li, r);
        let k = k0 + mk.y;
        ra[r] = Stage(select(0.0, a_value(m0 + mk.x, k), k < k_end));
    }
    for (var r = 0u; r < LB; r++) {
        let e = li + r * THREADS;
        let k = k0 + e / BN;
        rb[r] = Stage(select(0.0, b_value(r, k, n0 + e % BN), k < k_end));
    }
}

fn gemm_tile(m0: u32, n0: u32, k_begin: u32, k_end: u32, li: u32) {
    for (var i = 0u; i < TM * TN; i++) {
        acc[i] = 0.0;
    }
    let tx = li % (BN / TN);
    let ty = li / (BN / TN);
    var k0 = k_begin;
    fetch(m0, n0, k0, k_end, li);
    while (k0 < k_end) {
        for (var r = 0u; r < LA; r++) {
            let mk = a_slot(li, r);
            a_s[mk.y * (BM + 1u) + mk.x] = ra[r];
        }
        for (var r = 0u; r < LB; r++) {
            b_s[li + r * THREADS] = rb[r];
        }
        workgroupBarrier();
        let next = k0 + BK;
        if (next < k_end) {
            fetch(m0, n0, next, k_end, li);
        }
        if (SLICE_SUMS) {
            for (var i = 0u; i < TM * TN; i++) {
                slice_acc[i] = Stage(0.0);
            }
        }
        for (var kk = 0u; kk < BK; kk++) {
            var a: array<Stage, 8>;
            var b: array<Stage, 8>;
            for (var i = 0u; i < TM; i++) {
                a[i] = a_s[kk * (BM + 1u) + ty + i * (BM / TM)];
            }
            for (var j = 0u; j < TN; j++) {
                b[j] = b_s[kk * BN + tx + j * (BN / TN)];
            }
            for (var i = 0u; i < TM; i++) {
                for (var j = 0u; j < TN; j++) {
                    if (SLICE_SUMS) {
                        slice_acc[i * TN + j] = fma(a[i], b[j], slice_acc[i * TN + j]);
                    } else {
                        acc[i * TN + j] = fma(f32(a[i]), f32(b[j]), acc[i * TN + j]);
                    }
                }
            }
        }
        if (SLICE_SUMS) {
            for (var i = 0u; i < TM * TN; i++) {
                acc[i] += f32(slice_acc[i]);
            }
        }
        workgroupBarrier();
        k0 = next;
    }
}

// The (row, column) of output (i, j) of invocation li within the tile.
fn tile_m(li: u32, i: u32) -> u32 {
    return li / (BN / TN) + i * (BM / TM);
}

fn tile_n(li: u32, j: u32) -> u32 {
    return li % (BN / TN) + j * (BN / TN);
}
