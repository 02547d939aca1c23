//! The CPU backend's matrix product: the built-in GEMM (the `gemm` crate,
//! pure Rust, always there) or a system BLAS found at run time.
//!
//! A tuned BLAS beats the built-in GEMM on large products: on the bench
//! machine (2 AMD EPYC cores) Debian's OpenBLAS 0.3.21 ran 1024³ at 147
//! GFLOP/s against 110, and the standard work at batch 1024 1.13× faster
//! (`docs/performance.md`). It is not a build dependency: the first product
//! large enough to be worth it loads the library, and a machine without one
//! keeps the built-in GEMM. OpenBLAS runs its own threads
//! (`OPENBLAS_NUM_THREADS` sets how many); the built-in GEMM and the
//! elementwise passes run on rayon's (`RAYON_NUM_THREADS`).
//!
//! The environment variable `RETROPROP_BLAS` chooses:
//!
//! | value | GEMM used |
//! | --- | --- |
//! | unset or `auto` | the first of OpenBLAS (`libopenblas.so.0`, `libopenblas.so`, `libopenblas.dylib`) and Intel MKL (`libmkl_rt.so.3`, `libmkl_rt.so.2`, `libmkl_rt.so`) that loads, else the built-in one |
//! | `off` | the built-in one |
//! | a library name or path | that library (its `cblas_sgemm` and `cblas_dgemm`, or `scipy_cblas_sgemm`... as in the OpenBLAS of PyPI's `scipy-openblas32`); if it cannot be loaded, the built-in one, and [`check_env`] says why |
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
//! // Which GEMM this process uses, for logs and benchmark reports.
//! println!("CPU GEMM: {}", retroprop::cpu::gemm_name());
//! ```

use crate::error::{Error, Result};
use crate::real::Real;
use gemm::Parallelism;
use std::ffi::c_int;
#[cfg(not(target_arch = "wasm32"))]
use std::ffi::{CStr, c_char};
use std::sync::OnceLock;

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

/// The C signature of `cblas_sgemm` and `cblas_dgemm`, with `T` the float.
pub type CblasGemm<T> = unsafe extern "C" fn(
    c_int,
    c_int,
    c_int,
    c_int,
    c_int,
    c_int,
    T,
    *const T,
    c_int,
    *const T,
    c_int,
    T,
    *mut T,
    c_int,
);

const CBLAS_ROW_MAJOR: c_int = 101;
const CBLAS_NO_TRANS: c_int = 111;
const CBLAS_TRANS: c_int = 112;

/// Library names `auto` tries, in order.
const AUTO: [&str; 6] = [
    "libopenblas.so.0",
    "libopenblas.so",
    "libopenblas.dylib",
    "libmkl_rt.so.3",
    "libmkl_rt.so.2",
    "libmkl_rt.so",
];

/// Prefixes of the CBLAS names, tried in order: none (OpenBLAS, MKL,
/// BLIS), and `scipy_`, which the OpenBLAS build of PyPI's
/// `scipy-openblas32` puts before every name.
#[cfg(not(target_arch = "wasm32"))]
const PREFIXES: [&str; 2] = ["", "scipy_"];

/// A loaded BLAS library's GEMM routines.
#[derive(Debug)]
pub struct Blas {
    name: String,
    sgemm: CblasGemm<f32>,
    dgemm: CblasGemm<f64>,
    // Keeps the routines above mapped; declared last so it is dropped last.
    #[cfg(not(target_arch = "wasm32"))]
    _library: libloading::Library,
}

impl Blas {
    /// Loads the library `name` (a file name the dynamic loader searches
    /// for, or a path) and finds `cblas_sgemm` and `cblas_dgemm` in it.
    ///
    /// # Errors
    /// [`Error::Blas`] naming the library, when it cannot be loaded or
    /// lacks either routine.
    #[cfg(target_arch = "wasm32")]
    pub fn load(name: &str) -> Result<Blas> {
        Err(Error::Blas {
            library: name.to_string(),
            reason: "the browser loads no native libraries".into(),
        })
    }

