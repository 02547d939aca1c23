//! The thread a trainer lives on. Each Python trainer owns a thread that
//! builds and keeps its `Trainer` and runs jobs sent to it, so that the
//! calling thread stays free for Python's signal handlers. The calling
//! thread waits with the GIL released, wakes every 50 ms
//! to let Python run its signal handlers (Ctrl-C raises `KeyboardInterrupt`
//! there: the job's `StopFlag` is requested and the run ends at the next
//! step boundary, keeping its steps), and hands each epoch's record to a
//! Python callback while the training thread waits for it. Short waits
//! are polled before sleeping ([`receive`]): a sleep and a wake-up each
//! way cost ~70 µs an epoch, more than an iris-sized epoch itself.
//! Each job runs on a thread of the CPU backend's pool when no other run
//! has it ([`retroprop::cpu::run_on_pool`]): the epochs' steps then start
//! where they are, not handed to the pool and back each epoch.

use crate::errors::{panic_to_py, to_py};
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use retroprop::{EpochRecord, Loss, Mlp, Optimizer, Standardizer, StopFlag, Trainer};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Mutex;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::time::{Duration, Instant};

/// Epochs shorter than this are waited for by polling (for up to twice the
/// last one's time) before sleeping.
const SHORT_EPOCH: Duration = Duration::from_micros(500);

/// How often the waiting thread lets Python run its signal handlers.
const SIGNALS_EVERY: Duration = Duration::from_millis(50);

/// How long a job polls for its callback's answer before sleeping.
const ACK_SPIN: Duration = Duration::from_micros(200);

/// The next message of `rx`: polled for `spin`, then waited for up to
/// `timeout` in all. Each poll yields the core: the trainer's own threads
/// may need both cores of a small machine (a spinning wait beside a
/// two-thread step made a breast-cancer fit 1.6× slower).
fn receive<T>(rx: &Receiver<T>, spin: Duration, timeout: Duration) -> Result<T, RecvTimeoutError> {
    let start = Instant::now();
    if !spin.is_zero() {
        loop {
            match rx.try_recv() {
                Ok(message) => return Ok(message),
                Err(TryRecvError::Disconnected) => return Err(RecvTimeoutError::Disconnected),
                Err(TryRecvError::Empty) if start.elapsed() >= spin => break,
                Err(TryRecvError::Empty) => std::thread::yield_now(),
            }
        }
    }
    match timeout.checked_sub(start.elapsed()) {
        Some(left) if timeout != Duration::MAX => rx.recv_timeout(left),
        Some(_) => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
        None => Err(RecvTimeoutError::Timeout),
    }
}

/// What the training thread keeps between jobs.
pub struct State {
    /// The trainer.
    pub trainer: Trainer,
    /// Its network.
    pub mlp: Mlp,
    /// Its loss.
    pub loss: Loss,
    /// Its optimizer (named in checkpoints).
    pub optimizer: Optimizer,
    /// The scaling applied to inputs before the network, once known.
    pub standardizer: Option<Standardizer>,
}

type Job = Box<dyn FnOnce(&mut Option<State>) + Send>;

/// A message from a job to the thread that waits for it.
enum Message<R> {
    /// An epoch ended; the job goes on when the sender is answered.
    Epoch(Box<EpochRecord>, Sender<()>),
    /// The job ended, or panicked.
    Done(std::thread::Result<retroprop::Result<R>>),
}

/// How a job reports an epoch: the record goes to the waiting thread,
/// and the job waits until its callback has run.
pub struct Epochs {
    report: Box<dyn Fn(&EpochRecord) + Send>,
}

impl Epochs {
    /// Hands `record` to the waiting thread and waits for its callback.
    pub fn report(&self, record: &EpochRecord) {
        (self.report)(record)
    }
}

/// A training thread and the queue of its jobs.
pub struct Worker {
    jobs: Mutex<Sender<Job>>,
}

impl Worker {
    /// Starts the thread; it ends when the worker is dropped.
    pub fn start() -> Worker {
        let (jobs, queue) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("retroprop-trainer".into())
            .spawn(move || {
                let mut state = None;
                for job in queue {
                    retroprop::cpu::run_on_pool(|| job(&mut state));
                }
            })
            .expect("the operating system refused a thread");
        Worker {
            jobs: Mutex::new(jobs),
        }
    }

