//! A system BLAS loaded at run time ([`Blas`]): its `cblas_sgemm` and
//! `cblas_dgemm`, found by name in OpenBLAS, MKL, BLIS or the OpenBLAS of
//! PyPI's `scipy-openblas32`, and called on row-major operands.

use super::{Gemm, check_extent};
use crate::error::{Error, Result};
use std::ffi::c_int;
#[cfg(not(target_arch = "wasm32"))]
use std::ffi::{CStr, c_char};

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
pub(super) const CBLAS_TRANS: c_int = 112;

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

    pub(super) fn sgemm(&self) -> CblasGemm<f32> {
        self.sgemm
    }

    pub(super) fn dgemm(&self) -> CblasGemm<f64> {
        self.dgemm
    }
}

/// How CBLAS reads a rows × cols operand with these strides: not transposed
/// with leading dimension rs (rows contiguous), or transposed with leading
/// dimension cs (columns contiguous).
pub(super) fn operand(
    rows: usize,
    cols: usize,
    (rs, cs): (isize, isize),
) -> Option<(c_int, usize)> {
    if cs == 1 && rs >= cols.max(1) as isize {
        Some((CBLAS_NO_TRANS, rs as usize))
    } else if rs == 1 && cs >= rows.max(1) as isize {
        Some((CBLAS_TRANS, cs as usize))
    } else {
        None
    }
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
