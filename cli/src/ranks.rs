//! The ranks `train` runs as: one process, or, built with the `mpi`
//! feature and started by `mpirun`, one rank of an MPI job.
//!
//! Every rank reads the same arguments and files and builds the same
//! trainer; [`Ranks::join`] is where they meet: each says whether its
//! set-up worked (a rank that failed earlier meets the others there from
//! [`Ranks::fail`]), then the trainer takes rank 0's parameters. From
//! then on the library keeps the ranks in step. Rank 0 alone writes files
//! and prints; an error every rank shares is printed once, by rank 0, and
//! one only a rank has (a file it could not write) is printed by it and
//! ends the job (`MPI_Abort`), so that no rank waits for it.

use crate::cli::TrainArgs;
use retroprop::Trainer;
use std::cell::Cell;
use std::process::ExitCode;

/// This process's place in the run.
pub struct Ranks {
    rank: usize,
    size: usize,
    #[cfg(feature = "mpi")]
    universe: Option<mpi::environment::Universe>,
    /// Whether [`join`](Self::join) was reached.
    joined: Cell<bool>,
    /// Whether the error being returned is every rank's.
    shared_error: Cell<bool>,
}

/// The job's size as the MPI launchers announce it to each process
/// (OpenMPI's mpirun, MPICH's Hydra, Slurm's PMI and PMIx).
fn launched_size() -> Option<usize> {
    ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE"]
        .iter()
        .find_map(|name| std::env::var(name).ok()?.parse().ok())
}

/// This process's rank among those on its machine, as the launchers
/// announce it.
#[cfg(feature = "mpi")]
fn local_rank() -> Option<usize> {
    [
        "OMPI_COMM_WORLD_LOCAL_RANK",
        "MPI_LOCALRANKID",
        "SLURM_LOCALID",
    ]
    .iter()
    .find_map(|name| std::env::var(name).ok()?.parse().ok())
}

impl Ranks {
    /// The ranks of this run: MPI's when started by an MPI launcher (and
    /// built with the `mpi` feature), else one.
    pub fn start() -> Result<Ranks, String> {
        let single = Ranks {
            rank: 0,
            size: 1,
            #[cfg(feature = "mpi")]
            universe: None,
            joined: Cell::new(false),
            shared_error: Cell::new(false),
        };
        let Some(launched) = launched_size().filter(|&n| n > 1) else {
            return Ok(single);
        };
        #[cfg(feature = "mpi")]
        {
            use mpi::traits::Communicator;
            let _ = launched;
            // MPI is called from the main thread only (rayon and wgpu
            // threads never touch it).
            let (universe, _) = mpi::initialize_with_threading(mpi::Threading::Funneled)
                .ok_or("MPI was initialised twice")?;
            let world = universe.world();
            // A GPU of its own for each rank on a machine (in turn when
            // there are fewer GPUs than ranks).
            retroprop::gpu::prefer_adapter(local_rank().unwrap_or(world.rank() as usize));
            Ok(Ranks {
                rank: world.rank() as usize,
                size: world.size() as usize,
                universe: Some(universe),
                ..single
            })
        }
        #[cfg(not(feature = "mpi"))]
        Err(format!(
            "started as one of {launched} MPI ranks, but this retroprop was built without MPI, \
             so each rank would train alone and write the same files: build it with \
             `cargo build --release --features mpi` (needs an MPI, libclang and pkg-config)"
        ))
    }

    /// How many ranks the run has.
    pub fn count(&self) -> usize {
        self.size
    }

    /// Whether this rank writes the files and the report (rank 0).
    pub fn writes(&self) -> bool {
        self.rank == 0
    }

    /// Where training ran, in words: the device, and the ranks when more
    /// than one.
    pub fn describe(&self, device: String) -> String {
        match self.size {
            1 => device,
            n => format!("{n} ranks, rank 0 on {device}"),
        }
    }

    /// Leaves the files, the progress bar and the warnings to rank 0.
    pub fn only_rank_0_writes(&self, args: &mut TrainArgs) {
        if !self.writes() {
            args.save = None;
            args.checkpoint = None;
            args.metrics = None;
            args.plot = None;
            args.quiet = true;
        }
    }

    /// Where the ranks meet after each has set up on its own: every rank's
    /// trainer, or every rank the same error (naming the lowest rank that
    /// failed). The trainer then starts from rank 0's parameters and
    /// optimizer state.
    pub fn join(&self, trainer: retroprop::Result<Trainer>) -> Result<Trainer, String> {
        self.joined.set(true);
        if self.size == 1 {
            return trainer.map_err(|e| e.to_string());
        }
        #[cfg(feature = "mpi")]
        {
            let collective = self.collective();
            let agreed = retroprop::parallel::agree(&collective, trainer)
                .and_then(|trainer| trainer.with_collective(Box::new(self.collective())));
            self.shared(agreed)
        }
        #[cfg(not(feature = "mpi"))]
        unreachable!("more than one rank only with MPI")
    }

    #[cfg(feature = "mpi")]
    fn collective(&self) -> retroprop::parallel::Mpi {
        let universe = self.universe.as_ref().expect("MPI ranks have a universe");
        retroprop::parallel::Mpi::new(universe.world())
    }

    /// `outcome`, noting that an error in it is every rank's (it came out
    /// of a collective step: a rank's failure, a divergence).
    pub fn shared<T>(&self, outcome: retroprop::Result<T>) -> Result<T, String> {
        outcome.map_err(|e| {
            self.shared_error.set(true);
            e.to_string()
        })
    }

    /// `error` in words, noting whether every rank has it: a rank's
    /// failure shared by a collective step, or a divergence (every rank
    /// sees the same summed loss).
    pub fn error(&self, error: retroprop::Error) -> String {
        if matches!(
            error,
            retroprop::Error::Rank { .. } | retroprop::Error::Diverged { .. }
        ) {
            self.shared_error.set(true);
        }
        error.to_string()
    }

    /// Ends the run on `error`: printed once, by this rank if only it has
    /// it (then the whole job ends: the others may be waiting for it), by
    /// rank 0 if every rank has it.
    pub fn fail(&self, error: String) -> ExitCode {
        if self.size == 1 {
            eprintln!("error: {error}");
            return ExitCode::FAILURE;
        }
        #[cfg(feature = "mpi")]
        {
            if !self.joined.get() {
                // Failed on its own before the ranks met: meet them now.
                let own = Err(retroprop::Error::Rank {
                    rank: self.rank,
                    message: error,
                });
                if let Err(e) = retroprop::parallel::agree::<()>(&self.collective(), own)
                    && self.writes()
                {
                    eprintln!("error: {e}");
                }
                return ExitCode::FAILURE;
            }
            if self.shared_error.get() {
                if self.writes() {
                    eprintln!("error: {error}");
                }
                return ExitCode::FAILURE;
            }
            eprintln!("error: rank {}: {error}", self.rank);
            use mpi::traits::Communicator;
            self.universe.as_ref().expect("MPI ranks").world().abort(1)
        }
        #[cfg(not(feature = "mpi"))]
        unreachable!("more than one rank only with MPI")
    }
}