    /// Loads the library `name` (a file name the dynamic loader searches
    /// for, or a path) and finds `cblas_sgemm` and `cblas_dgemm` in it.
    ///
    /// # Errors
    /// [`Error::Blas`] naming the library, when it cannot be loaded or
    /// lacks either routine.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn load(name: &str) -> Result<Blas> {
        let fail = |reason: String| Error::Blas {
            library: name.to_string(),
            reason,
        };
        // SAFETY: loading runs the library's initialisers; a BLAS library's
        // do no more than read the CPU type and the thread settings.
        let library = unsafe { libloading::Library::new(name) }.map_err(|e| fail(e.to_string()))?;
        // The prefix the library's CBLAS names carry, found by its sgemm.
        let prefix = PREFIXES
            .into_iter()
            .find(|p| unsafe { symbol::<CblasGemm<f32>>(&library, p, "cblas_sgemm") }.is_ok())
            .unwrap_or("");
        // SAFETY: the symbols have CBLAS's C signatures, as `CblasGemm`.
        let (sgemm, dgemm) = unsafe {
            let sgemm = symbol::<CblasGemm<f32>>(&library, prefix, "cblas_sgemm").map_err(fail)?;
            let dgemm = symbol::<CblasGemm<f64>>(&library, prefix, "cblas_dgemm").map_err(fail)?;
            (sgemm, dgemm)
        };
        let name = describe(&library, prefix).unwrap_or_else(|| name.to_string());
        Ok(Blas {
            name,
            sgemm,
            dgemm,
            _library: library,
        })
    }

    /// The library, with its version and CPU kernel when it says (OpenBLAS
    /// does: `OpenBLAS 0.3.21, Zen`), else the name it was loaded by.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// C = α·op(A)·op(B) + β·C through the library, for row-major operands
    /// given by strides as in [`Gemm::gemm`]. Returns `false`, computing
    /// nothing, when a stride pattern or size is one CBLAS cannot express
    /// (neither stride 1, or beyond `i32`).
    #[allow(clippy::too_many_arguments)]
    pub fn gemm<T: Gemm>(
        &self,
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
    ) -> bool {
        check_extent(m, k, a, a_strides, "A");
        check_extent(k, n, b, b_strides, "B");
        check_extent(m, n, c, c_strides, "C");
        let (Some((ta, lda)), Some((tb, ldb))) =
            (operand(m, k, a_strides), operand(k, n, b_strides))
        else {
            return false;
        };
        let ldc = match c_strides {
            (rs, 1) if rs >= n.max(1) as isize => rs,
            _ => return false,
        };
        let int = |v: usize| c_int::try_from(v).ok();
        let (Some(m), Some(n), Some(k), Some(lda), Some(ldb), Some(ldc)) = (
            int(m),
            int(n),
            int(k),
            int(lda),
            int(ldb),
            int(ldc as usize),
        ) else {
            return false;
        };
        let f = T::cblas_gemm(self);
        // SAFETY: `check_extent` keeps every element the strides reach inside
        // the slices, `operand` checked each leading dimension covers its
        // rows, and C is borrowed mutably so it aliases neither operand.
        unsafe {
            f(
                CBLAS_ROW_MAJOR,
                ta,
                tb,
                m,
                n,
                k,
                alpha,
                a.as_ptr(),
                lda,
                b.as_ptr(),
                ldb,
                beta,
                c.as_mut_ptr(),
                ldc,
            )
        };
        true
    }

    pub(crate) fn sgemm(&self) -> CblasGemm<f32> {
        self.sgemm
    }

    pub(crate) fn dgemm(&self) -> CblasGemm<f64> {
        self.dgemm
    }
}

/// How CBLAS reads a rows × cols operand with these strides: not transposed
/// with leading dimension rs (rows contiguous), or transposed with leading
/// dimension cs (columns contiguous).
fn operand(rows: usize, cols: usize, (rs, cs): (isize, isize)) -> Option<(c_int, usize)> {
    if cs == 1 && rs >= cols.max(1) as isize {
        Some((CBLAS_NO_TRANS, rs as usize))
    } else if rs == 1 && cs >= rows.max(1) as isize {
        Some((CBLAS_TRANS, cs as usize))
    } else {
        None
    }
}

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

/// The symbol `prefix` + `name` of `library`, or the loader's reason.
///
/// # Safety
/// `T` must be the symbol's true type.
#[cfg(not(target_arch = "wasm32"))]
unsafe fn symbol<T: Copy>(
    library: &libloading::Library,
    prefix: &str,
    name: &str,
) -> std::result::Result<T, String> {
    let full = format!("{prefix}{name}\0");
    // SAFETY: the caller vouches for the type.
    unsafe { library.get::<T>(full.as_bytes()) }
        .map(|s| *s)
        .map_err(|e| e.to_string())
}

