//! [`StopFlag`]: asking a running fit to stop at the next step boundary,
//! from another thread or a signal handler.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// A request to stop training, shared by whoever asks (another thread, a
/// signal handler) and the trainer that checks it. Clones share one flag.
///
/// Set it in [`TrainConfig::stop_flag`](crate::TrainConfig::stop_flag).
/// [`Backend::train_steps`](crate::backend::Backend::train_steps) checks it
/// before every step on the CPU and, on the GPU, before each window of up
/// to 64 steps, after waiting for the window before the last (at most two
/// are in flight, so a stop lands within two windows of the request), and
/// returns what it did so far with
/// [`StepsReport::stopped`](crate::backend::StepsReport::stopped) set; the
/// steps that ran are whole. [`Trainer::fit`](crate::Trainer::fit) then
/// returns with [`History::interrupted`](crate::History::interrupted), and
/// [`Trainer::checkpoint`](crate::Trainer::checkpoint) records the position
/// inside the epoch, so that a run restored from it ends with the same
/// parameters as one never stopped.
///
/// The flag stays requested until [`clear`](Self::clear): a trainer that
/// fits again with it stops before its first step.
///
/// ```
/// use retroprop::StopFlag;
/// let flag = StopFlag::new();
/// let handle = flag.clone();
/// std::thread::spawn(move || handle.request()).join().unwrap();
/// assert!(flag.is_requested());
/// ```
#[derive(Debug, Clone, Default)]
pub struct StopFlag(Arc<AtomicBool>);

impl StopFlag {
    /// A flag not yet requested.
    pub fn new() -> StopFlag {
        StopFlag::default()
    }

    /// Asks training to stop at the next step boundary. Only an atomic
    /// store, so it may be called from a signal handler.
    pub fn request(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether a stop was requested.
    pub fn is_requested(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    /// Withdraws the request, so that training can go on.
    pub fn clear(&self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

/// A flag that something else already sets, e.g. `signal_hook::flag::register`.
impl From<Arc<AtomicBool>> for StopFlag {
    fn from(flag: Arc<AtomicBool>) -> StopFlag {
        StopFlag(flag)
    }
}

/// Two handles are equal when they share one flag.
impl PartialEq for StopFlag {
    fn eq(&self, other: &StopFlag) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for StopFlag {}
