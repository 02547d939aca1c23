//! Every dispatch's size, in one place, against the two limits that decide
//! whether a kernel computes what it is asked to:
//!
//! - `max_compute_workgroups_per_dimension` (65 535 on most devices): a
//!   1-D kernel folds its workgroups into a second dimension past it
//!   ([`grid`], `flat_index` in shaders/common.wgsl); a matmul's tiles are
//!   checked once, when a backend opens ([`check_products`]), and a pass
//!   holds at most [`MAX_PASS_ROWS`] rows, so that its row tiles fit.
//! - Mesa's llvmpipe, the CPU implementation of Vulkan behind lavapipe,
//!   ends a shader invocation's loops, silently, after 65 535 iterations in
//!   total ("maximum iterations before loop termination, shared between
//!   every loop in a shader": `LP_MAX_TGSI_LOOP_ITERATIONS` in gallivm).
//!   Past it a kernel returns partial sums as if they were whole: this is
//!   what made a step of more than about 65 300 rows, or a layer of 65 535
//!   units, wrong on lavapipe. So no kernel loops over a dimension a user
//!   chooses without a bound: a matmul's reduction runs in chunks of at
//!   most [`REDUCTION_CHUNK`] ([`reduction_chunks`]), the loss of a wide
//!   output layer takes a workgroup a row ([`WIDE_LOSS_MIN`]), and the
//!   row loops of the reductions are bounded by [`MAX_PASS_ROWS`].

use super::tiling::{MatmulChoice, MatmulTiling};
use crate::error::{Error, Result};
use crate::model::Mlp;

/// The most rows one pass (forward, loss, backward) holds; a larger batch
/// runs as micro-batches whose gradients add up to the same step. Keeps
/// every loop over a pass's rows within lavapipe's budget: the bias
/// gradient's column sums take rows / 16 iterations, the loss sum rows /
/// 256, a weight gradient's reduction is chunked; and a matmul's row tiles
/// (at least 4 rows each) within 65 535 a dimension.
pub(crate) const MAX_PASS_ROWS: usize = 1 << 19;

/// The longest reduction (K) one matmul dispatch runs: a longer one is
/// split into dispatches over consecutive ranges of K, each adding its
/// partial sums to what the previous left in C, the epilogue applied by
/// the last. A multiple of every kernel's K step (4 and 16), and half of
/// lavapipe's loop budget, which the direct kernel spends one iteration a
/// K.
pub(crate) const REDUCTION_CHUNK: u32 = 32_768;

/// The most stacked rows (members × batch rows) one pass of a TabM
/// network holds: `member_column_sums` (shaders/ensemble.wgsl) loops once
/// a row in one thread, within lavapipe's loop budget as a matmul chunk.
pub(crate) const MAX_TABM_PASS_ROWS: usize = REDUCTION_CHUNK as usize;

/// Output widths from which the loss kernel takes a workgroup a row
/// (`loss_wide` in shaders/loss.wgsl) instead of a thread a row, whose
/// cross-entropy loops three times over the row (lavapipe's budget ends
/// at 21 845 classes; on a GPU one thread a row of 70 000 classes leaves
/// the device idle).
pub(crate) const WIDE_LOSS_MIN: usize = 1024;

/// The most rows × outputs for which one workgroup computes the loss and
/// its batch sum in one dispatch (`loss_summed` in shaders/loss.wgsl)
/// rather than two: 64 outputs a thread at most, which at small batches
/// costs less than a dispatch (docs/performance.md, "Dispatches per step").
pub(crate) const SUMMED_LOSS_MAX: usize = 16_384;

/// Workgroups for `threads` threads in groups of `group`, folded into two
/// dimensions past the per-dimension limit (the shaders' `flat_index`).
pub(crate) fn grid(threads: u64, group: u32, max_per_dim: u32) -> (u32, u32) {
    let groups = threads.div_ceil(group as u64).max(1);
    if groups <= max_per_dim as u64 {
        (groups as u32, 1)
    } else {
        (max_per_dim, groups.div_ceil(max_per_dim as u64) as u32)
    }
}

/// Workgroups (x over columns, y over rows) of an `m` × `n` product run
/// with `tiling`: one a tile of C.
pub(crate) fn matmul_grid(tiling: &MatmulTiling, m: usize, n: usize) -> (u32, u32) {
    (
        (n as u32).div_ceil(tiling.tile_n()),
        (m as u32).div_ceil(tiling.tile_m()),
    )
}

/// The ranges `[start, end)` of K that the dispatches of a product with
/// reduction `k` cover, in order: one range unless `k` exceeds
/// [`REDUCTION_CHUNK`].
pub(crate) fn reduction_chunks(k: usize) -> Vec<(u32, u32)> {
    let k = k as u32;
    (0..k.max(1))
        .step_by(REDUCTION_CHUNK as usize)
        .map(|start| (start, k.min(start + REDUCTION_CHUNK)))
        .collect()
}