/// The library's own description: OpenBLAS's, shortened to its version and
/// the CPU kernel it chose (`OpenBLAS 0.3.21, Zen`), or MKL's version line.
#[cfg(not(target_arch = "wasm32"))]
fn describe(library: &libloading::Library, prefix: &str) -> Option<String> {
    type Text = unsafe extern "C" fn() -> *const c_char;
    type Version = unsafe extern "C" fn(*mut c_char, c_int);
    // SAFETY: MKL_Get_Version_String writes at most `len` bytes, NUL
    // included, into the buffer it is given.
    if let Ok(version) = unsafe { symbol::<Version>(library, "", "MKL_Get_Version_String") } {
        let mut buffer = [0 as c_char; 256];
        unsafe { version(buffer.as_mut_ptr(), buffer.len() as c_int) };
        buffer[buffer.len() - 1] = 0;
        // SAFETY: NUL-terminated above at the latest.
        let text = unsafe { CStr::from_ptr(buffer.as_ptr()) }.to_string_lossy();
        // "Intel(R) oneAPI Math Kernel Library Version 2026.2-Product Build ..."
        let version = text.split("Version ").nth(1)?.split('-').next()?.trim();
        return Some(format!("Intel MKL {version}"));
    }
    // SAFETY: both OpenBLAS functions take nothing and return pointers to
    // static NUL-terminated strings.
    unsafe {
        let config = symbol::<Text>(library, prefix, "openblas_get_config").ok()?;
        let core = symbol::<Text>(library, prefix, "openblas_get_corename").ok()?;
        let text = |f: &Text| {
            let p = f();
            (!p.is_null()).then(|| CStr::from_ptr(p).to_string_lossy().into_owned())
        };
        let config = text(&config)?;
        let version: Vec<&str> = config.split_whitespace().take(2).collect();
        Some(match text(&core) {
            Some(core) => format!("{}, {core}", version.join(" ")),
            None => version.join(" "),
        })
    }
}

/// The choice `RETROPROP_BLAS` made, settled once per process.
struct Choice {
    blas: Option<Blas>,
    /// Why the library asked for could not be used.
    error: Option<Error>,
}

fn choice() -> &'static Choice {
    static CHOICE: OnceLock<Choice> = OnceLock::new();
    CHOICE.get_or_init(|| {
        let wanted = std::env::var("RETROPROP_BLAS").unwrap_or_default();
        match wanted.trim() {
            "off" => Choice {
                blas: None,
                error: None,
            },
            "" | "auto" => Choice {
                blas: AUTO.iter().find_map(|name| Blas::load(name).ok()),
                error: None,
            },
            name => match Blas::load(name) {
                Ok(blas) => Choice {
                    blas: Some(blas),
                    error: None,
                },
                Err(e) => {
                    log::warn!("{e}");
                    Choice {
                        blas: None,
                        error: Some(e),
                    }
                }
            },
        }
    })
}

/// The BLAS library the CPU backend uses, if any (see the module docs).
pub fn blas() -> Option<&'static Blas> {
    choice().blas.as_ref()
}

/// Which GEMM the CPU backend uses: the BLAS library's [name](Blas::name),
/// or `built-in GEMM`.
pub fn gemm_name() -> String {
    match blas() {
        Some(b) => b.name().to_string(),
        None => "built-in GEMM".to_string(),
    }
}

/// Fails when `RETROPROP_BLAS` names a library that cannot be used (the CPU
/// backend then runs on the built-in GEMM); programs call this at start to
/// report it rather than run slower unnoticed.
///
/// # Errors
/// [`Error::Blas`] with the library and the loader's reason.
pub fn check_env() -> Result<()> {
    match &choice().error {
        Some(Error::Blas { library, reason }) => Err(Error::Blas {
            library: library.clone(),
            reason: reason.clone(),
        }),
        _ => Ok(()),
    }
}

