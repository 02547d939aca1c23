//! The thread a trainer lives on. Each Python trainer owns a thread that
//! builds and keeps its `Trainer` and runs the jobs sent to it, so that
//! the calling thread stays free for Python's signal handlers. The calling
//! thread waits with the GIL released, wakes every 50 ms to let Python run
//! its signal handlers (Ctrl-C raises `KeyboardInterrupt` there: a fit's
//! `StopFlag` is requested and the run ends at the next step boundary,
//! keeping its steps; a call still queued is dropped), and hands each
//! epoch's record to a Python callback.
//!
//! While the callback runs, the training thread serves the trainer's
//! other calls between the two epochs ([`Serve::until_answered`]): a
//! callback that asks for the steps, the model or a checkpoint (saving each
//! epoch from the callback is the natural thing to do) is answered at
//! once, from the run as it stands after that epoch, instead of waiting
//! behind the fit that waits for it. A second fit is refused from the
//! callback (it would wait for itself) and waits for the first from
//! another thread.
//!
//! A process forked after the thread started (Python's `multiprocessing`,
//! joblib's multiprocessing backend) has no such thread: the first call in
//! the child starts one, over the trainer's state, which lives beside the
//! thread rather than on its stack ([`Worker::link`]). A GPU trainer is
//! refused there: a device does not cross a fork.
//!
//! Short waits are polled before sleeping ([`receive`]): a sleep and a
//! wake-up each way cost ~70 µs an epoch, more than an iris-sized epoch
//! itself. Each job runs on a thread of the CPU backend's pool when no
//! other run has it ([`retroprop::cpu::run_on_pool`]): the epochs' steps
//! then start where they are, not handed to the pool and back each epoch.

use crate::errors::{panic_to_py, to_py};
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use retroprop::{Error, StopFlag};
use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

/// Epochs shorter than this are waited for by polling (for up to twice the
/// last one's time) before sleeping.
const SHORT_EPOCH: Duration = Duration::from_micros(500);

/// How often the waiting thread lets Python run its signal handlers.
const SIGNALS_EVERY: Duration = Duration::from_millis(50);

/// How long the training thread polls for the callback's answer before
/// sleeping.
const ANSWER_SPIN: Duration = Duration::from_micros(200);

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

/// `mutex` locked, whether or not a panic poisoned it (every job's panic
/// is caught inside, and leaves the state it marks lost).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// What a worker's thread keeps between jobs (a trainer, or the members
/// of a run, with what goes with them), what a call sees of it, and what
/// a fit reports after each epoch.
pub trait Held: Send + 'static {
    /// What a call sees: the whole state between jobs, or, between two
    /// epochs of a running fit, what the fit lends.
    type View<'a>
    where
        Self: 'a;
    /// What a fit hands the waiting thread after an epoch.
    type Report: Send + 'static;
    /// Whether each job runs on a thread of the CPU backend's pool
    /// (`retroprop::cpu::run_on_pool`): a lone trainer's steps then start
    /// where they are. Members put their own epochs on the pool, a member
    /// a thread; from a job already on it they would find it taken and
    /// run on a second pool beside the first's threads kept looking for
    /// work.
    const ON_POOL: bool;
    /// The whole state as a view.
    fn view(&mut self) -> Self::View<'_>;
    /// A view lent on to one call made between two epochs.
    fn lend<'a>(view: &'a mut Self::View<'_>) -> Self::View<'a>;
}

/// The state slot, empty once a panic left the trainer halfway.
fn present<S: Held>(slot: &mut Option<S>) -> retroprop::Result<&mut S> {
    slot.as_mut().ok_or_else(|| {
        Error::Config("the trainer was lost to an earlier internal error; make a new one".into())
    })
}

