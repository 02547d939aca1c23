//! Data-parallel training: one model trained by several processes (ranks),
//! each on its own device, as if by one process.
//!
//! Every step, each rank runs forward and backward over its contiguous
//! share of the global batch (the rows, in the order, one process would
//! use), the flat gradient buffers are summed across ranks, and every rank
//! applies the same update. What a run needs of the ranks' connection is
//! the [`Collective`] trait; it has an MPI implementation (`Mpi`, the
//! `mpi` feature), one for ranks that are threads of one process
//! ([`Threads`], for tests and single-machine use), and [`Local`] (one
//! rank). A program that embeds retroprop can bring its own.
//!
//! The sums are made in a fixed order: element by element, rank 0's value
//! first, then rank 1's, …, in f64, rounded once to f32
//! ([`sum_in_rank_order`]). So every rank holds the same bits after a sum,
//! and two runs of the same command give the same bits, whatever the
//! transport does underneath (MPI moves the data, it never adds).
//!
//! ```
//! use retroprop::parallel::{Collective, Threads};
//! let ranks = Threads::group(3);
//! let sums: Vec<Vec<f32>> = std::thread::scope(|s| {
//!     let handles: Vec<_> = ranks
//!         .into_iter()
//!         .map(|rank| {
//!             s.spawn(move || {
//!                 let mut values = vec![rank.rank() as f32, 1.0];
//!                 rank.all_reduce_sum(&mut values).unwrap();
//!                 values
//!             })
//!         })
//!         .collect();
//!     handles.into_iter().map(|h| h.join().unwrap()).collect()
//! });
//! assert!(sums.iter().all(|v| v == &[3.0, 3.0]));
//! ```

mod step;
mod threads;

#[cfg(feature = "mpi")]
mod mpi;

#[cfg(feature = "mpi")]
pub use self::mpi::Mpi;
pub(crate) use step::{
    StepRows, broadcast_checkpoint, check_same_data, check_same_fingerprint, check_same_run,
    evaluate_shard, sum_evaluations, train_steps,
};
pub use threads::Threads;

use crate::error::{Error, Result};

/// What data-parallel training needs of the connection between ranks.
///
/// Every rank calls the same methods in the same order (they are
/// collective: each returns when every rank has made the call). An
/// implementation must keep the sums' order fixed as
/// [`all_reduce_sum`](Self::all_reduce_sum) states, so that every rank
/// takes the same step.
pub trait Collective: Send {
    /// This process's rank, `0..size()`.
    fn rank(&self) -> usize;
    /// The number of ranks.
    fn size(&self) -> usize;
    /// Replaces `values` (the same length on every rank) with their
    /// element-wise sum over the ranks, computed as
    /// [`sum_in_rank_order`] does: the same bits on every rank.
    fn all_reduce_sum(&self, values: &mut [f32]) -> Result<()>;
    /// The same for a few f64 values (loss sums, counts, flags), added in
    /// rank order in f64.
    fn all_reduce_sum_f64(&self, values: &mut [f64]) -> Result<()>;
    /// Replaces `bytes` on every rank with rank `root`'s (the lengths may
    /// differ before the call).
    fn broadcast(&self, root: usize, bytes: &mut Vec<u8>) -> Result<()>;
}

/// Boxed collectives are collectives, so that a trainer can hold one.
impl<C: Collective + ?Sized> Collective for Box<C> {
    fn rank(&self) -> usize {
        (**self).rank()
    }
    fn size(&self) -> usize {
        (**self).size()
    }
    fn all_reduce_sum(&self, values: &mut [f32]) -> Result<()> {
        (**self).all_reduce_sum(values)
    }
    fn all_reduce_sum_f64(&self, values: &mut [f64]) -> Result<()> {
        (**self).all_reduce_sum_f64(values)
    }
    fn broadcast(&self, root: usize, bytes: &mut Vec<u8>) -> Result<()> {
        (**self).broadcast(root, bytes)
    }
}

/// One rank: every collective is the identity.
#[derive(Debug, Clone, Copy, Default)]
pub struct Local;

impl Collective for Local {
    fn rank(&self) -> usize {
        0
    }
    fn size(&self) -> usize {
        1
    }
    fn all_reduce_sum(&self, _values: &mut [f32]) -> Result<()> {
        Ok(())
    }
    fn all_reduce_sum_f64(&self, _values: &mut [f64]) -> Result<()> {
        Ok(())
    }
    fn broadcast(&self, _root: usize, _bytes: &mut Vec<u8>) -> Result<()> {
        Ok(())
    }
}

