//! The CPU backend's matrix product: the built-in GEMM (the `gemm` crate,
//! pure Rust, always there) or a system BLAS found at run time, whichever
//! is faster at the product's shape on this machine.
//!
//! Which is faster is not known from the library's name. Debian's OpenBLAS
//! 0.3.21 ran 1024³ at 147 GFLOP/s against the built-in GEMM's 110 on two
//! AMD EPYC cores where it used its AVX-512 kernels, and at half the
//! built-in GEMM's speed on a machine where `OPENBLAS_CORETYPE=Haswell`
//! held it to AVX2 (`docs/performance.md`). So under `auto` each product
//! shape class ([`Shape`]: sizes, transpositions, float) gets a short
//! trial of both GEMMs the first time a product of it is asked for (a few
//! products of each on operands of its own; `choice.rs`), and every
//! product of that shape in the process then runs on the faster: the choice
//! is made once and kept, so a run gives the same bits each time within a
//! process; between processes it can differ where the two are close
//! (docs/DESIGN.md). `off` or the library's name pins it. The library is
//! not a build dependency: the first product large enough for it loads it,
//! and a machine without one keeps the built-in GEMM. OpenBLAS runs its own
//! threads (`OPENBLAS_NUM_THREADS` sets how many); the built-in GEMM and
//! the elementwise passes run on rayon's (`RAYON_NUM_THREADS`).
//!
//! The environment variable `RETROPROP_BLAS` chooses:
//!
//! | value | GEMM used |
//! | --- | --- |
//! | unset or `auto` | the first of OpenBLAS (`libopenblas.so.0`, `libopenblas.so`, `libopenblas.dylib`) and Intel MKL (`libmkl_rt.so.3`, `libmkl_rt.so.2`, `libmkl_rt.so`) that loads, for the product shapes whose trial it wins; the built-in one for the others, and for all where none loads |
//! | `off` | the built-in one |
//! | a library name or path | that library for every product large enough (its `cblas_sgemm` and `cblas_dgemm`, or `scipy_cblas_sgemm`... as in the OpenBLAS of PyPI's `scipy-openblas32`), no trial; if it cannot be loaded, the built-in one, and [`check_env`] says why |
//!
//! Products too small to be split over threads (m·n·k < 2²¹) always run on
//! the built-in GEMM, single-threaded: the library call would cost more
//! than it saves; so do thin ones (m or n under 32, or k under 128), where
//! the built-in GEMM was as fast or faster, and middling ones (m·n·k under
//! 2²⁵, such as a batch of 200 through 256-wide layers), where it was as
//! fast and a small network never wakes the library's thread pool, whose
//! idle threads spin on `sched_yield` beside rayon's. Either way C = α·op(A)·op(B) + β·C, and with β = 0 the
//! old contents of C are not read (so NaN in it does not spread).
//!
//! ```
//! use retroprop::cpu::{Shape, route};
//! // Which GEMMs this process uses, for logs and benchmark reports.
//! println!("CPU GEMM: {}", retroprop::cpu::gemm_name());
//! // Which one runs a forward product of batch 64 through a 1024-wide
//! // layer, and why (under `auto`, this runs the shape's trial).
//! let forward = Shape {
//!     m: 64,
//!     k: 1024,
//!     n: 1024,
//!     a_transposed: false,
//!     b_transposed: true,
//!     float_bytes: 4,
//! };
//! println!("{forward}: {:?}", route(forward));
//! ```

mod builtin;
mod choice;
mod library;
mod route;

pub use builtin::gemm_builtin;
pub use choice::{Engine, Shape, Trial};
pub use library::{Blas, CblasGemm};
pub use route::{Route, blas, check_env, gemm_name, gemms_of, route, trials};

use crate::real::Real;
use route::shape_of;

/// Smallest m·n·k worth a thread pool. Below it sharing cost more than it
/// saved: fits of 64-100-10 at batch 200 (200 × 64 × 100 = 2^20.3) ran
/// 111 µs a step with their products shared, 92 with none; 64-256-256-10
/// kept its 705 µs (its 200 × 64 × 256 = 2^21.6 is still shared; at 2^22
/// it is not, and the step took 750). With the pool's threads kept
/// looking for work between passes (`KeepWarm` in backend.rs) 2^19 still
/// lost: a 64-100-10 digits fit took 0.105 s against 0.090 at 2^21, and
/// 64-256-256-10 gained nothing. Fits on two cores with AVX-512,
/// 2026-12-03: a machine with many cores may gain from sharing smaller
/// products, and is not measured.
const PARALLEL_WORK: usize = 1 << 21;

/// Smallest m·n·k the library gets. Below it the built-in GEMM was as
/// fast (batch 200 through 256-wide layers, 200 × 256 × 256: 40 against 38
/// GFLOP/s, the best of five loops of 200 calls, on 2 cores shared with
/// other builds), and a network whose
/// products all stay below never starts OpenBLAS's threads: in a fit of
/// a few steps per epoch (scikit-learn's digits and breast cancer sets,
/// docs/performance.md "From Python") their idle spinning on
/// `sched_yield` took 45 % of the process's samples under `perf`, and the
/// fits ran up to 2× longer than on the built-in GEMM alone.
const BLAS_MIN_WORK: usize = 1 << 25;

/// Smallest m and n the library gets: with a side of 10 (the standard
/// work's output layer) OpenBLAS 0.3.21 ran at half the built-in GEMM's
/// speed, with 64 it was faster (`retroprop bench --full --devices cpu`).
const BLAS_MIN_SIDE: usize = 32;