/// Where a job runs: on the state between jobs, or between two epochs of
/// a running fit.
enum Access<'a, 'b, S: Held> {
    Idle(&'a mut Option<S>),
    BetweenEpochs(&'a mut S::View<'b>),
    /// Between two epochs of a fit that lends nothing (a streamed fit,
    /// whose loop holds the trainer): a call is refused, not waited for.
    Busy,
}

impl<S: Held> Access<'_, '_, S> {
    /// Marks the trainer lost after a panic: at once between jobs, once
    /// the fit has ended between epochs.
    fn lose(&mut self, serve: &Serve<S>) {
        match self {
            Access::Idle(slot) => **slot = None,
            Access::BetweenEpochs(_) | Access::Busy => serve.lost.store(true, Ordering::Release),
        }
    }
}

/// What the training thread is sent.
enum ToWorker<S: Held> {
    /// A job; `trains` for a fit, which waits for a running fit to end.
    Job { job: Job<S>, trains: bool },
    /// The callback of the epoch last reported has returned.
    Answered,
}

type Job<S> = Box<dyn FnOnce(&mut Access<'_, '_, S>, &Serve<S>) + Send>;

/// The training thread's side of its queue.
struct Serve<S: Held> {
    queue: Mutex<Receiver<ToWorker<S>>>,
    /// Fits sent while another ran, in order.
    deferred: Mutex<VecDeque<Job<S>>>,
    /// A job between epochs panicked: the trainer is lost once the fit
    /// ends.
    lost: AtomicBool,
}

impl<S: Held> Serve<S> {
    /// Runs the trainer's calls that come while a fit waits for its
    /// callback (from the callback, or another thread), on `view` (none:
    /// each is refused), until the callback's answer comes.
    fn until_answered(&self, mut view: Option<&mut S::View<'_>>) {
        loop {
            let message = receive(&lock(&self.queue), ANSWER_SPIN, Duration::MAX);
            match message {
                Ok(ToWorker::Answered) | Err(_) => return,
                Ok(ToWorker::Job { job, trains: true }) => lock(&self.deferred).push_back(job),
                Ok(ToWorker::Job { job, trains: false }) => match view.as_deref_mut() {
                    Some(view) => job(&mut Access::BetweenEpochs(view), self),
                    None => job(&mut Access::Busy, self),
                },
            }
        }
    }

    /// The next job between jobs: a deferred fit first; `None` once the
    /// worker is gone.
    fn next(&self) -> Option<Job<S>> {
        loop {
            if let Some(job) = lock(&self.deferred).pop_front() {
                return Some(job);
            }
            match lock(&self.queue).recv() {
                Ok(ToWorker::Job { job, .. }) => return Some(job),
                // An answer nobody waits for (none is sent unasked).
                Ok(ToWorker::Answered) => continue,
                Err(_) => return None,
            }
        }
    }
}

/// A message from a job to the thread that waits for it.
enum Message<R, P> {
    /// An epoch ended; the job goes on when the callback has answered.
    Epoch(Box<P>),
    /// The job ended, or panicked.
    Done(std::thread::Result<retroprop::Result<R>>),
}

/// How a fit reports an epoch: the record goes to the waiting thread, and
/// the fit waits, serving the trainer's calls, until the callback returns.
pub struct Epochs<'s, S: Held> {
    send: Box<dyn Fn(S::Report) -> bool + Send + Sync>,
    serve: &'s Serve<S>,
}

impl<S: Held> Epochs<'_, S> {
    /// Hands `report` to the waiting thread and, until its callback
    /// returns, runs the calls made meanwhile on `view`.
    pub fn report(&self, report: S::Report, mut view: S::View<'_>) {
        if (self.send)(report) {
            self.serve.until_answered(Some(&mut view));
        }
    }

    /// Hands `report` to the waiting thread and, until its callback
    /// returns, refuses the calls made meanwhile (a fit that cannot lend
    /// the trainer between epochs: a streamed one).
    pub fn report_busy(&self, report: S::Report) {
        if (self.send)(report) {
            self.serve.until_answered(None);
        }
    }
}

/// A queued call's progress: the training thread starts it unless its
/// caller gave up first (Ctrl-C while it waited in the queue).
const QUEUED: u8 = 0;
const STARTED: u8 = 1;
const CANCELLED: u8 = 2;

/// The running thread of a worker, in the process that started it.
struct Link<S: Held> {
    pid: u32,
    jobs: Sender<ToWorker<S>>,
}

impl<S: Held> Link<S> {
    fn start(state: Arc<Mutex<Option<S>>>) -> Link<S> {
        let (jobs, queue) = mpsc::channel::<ToWorker<S>>();
        std::thread::Builder::new()
            .name("retroprop-trainer".into())
            .spawn(move || {
                let serve = Serve {
                    queue: Mutex::new(queue),
                    deferred: Mutex::default(),
                    lost: AtomicBool::new(false),
                };
                while let Some(job) = serve.next() {
                    let mut guard = lock(&state);
                    let slot: &mut Option<S> = &mut guard;
                    if S::ON_POOL {
                        retroprop::cpu::run_on_pool(|| job(&mut Access::Idle(slot), &serve));
                    } else {
                        job(&mut Access::Idle(slot), &serve);
                    }
                    if serve.lost.swap(false, Ordering::AcqRel) {
                        *slot = None;
                    }
                }
            })
            .expect("the operating system refused a thread");
        Link {
            pid: std::process::id(),
            jobs,
        }
    }
}

/// A training thread, the queue of its jobs and the state they share.
pub struct Worker<S: Held> {
    link: Mutex<Link<S>>,
    state: Arc<Mutex<Option<S>>>,
    /// Whether the state may move to a thread of a forked child (a CPU
    /// trainer; a GPU device does not cross a fork).
    forkable: AtomicBool,
    /// The thread running a fit's callback now, if any.
    in_callback: Mutex<Option<ThreadId>>,
}

