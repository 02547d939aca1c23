//! The float types the CPU backend computes in: `f32` (what the GPU does) and
//! `f64` (the ground truth for gradient checks).

use num_traits::Float;
use std::fmt::Debug;

/// A float type the CPU reference backend can run in.
pub trait Real: Float + Debug + Default + Send + Sync + std::iter::Sum + 'static {
    /// Converts from `f64` (rounding for `f32`).
    fn of(v: f64) -> Self;
    /// Widens to `f64`.
    fn f64(self) -> f64;
    /// The complementary error function, 1 − erf, accurate in the tails.
    fn erfc(self) -> Self;
    /// `C = alpha · op(A) · op(B) + beta · C` on row-major matrices given by
    /// row and column strides; `m × k` times `k × n`.
    #[allow(clippy::too_many_arguments)]
    fn gemm(
        m: usize,
        k: usize,
        n: usize,
        alpha: Self,
        a: &[Self],
        a_strides: (isize, isize),
        b: &[Self],
        b_strides: (isize, isize),
        beta: Self,
        c: &mut [Self],
        c_strides: (isize, isize),
    );
}

macro_rules! impl_real {
    ($t:ty, $erfc:path) => {
        impl Real for $t {
            fn of(v: f64) -> Self {
                v as $t
            }
            fn f64(self) -> f64 {
                self as f64
            }
            fn erfc(self) -> Self {
                $erfc(self)
            }
            fn gemm(
                m: usize,
                k: usize,
                n: usize,
                alpha: Self,
                a: &[Self],
                (rsa, csa): (isize, isize),
                b: &[Self],
                (rsb, csb): (isize, isize),
                beta: Self,
                c: &mut [Self],
                (rsc, csc): (isize, isize),
            ) {
                if m == 0 || n == 0 {
                    return;
                }
                let last = |rows: usize, cols: usize, rs: isize, cs: isize| {
                    (rows.saturating_sub(1) as isize * rs + cols.saturating_sub(1) as isize * cs)
                        as usize
                };
                assert!(
                    k == 0 || last(m, k, rsa, csa) < a.len(),
                    "gemm: A too small"
                );
                assert!(
                    k == 0 || last(k, n, rsb, csb) < b.len(),
                    "gemm: B too small"
                );
                assert!(last(m, n, rsc, csc) < c.len(), "gemm: C too small");
                // Small products are not worth waking the thread pool for.
                let parallelism = if m * n * k >= 1 << 18 {
                    gemm::Parallelism::Rayon(0)
                } else {
                    gemm::Parallelism::None
                };
                // SAFETY: the asserts above keep every index the strides reach
                // inside the three slices, and C does not alias A or B (it is
                // borrowed mutably). The gemm crate computes
                // dst = alpha·dst + beta·lhs·rhs: its alpha is our beta.
                unsafe {
                    gemm::gemm(
                        m,
                        n,
                        k,
                        c.as_mut_ptr(),
                        csc,
                        rsc,
                        beta != 0.0,
                        a.as_ptr(),
                        csa,
                        rsa,
                        b.as_ptr(),
                        csb,
                        rsb,
                        beta,
                        alpha,
                        false,
                        false,
                        false,
                        parallelism,
                    )
                }
            }
        }
    };
}

impl_real!(f32, libm::erfcf);
impl_real!(f64, libm::erfc);
