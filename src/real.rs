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
    /// (row, column) strides; `m × k` times `k × n`. Runs on a system BLAS
    /// when one is loaded and the product is large, else on the built-in
    /// GEMM (see [`crate::cpu::gemm`]).
    ///
    /// # Panics
    /// If a stride reaches outside its slice.
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
    ) {
        crate::cpu::gemm::gemm(
            m, k, n, alpha, a, a_strides, b, b_strides, beta, c, c_strides,
        );
    }
    /// The library's `cblas_sgemm` or `cblas_dgemm`, whichever this type is.
    #[doc(hidden)]
    fn cblas_gemm(blas: &crate::cpu::gemm::Blas) -> crate::cpu::gemm::CblasGemm<Self>;
}

macro_rules! impl_real {
    ($t:ty, $erfc:path, $cblas:ident) => {
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
            fn cblas_gemm(blas: &crate::cpu::gemm::Blas) -> crate::cpu::gemm::CblasGemm<Self> {
                blas.$cblas()
            }
        }
    };
}

impl_real!(f32, libm::erfcf, sgemm);
impl_real!(f64, libm::erfc, dgemm);