/// Smallest k the library gets. OpenBLAS clears C in a pass of its own
/// when β = 0 and then accumulates into it; with a short k (the weight
/// gradients at batch 64: k = 64) that pass is a large share of the work,
/// and the built-in GEMM, which writes C once, was as fast or faster (105–110
/// against 65–106 GFLOP/s at 1024 × 64 × 1024; even at k = 128).
const BLAS_MIN_K: usize = 128;

/// Panics unless every element a rows × cols matrix with these strides
/// reaches is inside `data`: the bounds both GEMMs rely on.
fn check_extent<T>(rows: usize, cols: usize, data: &[T], (rs, cs): (isize, isize), name: &str) {
    if rows == 0 || cols == 0 {
        return;
    }
    assert!(rs >= 0 && cs >= 0, "gemm: {name} has a negative stride");
    let last = (rows - 1)
        .checked_mul(rs as usize)
        .zip((cols - 1).checked_mul(cs as usize))
        .and_then(|(r, c)| r.checked_add(c));
    assert!(
        last.is_some_and(|last| last < data.len()),
        "gemm: {name} too small"
    );
}

/// Whether an m × k by k × n product is large enough for the BLAS library
/// (which runs it where the library is named, or under `auto` where the
/// shape's trial finds it faster; the library is loaded by the first
/// product that is).
pub(super) fn to_library(m: usize, k: usize, n: usize) -> bool {
    m.saturating_mul(n).saturating_mul(k) >= BLAS_MIN_WORK
        && m.min(n) >= BLAS_MIN_SIDE
        && k >= BLAS_MIN_K
}

/// Whether an m × k by k × n product is large enough to share among
/// threads (the CPU backend also asks, to know whether a step uses its
/// pool at all): [`PARALLEL_WORK`] multiply-adds, or half as many where
/// one operand or C has 2¹⁶ elements or more. Packing or writing that
/// one is most of such a product's time, and each share does half of
/// it: breast cancer's last batch of each epoch, 26 rows through
/// 256-wide layers (26 × 256 × 256 = 2^20.7), went on two threads, and its
/// (256, 256) fit from 121.5 to 118.3 ms (`examples/fit_timing.rs`,
/// medians of 8, interleaved); a 64-100-10 digits fit, whose 200 × 64 ×
/// 100 = 2^20.3 has no such side, stayed at 91–92 ms.
pub(super) fn wants_threads(m: usize, k: usize, n: usize) -> bool {
    let work = m.saturating_mul(n).saturating_mul(k);
    let largest = (m.saturating_mul(k))
        .max(k.saturating_mul(n))
        .max(m.saturating_mul(n));
    work >= PARALLEL_WORK || (work >= PARALLEL_WORK / 2 && largest >= 1 << 16)
}

/// A float the CPU backend multiplies matrices in (`f32`, `f64`), with its
/// CBLAS routine. The math ([`Real`]) knows nothing of BLAS; this is where
/// a float meets the library.
pub trait Gemm: Real {
    /// `C = alpha · op(A) · op(B) + beta · C` on row-major matrices given by
    /// (row, column) strides; `m × k` times `k × n`. Runs on a system BLAS
    /// when one is loaded and the product is large, else on the built-in
    /// GEMM (see the [module](self) documentation).
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
        gemm(
            m, k, n, alpha, a, a_strides, b, b_strides, beta, c, c_strides,
        );
    }
    /// The library's `cblas_sgemm` or `cblas_dgemm`, whichever this type is.
    #[doc(hidden)]
    fn cblas_gemm(blas: &Blas) -> CblasGemm<Self>;
}

impl Gemm for f32 {
    fn cblas_gemm(blas: &Blas) -> CblasGemm<f32> {
        blas.sgemm()
    }
}

impl Gemm for f64 {
    fn cblas_gemm(blas: &Blas) -> CblasGemm<f64> {
        blas.dgemm()
    }
}

/// [`Gemm::gemm`]: the BLAS library for products worth it, else the
/// built-in GEMM.
#[allow(clippy::too_many_arguments)]
fn gemm<T: Gemm>(
    m: usize,
    k: usize,
    n: usize,
    alpha: T,
    a: &[T],
    a_strides: (isize, isize),
    b: &[T],
    b_strides: (isize, isize),
    beta: T,
    c: &mut [T],
    c_strides: (isize, isize),
) {
    let shape = shape_of::<T>(m, k, n, a_strides, b_strides, c_strides);
    #[cfg(test)]
    if let Some(shape) = shape {
        tests::SEEN.lock().unwrap().push(shape);
    }
    if let Some(shape) = shape
        && route(shape).engine() == Engine::Library
        && let Some(blas) = blas()
        && blas.gemm(
            m, k, n, alpha, a, a_strides, b, b_strides, beta, c, c_strides,
        )
    {
        return;
    }
    gemm_builtin(
        m, k, n, alpha, a, a_strides, b, b_strides, beta, c, c_strides,
    );
}

#[cfg(test)]
pub(crate) mod tests {
    use super::Shape;
    use std::sync::Mutex;

    /// The shape of every product [`Gemm::gemm`](super::Gemm::gemm) was
    /// asked for (in this test binary, by every test: read it by shapes of
    /// your own).
    pub(crate) static SEEN: Mutex<Vec<Shape>> = Mutex::new(Vec::new());
}