impl<S: Held> Worker<S> {
    /// Starts the thread; it ends when the worker is dropped.
    pub fn start() -> Worker<S> {
        let state = Arc::new(Mutex::new(None));
        Worker {
            link: Mutex::new(Link::start(state.clone())),
            state,
            forkable: AtomicBool::new(false),
            in_callback: Mutex::new(None),
        }
    }

    /// Says whether the trainer may be used in a process forked from this
    /// one (see [`Worker`]'s `forkable`).
    pub fn set_forkable(&self, forkable: bool) {
        self.forkable.store(forkable, Ordering::Release);
    }

    /// The sender of this process's training thread: in a forked child,
    /// a new thread over the same state.
    fn sender(&self) -> PyResult<Sender<ToWorker<S>>> {
        let mut link = lock(&self.link);
        if link.pid != std::process::id() {
            if !self.forkable.load(Ordering::Acquire) {
                return Err(PyRuntimeError::new_err(
                    "this trainer was made before the process forked and holds a GPU device, \
                     which does not cross a fork: make a new Trainer in this process",
                ));
            }
            if self.state.try_lock().is_err() {
                return Err(PyRuntimeError::new_err(
                    "this trainer was running a call when the process forked, and its state \
                     is halfway: make a new Trainer in this process",
                ));
            }
            *link = Link::start(self.state.clone());
        }
        Ok(link.jobs.clone())
    }

    /// Builds the state on the training thread with `build`.
    pub fn init(
        &self,
        py: Python<'_>,
        build: impl FnOnce() -> retroprop::Result<S> + Send + 'static,
    ) -> PyResult<()> {
        self.run(
            py,
            None,
            false,
            move |access, _| match access {
                Access::Idle(slot) => {
                    **slot = Some(build()?);
                    Ok(())
                }
                Access::BetweenEpochs(_) | Access::Busy => {
                    unreachable!("a new worker runs no fit")
                }
            },
            |_, _| Ok(()),
        )
    }

    /// Runs `job` on the trainer and waits for it: between jobs, or,
    /// called while a fit waits for its callback (from the callback or
    /// another thread), between those two epochs, on the run as it stands.
    pub fn call<R: Send + 'static>(
        &self,
        py: Python<'_>,
        job: impl FnOnce(S::View<'_>) -> retroprop::Result<R> + Send + 'static,
    ) -> PyResult<R> {
        self.run(
            py,
            None,
            false,
            move |access, _| match access {
                Access::Idle(slot) => job(present(slot)?.view()),
                Access::BetweenEpochs(view) => job(S::lend(view)),
                Access::Busy => Err(Error::Config(
                    "the trainer is training on rows read from a file or table, and lends \
                     itself to no call until that fit returns (stop() works)"
                        .into(),
                )),
            },
            |_, _| Ok(()),
        )
    }

    /// Runs the fit `job` on the trainer's whole state and waits for it
    /// with the GIL released, calling `on_epoch` (with the GIL) for each
    /// epoch it reports. `stop`: the fit's stop flag, requested on Ctrl-C
    /// (then the fit's result is dropped for `KeyboardInterrupt`) or when
    /// `on_epoch` raises (then its exception is raised). Refused from a
    /// callback of this trainer's running fit, which would wait for
    /// itself; from another thread it waits for that fit to end.
    pub fn fit<R: Send + 'static>(
        &self,
        py: Python<'_>,
        stop: &StopFlag,
        job: impl FnOnce(&mut S, &Epochs<S>) -> retroprop::Result<R> + Send + 'static,
        on_epoch: impl FnMut(Python<'_>, &S::Report) -> PyResult<()>,
    ) -> PyResult<R> {
        if *lock(&self.in_callback) == Some(std::thread::current().id()) {
            return Err(PyRuntimeError::new_err(
                "fit was called from the callback of this trainer's running fit, which waits \
                 for the callback: call it after that fit returns (the callback may stop() it)",
            ));
        }
        self.run(
            py,
            Some(stop),
            true,
            move |access, epochs| match access {
                Access::Idle(slot) => job(present(slot)?, epochs),
                Access::BetweenEpochs(_) | Access::Busy => {
                    unreachable!("a fit waits for the running one")
                }
            },
            on_epoch,
        )
    }

