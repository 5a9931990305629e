//! Row-major matrix products through the `gemm` crate (runtime-dispatched AVX2/AVX-512/NEON
//! micro-kernels), with arbitrary strides so transposes cost nothing.

/// A strided matrix operand: element (r, c) is at `data[r * rs + c * cs]`.
#[derive(Clone, Copy)]
pub struct Mat<'a> {
    pub data: &'a [f32],
    pub rs: usize,
    pub cs: usize,
}

impl<'a> Mat<'a> {
    /// A contiguous row-major matrix with `cols` columns.
    pub fn rows(data: &'a [f32], cols: usize) -> Self {
        Mat {
            data,
            rs: cols,
            cs: 1,
        }
    }

    /// The transpose of a contiguous row-major matrix with `cols` columns.
    pub fn transposed(data: &'a [f32], cols: usize) -> Self {
        Mat {
            data,
            rs: 1,
            cs: cols,
        }
    }

    fn covers(&self, r: usize, c: usize) -> bool {
        r == 0 || c == 0 || (r - 1) * self.rs + (c - 1) * self.cs < self.data.len()
    }
}

/// dst (m×n, row-major) = (accumulate ? dst : 0) + scale · a (m×k) · b (k×n).
/// `threaded` lets the product itself use the rayon pool (for a single large image).
#[allow(clippy::too_many_arguments)]
pub fn matmul(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [f32],
    a: Mat,
    b: Mat,
    scale: f32,
    accumulate: bool,
    threaded: bool,
) {
    assert!(
        dst.len() >= m * n && a.covers(m, k) && b.covers(k, n),
        "matmul operand too small"
    );
    if m == 0 || n == 0 {
        return;
    }
    let par = parallelism(threaded);
    // SAFETY: the asserts above keep every strided access inside its slice, and dst does not
    // overlap the inputs (it is a distinct &mut).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            a.data.as_ptr(),
            a.cs as isize,
            a.rs as isize,
            b.data.as_ptr(),
            b.cs as isize,
            b.rs as isize,
            1.0,
            scale,
            false,
            false,
            false,
            par,
        );
    }
}

#[cfg(not(target_arch = "wasm32"))]
fn parallelism(threaded: bool) -> gemm::Parallelism {
    if threaded {
        gemm::Parallelism::Rayon(0)
    } else {
        gemm::Parallelism::None
    }
}

#[cfg(target_arch = "wasm32")]
fn parallelism(_threaded: bool) -> gemm::Parallelism {
    gemm::Parallelism::None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strided_product_matches_a_naive_loop() {
        let (m, n, k) = (5, 7, 3);
        let a: Vec<f32> = (0..m * k).map(|i| i as f32 * 0.5 - 2.0).collect();
        let bt: Vec<f32> = (0..n * k).map(|i| (i % 5) as f32 - 1.5).collect(); // n×k
        let mut d = vec![1.0; m * n];
        matmul(
            m,
            n,
            k,
            &mut d,
            Mat::rows(&a, k),
            Mat::transposed(&bt, k),
            2.0,
            true,
            false,
        );
        for i in 0..m {
            for j in 0..n {
                let s: f32 = (0..k).map(|l| a[i * k + l] * bt[j * k + l]).sum();
                assert!((d[i * n + j] - (1.0 + 2.0 * s)).abs() < 1e-5);
            }
        }
    }
}