/// `out[i] = Σ_r contributions[r][i]`, added in rank order in f64 and
/// rounded once to f32: the one definition of the sum every
/// [`Collective`] implementation computes.
pub fn sum_in_rank_order<'a>(
    contributions: impl Iterator<Item = &'a [f32]> + Clone,
    out: &mut [f32],
) {
    // Block by block, and within a block rank by rank (so the loop
    // vectorises and the f64 sums stay in cache); each element still sees
    // 0 + rank 0's + rank 1's + … in that order.
    const BLOCK: usize = 2048;
    let mut sum = [0f64; BLOCK];
    for (b, block) in out.chunks_mut(BLOCK).enumerate() {
        let (start, sum) = (b * BLOCK, &mut sum[..block.len()]);
        sum.fill(0.0);
        for contribution in contributions.clone() {
            let part = &contribution[start..start + block.len()];
            for (s, &v) in sum.iter_mut().zip(part) {
                *s += v as f64;
            }
        }
        for (o, &s) in block.iter_mut().zip(sum.iter()) {
            *o = s as f32;
        }
    }
}

/// Rank `rank`'s contiguous share of `len` items split over `size` ranks:
/// `len·rank/size .. len·(rank+1)/size`. Shares differ by at most one
/// item, and some are empty when `len < size`. Defined with the data (a
/// streamed epoch's reader keeps a rank's share of each batch).
pub use crate::data::share_bounds;

/// Makes one rank's outcome every rank's: `Ok` on every rank when every
/// rank's `outcome` is `Ok`, otherwise the same [`Error::Rank`] on every
/// rank, naming the lowest rank that failed and its error. Call it where
/// ranks may fail apart (reading files, checking input), so that no rank
/// goes on to wait for one that stopped.
pub fn agree<T>(collective: &dyn Collective, outcome: Result<T>) -> Result<T> {
    let mut failed = vec![0f64; collective.size()];
    failed[collective.rank()] = outcome.is_err() as u8 as f64;
    collective.all_reduce_sum_f64(&mut failed)?;
    match failed.iter().position(|&f| f > 0.0) {
        None => outcome,
        Some(rank) => Err(shared_error(collective, rank, outcome.err())?),
    }
}

/// The error of rank `rank`, sent to every rank (`own` is this rank's).
fn shared_error(collective: &dyn Collective, rank: usize, own: Option<Error>) -> Result<Error> {
    let mut message = match own {
        // An error that already names its rank keeps its words.
        Some(Error::Rank { message, .. }) if collective.rank() == rank => message.into_bytes(),
        Some(e) if collective.rank() == rank => e.to_string().into_bytes(),
        _ => Vec::new(),
    };
    collective.broadcast(rank, &mut message)?;
    Ok(Error::Rank {
        rank,
        message: String::from_utf8_lossy(&message).into_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_cover_the_items_in_order_and_differ_by_at_most_one() {
        for len in [0, 1, 2, 5, 17, 64] {
            for size in 1..=5 {
                let shares: Vec<_> = (0..size).map(|r| share_bounds(len, r, size)).collect();
                assert_eq!(shares[0].start, 0, "len {len} size {size}");
                assert_eq!(shares[size - 1].end, len, "len {len} size {size}");
                for pair in shares.windows(2) {
                    assert_eq!(pair[0].end, pair[1].start, "len {len} size {size}");
                }
                let (lo, hi) = (
                    shares.iter().map(|s| s.len()).min().unwrap(),
                    shares.iter().map(|s| s.len()).max().unwrap(),
                );
                assert!(hi - lo <= 1, "len {len} size {size}: shares {shares:?}");
            }
        }
    }

    #[test]
    fn the_sum_is_made_in_f64_in_rank_order() {
        // 1 + 1e8 − 1e8 is 1 in f64 but 0 in f32 added left to right.
        let parts: [&[f32]; 3] = [&[1.0], &[1e8], &[-1e8]];
        let mut out = [0f32];
        sum_in_rank_order(parts.iter().copied(), &mut out);
        assert_eq!(out[0], 1.0);
    }
}