/// C = α·op(A)·op(B) + β·C with the built-in GEMM: row-major operands given
/// by (row, column) strides, m × k times k × n.
///
/// # Panics
/// If a stride reaches outside its slice.
#[allow(clippy::too_many_arguments)]
pub fn gemm_builtin<T: Real>(
    m: usize,
    k: usize,
    n: usize,
    alpha: T,
    a: &[T],
    (rsa, csa): (isize, isize),
    b: &[T],
    (rsb, csb): (isize, isize),
    beta: T,
    c: &mut [T],
    (rsc, csc): (isize, isize),
) {
    if m == 0 || n == 0 {
        return;
    }
    if k > 0 {
        check_extent(m, k, a, (rsa, csa), "A");
        check_extent(k, n, b, (rsb, csb), "B");
    }
    check_extent(m, n, c, (rsc, csc), "C");
    let (a, b, c) = (
        Ptr(a.as_ptr().cast_mut()),
        Ptr(b.as_ptr().cast_mut()),
        Ptr(c.as_mut_ptr()),
    );
    let (sa, sb, sc) = ((rsa, csa), (rsb, csb), (rsc, csc));
    // Small products are not worth waking the thread pool for, and threads
    // may only write a C whose elements have places of their own.
    let threads = wants_threads(m, k, n) && distinct_places(m, n, sc) && !super::share::is_serial();
    // One block of C, `rows` × `cols` from the given corners of A, B and
    // C, on this thread. Every call passes pointers offset inside the
    // checked extents, and blocks run at once are disjoint parts of a C
    // whose strides give every element a place of its own
    // (`distinct_places`), so no two threads write one place.
    let block = |rows: usize, cols: usize, (a, b, c): (Ptr<T>, Ptr<T>, Ptr<T>)| {
        // SAFETY: as above; C does not alias A or B (it is borrowed
        // mutably).
        unsafe {
            gemm_raw(
                rows,
                k,
                cols,
                alpha,
                a,
                sa,
                b,
                sb,
                beta,
                c,
                sc,
                Parallelism::None,
            )
        }
    };
    if let Some(rows) = narrow_block(m, n, sa, sb) {
        let run = |blocks: std::ops::Range<usize>| {
            for first in blocks.map(|b| b * rows) {
                // SAFETY: rows `first..` of A and C, inside their extents.
                let corners = unsafe {
                    (
                        a.offset(first as isize * rsa),
                        b,
                        c.offset(first as isize * rsc),
                    )
                };
                block(rows.min(m - first), n, corners);
            }
        };
        let blocks = m.div_ceil(rows);
        if threads {
            let per = blocks.div_ceil(rayon::current_num_threads().max(1));
            let runs = (0..blocks)
                .step_by(per)
                .map(|b| b..(b + per).min(blocks))
                .collect();
            super::share::share(runs, run);
        } else {
            run(0..blocks);
        }
        return;
    }
    let split = threads
        .then(|| Split::of(m, k, n, rayon::current_num_threads()))
        .flatten();
    let Some(split) = split else {
        let parallelism = if threads {
            Parallelism::Rayon(0)
        } else {
            Parallelism::None
        };
        // SAFETY: `check_extent` keeps every index inside the three slices,
        // C does not alias A or B (it is borrowed mutably), and the crate's
        // threads write C only where its elements have places of their own.
        unsafe { gemm_raw(m, k, n, alpha, a, sa, b, sb, beta, c, sc, parallelism) };
        return;
    };
    super::share::share((0..split.parts).collect(), |part| {
        let (start, len) = split.range(part);
        let start = start as isize;
        // SAFETY: each part is a block of C's rows or columns inside the
        // checked extents, and the blocks are disjoint.
        if split.along_columns {
            let corners = unsafe { (a, b.offset(start * csb), c.offset(start * csc)) };
            block(m, len, corners);
        } else {
            let corners = unsafe { (a.offset(start * rsa), b, c.offset(start * rsc)) };
            block(len, n, corners);
        }
    });
}

/// The rows a block of a narrow product takes, for a product cut into
/// blocks of rows: one whose A has its rows contiguous and B its columns
/// (a dense layer's forward product, Z = X·Wᵀ) and at most
/// [`NARROW_SIDE`] columns. The gemm crate computes a product of at most
/// 16 × 16 elements in that layout as dot products along k; a larger one
/// it packs both operands for, and a classifier's output layer then cost
/// more than its arithmetic: 200 × 256 × 2 took 21 µs, two blocks of 128
/// and 72 rows ~2 (`examples/gemm_blocks.rs`, 2026-12-03). Every block
/// takes the dot products, whatever m is and however the blocks are
/// shared among threads, so each row's bits are the same in any batch.
fn narrow_block(
    m: usize,
    n: usize,
    (_, csa): (isize, isize),
    (rsb, _): (isize, isize),
) -> Option<usize> {
    (csa == 1 && rsb == 1 && n <= NARROW_SIDE && m * n > NARROW_BLOCK).then(|| NARROW_BLOCK / n)
}

/// Widest product (columns of C) cut into blocks of rows ([`narrow_block`]).
const NARROW_SIDE: usize = 16;

/// Elements of C in a block of a narrow product: the gemm crate's limit
/// for its dot-product kernels.
const NARROW_BLOCK: usize = 16 * 16;

/// Whether an m × k by k × n product goes to the BLAS library, when one is
/// loaded (the library is loaded by the first product that would).
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

