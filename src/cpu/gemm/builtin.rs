//! The built-in GEMM ([`gemm_builtin`]): the `gemm` crate's kernels, pure
//! Rust, always there; large products cut into blocks of C shared among
//! the CPU backend's threads.

use super::{check_extent, wants_threads};
use crate::real::Real;
use gemm::Parallelism;

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
    let threads =
        wants_threads(m, k, n) && distinct_places(m, n, sc) && !crate::cpu::share::is_serial();
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
            super::super::share::share(runs, run);
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
    super::super::share::share((0..split.parts).collect(), |part| {
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