    /// Runs `job` on the training thread and waits for it with the GIL
    /// released, calling `on_epoch` (with the GIL) for each epoch it
    /// reports. `stop`: the job's stop flag, requested on Ctrl-C (then the
    /// job's result is dropped for `KeyboardInterrupt`) or when `on_epoch`
    /// raises (then its exception is raised).
    pub fn call<R: Send + 'static>(
        &self,
        py: Python<'_>,
        stop: Option<&StopFlag>,
        job: impl FnOnce(&mut Option<State>, &Epochs) -> retroprop::Result<R> + Send + 'static,
        mut on_epoch: impl FnMut(Python<'_>, &EpochRecord) -> PyResult<()>,
    ) -> PyResult<R> {
        let (tx, rx): (Sender<Message<R>>, Receiver<Message<R>>) = mpsc::channel();
        let epochs_tx = tx.clone();
        let epochs = Epochs {
            report: Box::new(move |record| {
                let (ack, answered) = mpsc::channel();
                if epochs_tx
                    .send(Message::Epoch(Box::new(record.clone()), ack))
                    .is_ok()
                {
                    // A callback answers within microseconds: polled
                    // first, rather than sleeping and being woken.
                    let _ = receive(&answered, ACK_SPIN, Duration::MAX);
                }
            }),
        };
        let wrapped: Job = Box::new(move |state| {
            let result = catch_unwind(AssertUnwindSafe(|| job(state, &epochs)));
            if result.is_err() {
                // A trainer a panic left halfway is not used again.
                *state = None;
            }
            let _ = tx.send(Message::Done(result));
        });
        self.jobs
            .lock()
            .map_err(|_| PyRuntimeError::new_err("the trainer's queue is poisoned"))?
            .send(wrapped)
            .map_err(|_| PyRuntimeError::new_err("the training thread has ended"))?;
        let mut raised: Option<PyErr> = None;
        let mut rx = rx;
        // How long the last epoch took, once known: epochs of a small data
        // set take tens of microseconds, less than a sleep and a wake-up
        // cost on a busy machine, and their records are polled for.
        let mut last_epoch: Option<Instant> = None;
        let mut spin = Duration::ZERO;
        // Python's signal handlers run every 50 ms: on the wait's timeout,
        // and between epochs when records come faster than that.
        let mut signals_checked = Instant::now();
        let check_signals = |raised: &mut Option<PyErr>, checked: &mut Instant| {
            *checked = Instant::now();
            if raised.is_none()
                && let Err(e) = py.check_signals()
            {
                if let Some(stop) = stop {
                    stop.request();
                }
                // Without a stop flag the job is short: let it end.
                *raised = Some(e);
            }
        };
        loop {
            // The receiver travels into the GIL-free wait and back (it is
            // Send, not Sync).
            let (back, message) = py.detach(move || {
                let message = receive(&rx, spin, SIGNALS_EVERY);
                (rx, message)
            });
            rx = back;
            match message {
                Ok(Message::Epoch(record, ack)) => {
                    let now = Instant::now();
                    spin = last_epoch.map_or(Duration::ZERO, |last| {
                        let took = now - last;
                        if took < SHORT_EPOCH {
                            2 * took
                        } else {
                            Duration::ZERO
                        }
                    });
                    if raised.is_none()
                        && let Err(e) = on_epoch(py, &record)
                    {
                        if let Some(stop) = stop {
                            stop.request();
                        }
                        raised = Some(e);
                    }
                    if signals_checked.elapsed() >= SIGNALS_EVERY {
                        check_signals(&mut raised, &mut signals_checked);
                    }
                    let _ = ack.send(());
                    last_epoch = Some(Instant::now());
                }
                Ok(Message::Done(result)) => {
                    let result = match result {
                        Ok(r) => r.map_err(to_py),
                        Err(payload) => Err(panic_to_py(payload)),
                    };
                    return match raised {
                        Some(e) => Err(e),
                        None => result,
                    };
                }
                Err(RecvTimeoutError::Timeout) => check_signals(&mut raised, &mut signals_checked),
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(PyRuntimeError::new_err(
                        "the training thread ended without an answer",
                    ));
                }
            }
        }
    }
}
