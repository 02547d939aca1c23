//! [`Threads`]: ranks that are threads of one process, meeting at a gate
//! and exchanging buffers through shared slots. The sums are the ones MPI
//! ranks compute ([`sum_in_rank_order`]), so a test run on threads stands
//! for a run on processes, bit for bit.

use super::{Collective, sum_in_rank_order};
use crate::error::{Error, Result};
use std::sync::{Arc, Condvar, Mutex, RwLock};

/// One rank of a group of threads; [`Threads::group`] makes the handles,
/// one to move into each thread. A handle dropped (its thread returned or
/// panicked) leaves the group: a rank waiting in a collective then gets an
/// error naming it, instead of waiting for ever.
#[derive(Debug)]
pub struct Threads {
    rank: usize,
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    size: usize,
    gate: Gate,
    f32_slots: RwLock<Vec<Vec<f32>>>,
    f64_slots: RwLock<Vec<Vec<f64>>>,
    bytes: RwLock<Vec<u8>>,
}

/// A reusable barrier that a rank can leave, releasing the others with an
/// error.
#[derive(Debug, Default)]
struct Gate {
    state: Mutex<GateState>,
    opened: Condvar,
}

#[derive(Debug, Default)]
struct GateState {
    arrived: usize,
    generation: u64,
    left: Option<usize>,
}

fn left(rank: usize) -> Error {
    Error::Rank {
        rank,
        message: "the rank left the run (its thread ended)".into(),
    }
}

impl Gate {
    fn wait(&self, size: usize) -> Result<()> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(rank) = state.left {
            return Err(left(rank));
        }
        let generation = state.generation;
        state.arrived += 1;
        if state.arrived == size {
            state.arrived = 0;
            state.generation += 1;
            self.opened.notify_all();
            return Ok(());
        }
        while state.generation == generation && state.left.is_none() {
            state = self.opened.wait(state).unwrap_or_else(|e| e.into_inner());
        }
        match state.left {
            _ if state.generation != generation => Ok(()),
            Some(rank) => Err(left(rank)),
            None => Ok(()),
        }
    }

    fn leave(&self, rank: usize) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.left.get_or_insert(rank);
        self.opened.notify_all();
    }
}

impl Threads {
    /// `size` ranks, 0 to `size − 1`.
    ///
    /// # Panics
    /// If `size` is 0.
    pub fn group(size: usize) -> Vec<Threads> {
        assert!(size > 0, "a group needs at least one rank");
        let shared = Arc::new(Shared {
            size,
            gate: Gate::default(),
            f32_slots: RwLock::new(vec![Vec::new(); size]),
            f64_slots: RwLock::new(vec![Vec::new(); size]),
            bytes: RwLock::new(Vec::new()),
        });
        (0..size)
            .map(|rank| Threads {
                rank,
                shared: Arc::clone(&shared),
            })
            .collect()
    }

    fn wait(&self) -> Result<()> {
        self.shared.gate.wait(self.shared.size)
    }
}

impl Drop for Threads {
    fn drop(&mut self) {
        self.shared.gate.leave(self.rank);
    }
}

/// Each rank puts its values in its slot; after the gate, each adds all
/// slots in rank order; after a second gate the slots may be reused.
fn all_reduce<T: Clone>(
    rank: &Threads,
    slots: &RwLock<Vec<Vec<T>>>,
    values: &mut [T],
    sum: impl FnOnce(&[Vec<T>], &mut [T]),
) -> Result<()> {
    slots.write().unwrap_or_else(|e| e.into_inner())[rank.rank] = values.to_vec();
    rank.wait()?;
    {
        let slots = slots.read().unwrap_or_else(|e| e.into_inner());
        if let Some(r) = slots.iter().position(|s| s.len() != values.len()) {
            return Err(Error::Rank {
                rank: r,
                message: format!(
                    "an all-reduce of {} values where rank {} has {}",
                    slots[r].len(),
                    rank.rank,
                    values.len()
                ),
            });
        }
        sum(&slots, values);
    }
    rank.wait()
}

impl Collective for Threads {
    fn rank(&self) -> usize {
        self.rank
    }

    fn size(&self) -> usize {
        self.shared.size
    }

    fn all_reduce_sum(&self, values: &mut [f32]) -> Result<()> {
        all_reduce(self, &self.shared.f32_slots, values, |slots, out| {
            sum_in_rank_order(slots.iter().map(Vec::as_slice), out)
        })
    }

    fn all_reduce_sum_f64(&self, values: &mut [f64]) -> Result<()> {
        all_reduce(self, &self.shared.f64_slots, values, |slots, out| {
            for (i, o) in out.iter_mut().enumerate() {
                *o = slots.iter().fold(0.0, |sum, s| sum + s[i]);
            }
        })
    }

    fn broadcast(&self, root: usize, bytes: &mut Vec<u8>) -> Result<()> {
        if root >= self.size() {
            return Err(Error::Config(format!(
                "broadcast from rank {root} in a group of {}",
                self.size()
            )));
        }
        if self.rank == root {
            bytes.clone_into(&mut self.shared.bytes.write().unwrap_or_else(|e| e.into_inner()));
        }
        self.wait()?;
        if self.rank != root {
            self.shared
                .bytes
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone_into(bytes);
        }
        self.wait()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rank_that_leaves_releases_the_others_with_its_name() {
        let mut ranks = Threads::group(3);
        let gone = ranks.remove(1);
        let results: Vec<Result<()>> = std::thread::scope(|s| {
            let handles: Vec<_> = ranks
                .iter()
                .map(|rank| s.spawn(move || rank.all_reduce_sum(&mut [1.0])))
                .collect();
            drop(gone);
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for result in results {
            match result {
                Err(Error::Rank { rank: 1, .. }) => {}
                other => panic!("expected rank 1 to be named, got {other:?}"),
            }
        }
    }
}