/// Whether an m × n C with strides `(rsc, csc)` has a place of its own for
/// every element: row- or column-major, rows (columns) no closer than their
/// length. Other strides (0, or overlapping rows) are accepted, as BLAS
/// accepts them, but written by one thread.
fn distinct_places(m: usize, n: usize, (rsc, csc): (isize, isize)) -> bool {
    (csc == 1 && rsc.unsigned_abs() >= n) || (rsc == 1 && csc.unsigned_abs() >= m)
}

/// A pointer into an operand, shared by the threads of a split product.
struct Ptr<T>(*mut T);

impl<T> Clone for Ptr<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for Ptr<T> {}
// SAFETY: the threads read A and B and write disjoint blocks of C.
unsafe impl<T> Send for Ptr<T> {}
// SAFETY: as for Send.
unsafe impl<T> Sync for Ptr<T> {}

impl<T> Ptr<T> {
    /// The pointer `count` elements on.
    ///
    /// # Safety
    /// The result must stay inside the operand's slice.
    unsafe fn offset(self, count: isize) -> Self {
        // SAFETY: the caller keeps it inside the slice.
        Ptr(unsafe { self.0.offset(count) })
    }
}

/// A product cut into blocks of C's columns (or rows), one single-threaded
/// GEMM a block on rayon's pool, instead of the gemm crate's own threading.
///
/// At the sizes a scikit-learn-style fit runs (batch 200, 256 units) the
/// gemm crate's threads gained little on the forward product, whose
/// weights are read transposed; a step's products took 641–656 µs on its
/// threads against 505–522 in blocks (two cores with AVX-512,
/// `examples/gemm_blocks.rs`, docs/performance.md "Run 7").
///
/// The blocks change no bits: every element of C is the same sum in the
/// same order, because the gemm crate blocks K by a depth that depends on
/// K alone (and the cache sizes), except in three paths it takes for
/// narrow or tiny products (matrix-vector for a side of 1, a dot-product
/// kernel for m·n ≤ 256, and a shallower depth when both sides are ≤ 64
/// and K > 512): [`Split::of`] only splits where every block takes the
/// path the whole product takes. tests/cpu_gemm.rs compares the bits.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Split {
    /// Blocks of columns (else of rows).
    along_columns: bool,
    /// Columns (or rows) a block; the last may have fewer.
    block: usize,
    /// Rows or columns in all.
    len: usize,
    /// Blocks.
    parts: usize,
}

impl Split {
    /// Alignment of a block (the widest SIMD register's f32 lanes).
    const ALIGN: usize = 16;

    /// How to split an m × k × n product over `threads` threads, or `None`
    /// where it should not be split.
    fn of(m: usize, k: usize, n: usize, threads: usize) -> Option<Split> {
        if threads < 2 {
            return None;
        }
        let along_columns = n >= m;
        let len = if along_columns { n } else { m };
        let block = len.div_ceil(threads).next_multiple_of(Self::ALIGN);
        let parts = len.div_ceil(block);
        if parts < 2 {
            return None;
        }
        let last = len - (parts - 1) * block;
        let side = if along_columns { m } else { n };
        // The gemm crate's special paths (see above) for the smallest block.
        let small = |a: usize, b: usize| a <= 64 && b <= 64;
        let same_path = side >= 2
            && last >= 2
            && side * last > 256
            && (k <= 512
                || (small(m, n) == small(side, block) && small(m, n) == small(side, last)));
        same_path.then_some(Split {
            along_columns,
            block,
            len,
            parts,
        })
    }

    /// The first column (or row) and the count of block `part`.
    fn range(&self, part: usize) -> (usize, usize) {
        let start = part * self.block;
        (start, self.block.min(self.len - start))
    }
}

/// The gemm crate's product on raw operands.
///
/// # Safety
/// Every index the strides reach must be inside the operands, and C must
/// not alias A or B.
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_raw<T: Real>(
    m: usize,
    k: usize,
    n: usize,
    alpha: T,
    a: Ptr<T>,
    (rsa, csa): (isize, isize),
    b: Ptr<T>,
    (rsb, csb): (isize, isize),
    beta: T,
    c: Ptr<T>,
    (rsc, csc): (isize, isize),
    parallelism: Parallelism,
) {
    // SAFETY: the caller's. The gemm crate computes dst = alpha·dst +
    // beta·lhs·rhs: its alpha is our beta, and it does not read dst when
    // told so (our β = 0).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.0,
            csc,
            rsc,
            beta != T::zero(),
            a.0,
            csa,
            rsa,
            b.0,
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
    if to_library(m, k, n)
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