/// How a product whose reduction is `k` long runs split into `slices`
/// slices of K (`MatmulChoice::slices`) with `tiling`: the slices of each
/// chunk of [`reduction_chunks`] and their length, a multiple of 4 (the
/// texture kernel reads K a quad at a time) and of the tiling's K step.
/// `(1, 0)` when it is not split. The last chunk may be shorter than the
/// first and leave its last slices empty (they write zeros).
pub(crate) fn split_layout(tiling: &MatmulTiling, k: usize, slices: u32) -> (u32, u32) {
    let chunk = (k as u32).min(REDUCTION_CHUNK);
    if slices <= 1 || chunk <= 1 {
        return (1, 0);
    }
    let step = if tiling.tk.is_multiple_of(4) {
        tiling.tk
    } else {
        4 * tiling.tk
    };
    let slice_k = chunk.div_ceil(slices).next_multiple_of(step);
    match chunk.div_ceil(slice_k) {
        1 => (1, 0),
        slices => (slices, slice_k),
    }
}

/// Checks that the matmul of every product of a pass over at most `rows`
/// rows of `mlp` fits the per-dimension workgroup limit `max_per_dim`:
/// the forward (rows × outputs), the weight gradient (outputs × inputs + 1)
/// and the input gradient (rows × inputs) of every layer.
///
/// # Errors
/// [`Error::TooLarge`] naming the layer, the product and the limit.
pub(crate) fn check_products(
    choice: &MatmulChoice,
    mlp: &Mlp,
    rows: usize,
    max_per_dim: u32,
) -> Result<()> {
    for (l, layer) in mlp.layers().iter().enumerate() {
        let products = [
            ("forward", rows, layer.outputs),
            // With the bias gradient's column (workgroup-memory kernel).
            ("weight gradient", layer.outputs, layer.inputs + 1),
            ("input gradient", rows, layer.inputs),
        ];
        for (what, m, n) in products {
            let tiling = choice.tilings()[choice.for_product(m, n)];
            let (x, y) = matmul_grid(&tiling, m, n);
            if x > max_per_dim || y > max_per_dim {
                return Err(Error::TooLarge(format!(
                    "layer {l} ({} → {}): its {what} product ({m} × {n}) needs {x} × {y} workgroups, more than the device's {max_per_dim} a dimension",
                    layer.inputs, layer.outputs
                )));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_folds_past_the_limit_and_covers_every_thread() {
        assert_eq!(grid(0, 64, 65_535), (1, 1));
        assert_eq!(grid(64 * 65_535, 64, 65_535), (65_535, 1));
        let (x, y) = grid(64 * 65_535 + 1, 64, 65_535);
        assert_eq!((x, y), (65_535, 2));
        assert!(x as u64 * y as u64 * 64 > 64 * 65_535);
    }

    #[test]
    fn split_slices_cover_each_chunk_in_steps_of_the_kernel() {
        let shared = MatmulTiling::shared();
        let texture = MatmulTiling::texture();
        assert_eq!(split_layout(&shared, 1024, 1), (1, 0));
        assert_eq!(split_layout(&shared, 1024, 8), (8, 128));
        // 784 / 7 = 112 = 7 · 16.
        assert_eq!(split_layout(&shared, 784, 7), (7, 112));
        // 784 / 8 = 98, up to 112: 7 slices.
        assert_eq!(split_layout(&shared, 784, 8), (7, 112));
        // Tiny K: one step of 16 holds it all.
        assert_eq!(split_layout(&shared, 5, 4), (1, 0));
        assert_eq!(split_layout(&texture, 5, 4), (2, 4));
        assert_eq!(split_layout(&texture, 1, 4), (1, 0));
        // A chunked reduction: slices of the first chunk's length.
        assert_eq!(split_layout(&texture, 70_000, 4), (4, 8192));
        for k in [2, 3, 17, 65, 257, 4_095, 32_769, 100_003] {
            for slices in [2, 3, 7, 64] {
                for tiling in [shared, texture, MatmulTiling::direct()] {
                    let (s, len) = split_layout(&tiling, k, slices);
                    if s == 1 {
                        continue;
                    }
                    let chunk = (k as u32).min(REDUCTION_CHUNK);
                    assert!(s <= slices, "k {k}: {s} slices for {slices}");
                    assert!(
                        s * len >= chunk && (s - 1) * len < chunk,
                        "k {k}: {s} × {len}"
                    );
                    assert_eq!(len % 4, 0, "k {k}: a slice starts inside a quad");
                    assert_eq!(len % tiling.tk, 0, "k {k}: inside a K step");
                }
            }
        }
    }

    #[test]
    fn reduction_chunks_cover_k_in_order_within_the_chunk() {
        assert_eq!(reduction_chunks(1), vec![(0, 1)]);
        assert_eq!(reduction_chunks(32_768), vec![(0, 32_768)]);
        assert_eq!(
            reduction_chunks(70_000),
            vec![(0, 32_768), (32_768, 65_536), (65_536, 70_000)]
        );
        for k in [1, 4_095, 65_535, 65_536, 131_072, 1_000_003] {
            let chunks = reduction_chunks(k);
            assert_eq!(chunks[0].0, 0);
            assert_eq!(chunks.last().unwrap().1 as usize, k);
            for pair in chunks.windows(2) {
                assert_eq!(pair[0].1, pair[1].0, "k {k}: chunks not contiguous");
            }
            for &(start, end) in &chunks {
                assert!(end - start <= REDUCTION_CHUNK && end > start);
                assert_eq!(start % 16, 0, "k {k}: a chunk starts inside a K step");
            }
        }
    }
}
