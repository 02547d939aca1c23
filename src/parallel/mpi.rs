//! [`Mpi`]: the collective on an MPI communicator (rsmpi), for ranks
//! started by `mpirun`.
//!
//! MPI only moves data here; the adding is ours, in rank order: the sum is
//! a reduce-scatter made of an all-to-all (rank c receives everyone's
//! chunk c and adds the chunks in rank order, [`sum_in_rank_order`]) and
//! an all-gather of the summed chunks. Each rank sends and receives
//! 2·(N−1)/N of the buffer, as a ring all-reduce does, and the bits do
//! not depend on the MPI library's choice of algorithm.

use super::{Collective, share_bounds, sum_in_rank_order};
use crate::error::{Error, Result};
use mpi::Count;
use mpi::datatype::{Partition, PartitionMut};
use mpi::topology::SimpleCommunicator;
use mpi::traits::{Communicator, CommunicatorCollectives, Root};
use std::cell::RefCell;

/// A collective over an MPI communicator (usually the world's).
///
/// ```no_run
/// let universe = mpi::initialize().expect("MPI initialised once");
/// let collective = retroprop::parallel::Mpi::new(universe.world());
/// ```
pub struct Mpi {
    comm: SimpleCommunicator,
    /// This rank and the number of ranks, read once.
    rank: usize,
    size: usize,
    /// The thread that made it: the only one that may call MPI through it.
    owner: std::thread::ThreadId,
    /// The chunks received and their sum, kept between calls: a fresh
    /// buffer of the gradient's size each step costs its page faults.
    scratch: RefCell<(Vec<f32>, Vec<f32>)>,
}

// SAFETY: an `Mpi` may move to another thread (so that a `Trainer` holding
// it is `Send`), but it calls MPI only from the thread that made it: every
// collective call checks `on_owner` first and fails elsewhere, as a run
// initialised with MPI_THREAD_SINGLE (what `mpi::initialize` asks for)
// requires. Rank and size are read once, at construction.
unsafe impl Send for Mpi {}

impl std::fmt::Debug for Mpi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mpi")
            .field("rank", &self.rank)
            .field("size", &self.size)
            .finish()
    }
}

impl Mpi {
    /// The collective over `comm`.
    pub fn new(comm: SimpleCommunicator) -> Mpi {
        Mpi {
            rank: comm.rank() as usize,
            size: comm.size() as usize,
            comm,
            owner: std::thread::current().id(),
            scratch: RefCell::default(),
        }
    }

    /// An error unless called on the thread that made this collective.
    fn on_owner(&self) -> Result<()> {
        if std::thread::current().id() == self.owner {
            return Ok(());
        }
        Err(Error::Config(
            "an MPI collective was called from a thread other than the one that made it \
             (MPI runs single-threaded here): call the trainer from that thread"
                .into(),
        ))
    }

    /// Ends every rank of the run now (`MPI_Abort`) with `code`: for an
    /// error only this rank has, where the others would wait for it.
    pub fn abort(&self, code: i32) -> ! {
        self.comm.abort(code)
    }
}

/// `len` as an MPI count, or an error naming what is too large.
fn count(len: usize) -> Result<Count> {
    Count::try_from(len).map_err(|_| {
        Error::TooLarge(format!(
            "an MPI message of {len} values (the most is {})",
            Count::MAX
        ))
    })
}

impl Collective for Mpi {
    fn rank(&self) -> usize {
        self.rank
    }

    fn size(&self) -> usize {
        self.size
    }

    fn all_reduce_sum(&self, values: &mut [f32]) -> Result<()> {
        self.on_owner()?;
        let (rank, size) = (self.rank(), self.size());
        if size == 1 {
            return Ok(());
        }
        // Counts and displacements are chunk sizes and offsets within it;
        // the length is every rank's, so every rank fails alike.
        count(values.len())?;
        let chunks: Vec<_> = (0..size)
            .map(|c| share_bounds(values.len(), c, size))
            .collect();
        let counts: Vec<Count> = chunks.iter().map(|c| c.len() as Count).collect();
        let displs: Vec<Count> = chunks.iter().map(|c| c.start as Count).collect();
        // Reduce-scatter: everyone's chunk `rank`, one after the other in
        // rank order, then added in that order.
        let own = chunks[rank].len();
        let mut scratch = self.scratch.borrow_mut();
        let (received, summed) = &mut *scratch;
        received.resize(own * size, 0.0);
        summed.resize(own, 0.0);
        {
            let send = Partition::new(&*values, &counts[..], &displs[..]);
            let received_displs: Vec<Count> = (0..size).map(|r| (r * own) as Count).collect();
            let mut receive =
                PartitionMut::new(&mut received[..], vec![own as Count; size], received_displs);
            self.comm.all_to_all_varcount_into(&send, &mut receive);
        }
        sum_in_rank_order(received.chunks(own.max(1)).take(size), summed);
        // All-gather the summed chunks into place.
        let mut gathered = PartitionMut::new(values, counts, displs);
        self.comm
            .all_gather_varcount_into(&summed[..], &mut gathered);
        Ok(())
    }

    fn all_reduce_sum_f64(&self, values: &mut [f64]) -> Result<()> {
        self.on_owner()?;
        let size = self.size();
        if size == 1 {
            return Ok(());
        }
        count(values.len() * size)?;
        let mut all = vec![0f64; values.len() * size];
        self.comm.all_gather_into(&*values, &mut all[..]);
        let len = values.len();
        for (i, v) in values.iter_mut().enumerate() {
            *v = (0..size).fold(0.0, |sum, r| sum + all[r * len + i]);
        }
        Ok(())
    }

    fn broadcast(&self, root: usize, bytes: &mut Vec<u8>) -> Result<()> {
        self.on_owner()?;
        if root >= self.size() {
            return Err(Error::Config(format!(
                "broadcast from rank {root} of {}",
                self.size()
            )));
        }
        let process = self.comm.process_at_rank(root as i32);
        let mut len = bytes.len() as u64;
        process.broadcast_into(&mut len);
        bytes.resize(len as usize, 0);
        // In pieces an MPI count can hold (a checkpoint may pass 2 GiB).
        for piece in bytes.chunks_mut(1 << 30) {
            process.broadcast_into(piece);
        }
        Ok(())
    }
}