    /// Sends `job` to the training thread and waits for its answer,
    /// handing its epochs to `on_epoch` (see [`fit`](Self::fit)).
    fn run<R: Send + 'static>(
        &self,
        py: Python<'_>,
        stop: Option<&StopFlag>,
        trains: bool,
        job: impl FnOnce(&mut Access<'_, '_, S>, &Epochs<S>) -> retroprop::Result<R> + Send + 'static,
        mut on_epoch: impl FnMut(Python<'_>, &S::Report) -> PyResult<()>,
    ) -> PyResult<R> {
        let jobs = self.sender()?;
        type Channel<R, P> = (Sender<Message<R, P>>, Receiver<Message<R, P>>);
        let (tx, rx): Channel<R, S::Report> = mpsc::channel();
        let progress = Arc::new(AtomicU8::new(QUEUED));
        let wrapped: Job<S> = {
            let progress = progress.clone();
            Box::new(move |access, serve| {
                let start =
                    progress.compare_exchange(QUEUED, STARTED, Ordering::AcqRel, Ordering::Acquire);
                if start.is_err() {
                    return;
                }
                let epochs_tx = tx.clone();
                let epochs = Epochs {
                    send: Box::new(move |report| {
                        epochs_tx.send(Message::Epoch(Box::new(report))).is_ok()
                    }),
                    serve,
                };
                let result = catch_unwind(AssertUnwindSafe(|| job(access, &epochs)));
                if result.is_err() {
                    // A trainer a panic left halfway is not used again.
                    access.lose(serve);
                }
                let _ = tx.send(Message::Done(result));
            })
        };
        jobs.send(ToWorker::Job {
            job: wrapped,
            trains,
        })
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
        loop {
            // The receiver travels into the GIL-free wait and back (it is
            // Send, not Sync).
            let (back, message) = py.detach(move || {
                let message = receive(&rx, spin, SIGNALS_EVERY);
                (rx, message)
            });
            rx = back;
            match message {
                Ok(Message::Epoch(record)) => {
                    let now = Instant::now();
                    spin = last_epoch.map_or(Duration::ZERO, |last| {
                        let took = now - last;
                        if took < SHORT_EPOCH {
                            2 * took
                        } else {
                            Duration::ZERO
                        }
                    });
                    if raised.is_none() {
                        let callback = self.enter_callback();
                        let answered = on_epoch(py, &record);
                        drop(callback);
                        if let Err(e) = answered {
                            if let Some(stop) = stop {
                                stop.request();
                            }
                            raised = Some(e);
                        }
                    }
                    if signals_checked.elapsed() >= SIGNALS_EVERY {
                        signals_checked = Instant::now();
                        if let Some(e) = self.signal(py, stop, &progress, &mut raised) {
                            let _ = jobs.send(ToWorker::Answered);
                            return Err(e);
                        }
                    }
                    let _ = jobs.send(ToWorker::Answered);
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
                Err(RecvTimeoutError::Timeout) => {
                    signals_checked = Instant::now();
                    if let Some(e) = self.signal(py, stop, &progress, &mut raised) {
                        return Err(e);
                    }
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(PyRuntimeError::new_err(
                        "the training thread ended without an answer",
                    ));
                }
            }
        }
    }

    /// Lets Python run its signal handlers. On an exception (Ctrl-C's
    /// `KeyboardInterrupt`): a fit is asked to stop and its end waited
    /// for (the exception is kept in `raised`); a call still in the queue
    /// is dropped and the exception returned at once; a call already
    /// running (a short one) is waited for.
    fn signal(
        &self,
        py: Python<'_>,
        stop: Option<&StopFlag>,
        progress: &AtomicU8,
        raised: &mut Option<PyErr>,
    ) -> Option<PyErr> {
        if raised.is_some() {
            return None;
        }
        let Err(e) = py.check_signals() else {
            return None;
        };
        if let Some(stop) = stop {
            stop.request();
        }
        let dropped = progress
            .compare_exchange(QUEUED, CANCELLED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        if dropped {
            return Some(e);
        }
        *raised = Some(e);
        None
    }

    /// Marks the calling thread as running this trainer's callback until
    /// the returned guard drops.
    fn enter_callback(&self) -> impl Drop + '_ {
        struct Leave<'w>(&'w Mutex<Option<ThreadId>>, Option<ThreadId>);
        impl Drop for Leave<'_> {
            fn drop(&mut self) {
                *lock(self.0) = self.1;
            }
        }
        let before = lock(&self.in_callback).replace(std::thread::current().id());
        Leave(&self.in_callback, before)
    }
}

/// Panics inside the guard every entry point uses: for the test that no
/// panic crosses into Python.
#[pyfunction]
pub fn panic_for_test(on_worker_thread: bool) -> PyResult<()> {
    if on_worker_thread {
        let worker = Worker::start();
        return Python::attach(|py| {
            worker.init(py, || -> retroprop::Result<crate::trainer::State> {
                panic!("a test panic on the training thread")
            })
        });
    }
    crate::errors::guard(|| panic!("a test panic on the calling thread"))
}
