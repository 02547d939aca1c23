//! The CPU backend's threads: its own rayon pools ([`pool`], and
//! [`overflow_pool`] for a second run at the same time), the one run that
//! has the pool at a time ([`run_on_pool`], [`on_pool`]), its other threads
//! kept looking for work while it does ([`KeepWarm`]), optionally held to
//! CPUs of their own, and made again in a process forked from one that
//! started them ([`forked`]).

/// Runs `work` on a thread of rayon's pool and waits for it. Called from
/// outside the pool (the program's main thread, a Python thread), every
/// parallel GEMM and elementwise pass of a step would hand its work to the
/// pool and put the caller to sleep until it is done: a wake-up and a sleep
/// each, a dozen times a step, which took ~15 % of a scikit-learn-sized fit
/// (batch 200, 256 units) in the kernel's scheduler. From inside, the
/// step's thread takes a share of each pass itself. The pool is the CPU
/// backend's own ([`pool`]), with as many threads as rayon's global one, so
/// a product is split alike on either; in the browser it is the calling
/// thread alone and `work` simply runs.
///
/// One run at a time: while one is on the pool, another (a second trainer
/// on another thread, such as concurrent fits from Python) runs on its
/// caller's thread as before. On the pool, a thread waiting in a join may
/// pick up any queued job, and a whole run of steps queued there would
/// hold up the run it interrupted (and its stop flag) until it finished.
pub(super) fn on_pool<R: Send>(work: impl FnOnce() -> R + Send) -> R {
    // A member of a run trained side by side shares nothing of its own.
    if super::share::is_serial() {
        return work();
    }
    // Already there, in a [`run_on_pool`], whose other threads are
    // looking for work unless they have given up.
    #[cfg(not(target_arch = "wasm32"))]
    if pool().current_thread_index().is_some() {
        let others = pool().current_num_threads() - 1;
        let _warm =
            (LOOKING.load(std::sync::atomic::Ordering::Acquire) < others).then(KeepWarm::start);
        return work();
    }
    run_on_pool(work)
}

/// Runs `work` on a thread of the CPU backend's pool, when no other run
/// has it (else on this thread), and waits for it: for a caller that
/// trains for many epochs and does little between them, such as the
/// Python package's training thread. Each epoch's steps then start where
/// they are instead of being handed to the pool and handed back, two
/// wake-ups an epoch: a breast-cancer fit at (256, 256) from Python, 89
/// epochs of 1.5 ms, went from 0.139 to 0.133 s (medians of 4 fresh
/// processes, 2026-12-03). The other threads are kept looking for work
/// through the whole of `work` (`KeepWarm`), between epochs too (while
/// Python takes an epoch's record), rather than started again each epoch:
/// digits from Python 0.222 → 0.216 s, breast cancer 0.122 → 0.119
/// (medians of 5). Off the pool's threads, steps run as before.
///
/// ```
/// let sum = retroprop::cpu::run_on_pool(|| (1..=10).sum::<u32>());
/// assert_eq!(sum, 55);
/// ```
pub fn run_on_pool<R: Send>(work: impl FnOnce() -> R + Send) -> R {
    let Some(_leave) = take_pool() else {
        // Another run has the pool: this one runs on a second pool of the
        // backend's, never on rayon's global one, whose threads a process
        // forked after it started does not have.
        #[cfg(not(target_arch = "wasm32"))]
        return overflow_pool().install(work);
        #[cfg(target_arch = "wasm32")]
        return work();
    };
    #[cfg(not(target_arch = "wasm32"))]
    return pool().install(|| {
        let _warm = KeepWarm::start();
        work()
    });
    #[cfg(target_arch = "wasm32")]
    work()
}

/// Whether a run is on the pool (see [`on_pool`]).
static ON_POOL: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The pool for one run, unless another has it; freed when dropped.
fn take_pool() -> Option<Leave> {
    // `then`, not `then_some`: a `Leave` made and dropped when the pool is
    // taken would free it under the run that has it.
    (!ON_POOL.swap(true, std::sync::atomic::Ordering::Acquire)).then(|| Leave)
}

/// Frees the pool for the next run, on return and on unwinding alike.
struct Leave;

impl Drop for Leave {
    fn drop(&mut self) {
        ON_POOL.store(false, std::sync::atomic::Ordering::Release);
    }
}

/// Keeps the pool's other threads looking for work while a run is on it,
/// instead of going to sleep between a step's passes: each sleep costs the
/// step's thread a wake-up (an interrupt to another CPU, slow in a virtual
/// machine) at the next pass, and a step of a scikit-learn-sized network
/// has a dozen passes. Each other thread runs a job that takes whatever
/// work appears (`rayon::yield_now`), spinning a while and then yielding
/// its CPU to the operating system between looks, until the run ends
/// (dropped, also on unwinding) or it has found nothing for 2 ms (then it
/// sleeps between jobs as before). A digits-sized fit (64-256-256-10,
/// batch 200, 54 epochs, `examples/fit_timing.rs`) took 0.315 s without
/// it and 0.246 with it, medians of 8 interleaved runs (2026-12-03).
#[cfg(not(target_arch = "wasm32"))]
struct KeepWarm(std::sync::Arc<Warm>);

/// The pool's threads now in a [`KeepWarm`] job, whichever run's.
#[cfg(not(target_arch = "wasm32"))]
static LOOKING: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// What a [`KeepWarm`] shares with its jobs.
#[cfg(not(target_arch = "wasm32"))]
#[derive(Default)]
struct Warm {
    /// Set when the run ends.
    done: std::sync::atomic::AtomicBool,
    /// The threads that have entered one of its jobs.
    joined: std::sync::atomic::AtomicUsize,
}

#[cfg(not(target_arch = "wasm32"))]
impl KeepWarm {
    /// Longer than any gap between a step's passes.
    const IDLE_LIMIT: std::time::Duration = std::time::Duration::from_millis(2);

    /// Called on a thread of the pool.
    fn start() -> KeepWarm {
        let warm = std::sync::Arc::new(Warm::default());
        let run_on = rayon::current_thread_index();
        let shared = warm.clone();
        rayon::spawn_broadcast(move |thread| {
            // The run's own thread takes its copy when it next waits, and
            // must not stay in it.
            if Some(thread.index()) != run_on {
                shared.look_for_work();
            }
        });
        // The others start looking before the run shares any work: a
        // thread that took a share first could pick its copy up while it
        // waited inside that share, and would then look for work there
        // (not returning the share) until it gave up.
        let others = rayon::current_num_threads() - 1;
        let waiting = std::time::Instant::now();
        while warm.joined.load(std::sync::atomic::Ordering::Acquire) < others
            && waiting.elapsed() < Self::IDLE_LIMIT
        {
            std::hint::spin_loop();
        }
        KeepWarm(warm)
    }
}

#[cfg(not(target_arch = "wasm32"))]
impl Warm {
    /// Runs whatever work appears on the pool until the run ends or
    /// nothing has come for [`KeepWarm::IDLE_LIMIT`].
    fn look_for_work(&self) {
        use std::sync::atomic::Ordering;
        use std::time::Instant;
        self.joined.fetch_add(1, Ordering::SeqCst);
        LOOKING.fetch_add(1, Ordering::SeqCst);
        /// Counts the thread out however the job ends.
        struct Out;
        impl Drop for Out {
            fn drop(&mut self) {
                LOOKING.fetch_sub(1, Ordering::SeqCst);
            }
        }
        let _out = Out;
        let mut idle = 0;
        let mut idle_since = Instant::now();
        while !self.done.load(Ordering::Acquire) {
            if super::share::look_for_work(&mut idle) {
                continue;
            }
            if idle == 1 {
                idle_since = Instant::now();
            }
            // Nothing for this long is no step's gap between passes (a CPU
            // shared with other busy processes, a run waiting on something
            // else): back to sleeping between jobs. Once looks yield the
            // CPU, each may wait a time slice, so each reads the clock.
            if idle >= super::share::SPINS && idle_since.elapsed() > KeepWarm::IDLE_LIMIT {
                return;
            }
        }
    }
}

#[cfg(not(target_arch = "wasm32"))]
impl Drop for KeepWarm {
    fn drop(&mut self) {
        self.0
            .done
            .store(true, std::sync::atomic::Ordering::Release);
    }
}

/// The pool the steps run on: as many threads as rayon's global pool.
/// With `RETROPROP_CPU_AFFINITY=on` each is held to a CPU of its own where
/// the process may run on exactly as many CPUs ([`pinned_cpus`]). Left to
/// the scheduler, the two threads of one 2-CPU virtual machine were put
/// on one CPU in about half the processes (a thread woken by another is
/// placed beside it), and every shared pass then ran slower than on one
/// thread: a 64-256-256-10 step took 1 530–1 660 µs instead of 673–692, in
/// 8 runs of 8 when held apart (2026-12-03, before [`KeepWarm`], which
/// keeps the other thread from sleeping and so from being woken beside
/// the first). Not the default: every process would hold its busiest
/// thread to the same first CPU (two fits side by side, as `n_jobs=2`
/// runs them, would share it), and a BLAS library first loaded on a held
/// thread counts one CPU and starts no threads, so it is loaded here
/// first. Made again in a process forked from one that had it
/// ([`forked`]).
#[cfg(not(target_arch = "wasm32"))]
fn pool() -> &'static rayon::ThreadPool {
    forked::pool(&forked::MAIN, || {
        let threads = rayon::current_num_threads();
        let setting = std::env::var("RETROPROP_CPU_AFFINITY").ok();
        let cpus = pinned_cpus(setting.as_deref(), affinity::allowed_cpus(), threads);
        if cpus.is_some() {
            super::gemm::blas();
        }
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("retroprop-cpu-{i}"))
            .start_handler(move |i| {
                if let Some(cpus) = &cpus {
                    affinity::hold_to(cpus[i]);
                }
            })
            .build()
            .expect("the operating system refused the CPU backend's threads")
    })
}

/// The pool of the runs that find [`pool`] taken by another (a second
/// trainer training at the same time): as many threads, so its products
/// are split, and round, alike; never kept warm.
#[cfg(not(target_arch = "wasm32"))]
fn overflow_pool() -> &'static rayon::ThreadPool {
    forked::pool(&forked::OVERFLOW, || {
        rayon::ThreadPoolBuilder::new()
            .num_threads(rayon::current_num_threads())
            .thread_name(|i| format!("retroprop-cpu-more-{i}"))
            .build()
            .expect("the operating system refused the CPU backend's threads")
    })
}

/// The pools in a process forked from one that had started them: a
/// child has only the thread that forked, and work handed to the parent's
/// pool threads would wait for them forever (Python's `multiprocessing`
/// forks, as joblib's multiprocessing backend does under scikit-learn's
/// `n_jobs`). In the child the parent's pools are forgotten (their memory
/// left as it is) and the pool's bookkeeping starts afresh; the next use
/// builds new pools, of the same size.
#[cfg(not(target_arch = "wasm32"))]
mod forked {
    use std::sync::atomic::{AtomicPtr, Ordering};

    /// The pool steps run on ([`super::pool`]), null until built.
    pub(super) static MAIN: AtomicPtr<rayon::ThreadPool> = AtomicPtr::new(std::ptr::null_mut());
    /// The pool of further runs ([`super::overflow_pool`]).
    pub(super) static OVERFLOW: AtomicPtr<rayon::ThreadPool> = AtomicPtr::new(std::ptr::null_mut());

    /// The pool in `slot`, built by `build` the first time in this process.
    pub(super) fn pool(
        slot: &'static AtomicPtr<rayon::ThreadPool>,
        build: impl FnOnce() -> rayon::ThreadPool,
    ) -> &'static rayon::ThreadPool {
        forget_in_children();
        let current = slot.load(Ordering::Acquire);
        if !current.is_null() {
            // SAFETY: a non-null pointer in a slot is a leaked Box, never
            // freed (a child forgets it without freeing it).
            return unsafe { &*current };
        }
        let built = Box::into_raw(Box::new(build()));
        match slot.compare_exchange(
            std::ptr::null_mut(),
            built,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            // SAFETY: as above; `built` is now the slot's.
            Ok(_) => unsafe { &*built },
            Err(winner) => {
                // Another thread built one first: ours was never used.
                // SAFETY: `built` came from Box::into_raw just above and
                // nothing else has it; `winner` is a slot's leaked Box.
                unsafe {
                    drop(Box::from_raw(built));
                    &*winner
                }
            }
        }
    }

    /// Registers [`in_child`] with the C library, once a process (a
    /// child inherits the registration).
    fn forget_in_children() {
        static ONCE: std::sync::Once = std::sync::Once::new();
        #[cfg(unix)]
        // SAFETY: `in_child` only stores to atomics, which is allowed in
        // a child of a multi-threaded process.
        ONCE.call_once(|| unsafe {
            libc::pthread_atfork(None, None, Some(in_child));
        });
        #[cfg(not(unix))]
        ONCE.call_once(|| {});
    }

    /// Run in a forked child: forgets the parent's pools and frees the
    /// bookkeeping its runs held.
    #[cfg(unix)]
    extern "C" fn in_child() {
        MAIN.store(std::ptr::null_mut(), Ordering::Release);
        OVERFLOW.store(std::ptr::null_mut(), Ordering::Release);
        super::ON_POOL.store(false, Ordering::Release);
        super::LOOKING.store(0, Ordering::Release);
    }
}

/// The CPU each of the pool's `threads` is held to, by the
/// `RETROPROP_CPU_AFFINITY` `setting`: with `on`, where the process may
/// run on exactly `allowed` (as many as the threads, more than one); else
/// none.
#[cfg(not(target_arch = "wasm32"))]
fn pinned_cpus(setting: Option<&str>, allowed: Vec<usize>, threads: usize) -> Option<Vec<usize>> {
    (setting.map(str::trim) == Some("on") && allowed.len() == threads && threads > 1)
        .then_some(allowed)
}

/// The CPUs a thread may run on, and holding it to one.
#[cfg(not(target_arch = "wasm32"))]
pub(crate) mod affinity {
    /// The CPUs the calling thread may run on (empty where unknown).
    pub fn allowed_cpus() -> Vec<usize> {
        #[cfg(target_os = "linux")]
        // SAFETY: `set` is a plain bit set that sched_getaffinity fills in,
        // and CPU_ISSET reads it within CPU_SETSIZE.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
                return Vec::new();
            }
            (0..libc::CPU_SETSIZE as usize)
                .filter(|&cpu| libc::CPU_ISSET(cpu, &set))
                .collect()
        }
        #[cfg(not(target_os = "linux"))]
        Vec::new()
    }

    /// Holds the calling thread to `cpu` (nothing where it cannot).
    pub fn hold_to(cpu: usize) {
        #[cfg(target_os = "linux")]
        // SAFETY: as above; sched_setaffinity only reads `set`.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu, &mut set);
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
        }
        #[cfg(not(target_os = "linux"))]
        let _ = cpu;
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod keep_warm_tests {
    use super::{KeepWarm, Leave, Warm, pool, take_pool};
    use std::sync::atomic::Ordering;
    use std::time::{Duration, Instant};

    /// The pool to this test alone, as a run has it (other tests train).
    fn hold_pool() -> Leave {
        loop {
            if let Some(leave) = take_pool() {
                return leave;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Whether `count` of `warm` reaches `n` within five seconds (other
    /// tests share the machine).
    fn reaches(warm: &Warm, count: fn(&Warm) -> usize, n: usize) -> bool {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(5) {
            if count(warm) == n {
                return true;
            }
            std::thread::sleep(Duration::from_micros(100));
        }
        false
    }

    fn joined(warm: &Warm) -> usize {
        warm.joined.load(Ordering::SeqCst)
    }

    /// The pool's threads in a keep-warm job, whichever run's (the tests
    /// hold the pool, so no other run's).
    fn looking(_: &Warm) -> usize {
        super::LOOKING.load(Ordering::SeqCst)
    }

    /// While a run is on the pool, every other thread of it joins in,
    /// looking for work; when the run ends, on return or on a panic, none
    /// is left in the job.
    #[test]
    fn a_run_keeps_the_other_threads_warm_and_frees_them_when_it_ends() {
        let _held = hold_pool();
        let others = pool().current_num_threads() - 1;
        let warm = pool().install(|| {
            let keep = KeepWarm::start();
            let (a, b) = rayon::join(|| (0..1000u64).sum::<u64>(), || 7u64);
            assert_eq!((a, b), (499_500, 7));
            assert!(
                reaches(&keep.0, joined, others),
                "{others} other threads did not join the run"
            );
            keep.0.clone()
        });
        assert!(
            reaches(&warm, looking, 0),
            "a thread still spins after the run"
        );
        let warm = std::sync::Mutex::new(None);
        let panicked = std::panic::catch_unwind(|| {
            pool().install(|| {
                let keep = KeepWarm::start();
                let all_joined = reaches(&keep.0, joined, others);
                *warm.lock().unwrap() = Some((keep.0.clone(), all_joined));
                panic!("a failing step")
            })
        });
        assert!(panicked.is_err());
        let (warm, all_joined) = warm.lock().unwrap().take().expect("the run started");
        assert!(all_joined, "{others} other threads did not join the run");
        assert!(
            reaches(&warm, looking, 0),
            "a thread still spins after a panic"
        );
    }

    /// Work given to `run_on_pool` runs on the pool, and steps inside it
    /// keep the other threads warm there: while they still look for work
    /// from the run's start, and again once they have given up (a run
    /// waiting longer than `KeepWarm::IDLE_LIMIT` between epochs: a step
    /// then starts them looking again). A second run meanwhile runs on the
    /// second pool, not this one.
    #[test]
    fn a_run_on_the_pool_keeps_it_and_steps_inside_keep_it_warm() {
        let others = pool().current_num_threads() - 1;
        /// The pool's threads looking for work once `n` are, or after five
        /// seconds (other tests share the machine).
        fn looking_when(n: impl Fn(usize) -> bool) -> usize {
            let start = Instant::now();
            while !n(super::LOOKING.load(Ordering::SeqCst))
                && start.elapsed() < Duration::from_secs(5)
            {
                std::hint::spin_loop();
            }
            super::LOOKING.load(Ordering::SeqCst)
        }
        let (on_pool, joined_inside, gave_up, joined_again, second_on_pool) = loop {
            // Another test may hold the pool: then this run is not on it.
            let result = super::run_on_pool(|| {
                let here = pool().current_thread_index().is_some();
                if !here {
                    return (false, 0, 0, 0, false);
                }
                let joined = super::on_pool(|| looking_when(|n| n >= others));
                // Nothing to do for longer than the idle limit: the others
                // leave the run's job, and a step starts them again.
                let gave_up = looking_when(|n| n == 0);
                let joined_again = super::on_pool(|| looking_when(|n| n >= others));
                let second = std::thread::scope(|s| {
                    s.spawn(|| super::run_on_pool(|| pool().current_thread_index().is_some()))
                        .join()
                        .expect("the second run")
                });
                (here, joined, gave_up, joined_again, second)
            });
            if result.0 {
                break result;
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        assert!(on_pool);
        assert!(
            joined_inside >= others,
            "{joined_inside} of {others} other threads looked for work"
        );
        assert_eq!(gave_up, 0, "threads still looked for work with none to do");
        assert!(
            joined_again >= others,
            "{joined_again} of {others} other threads looked for work again after giving up"
        );
        assert!(!second_on_pool, "a second run took the pool from the first");
    }

    /// The norms a step samples are [`LayerNorms::of`]'s to the bit,
    /// whether they are shared among the pool's threads or not.
    #[test]
    fn shared_layer_norms_are_those_of_one_thread() {
        use crate::activation::Activation;
        use crate::backend::{Backend, BackendConfig, LayerNorms};
        use crate::loss::Loss;
        use crate::model::{Init, Mlp};
        use crate::optim::Adam;
        let mlp = Mlp::new(&[64, 256, 256, 10], Activation::Relu, Activation::Identity)
            .expect("a network");
        let params = mlp.init(Init::KaimingUniform, 3);
        let config = BackendConfig::new(Loss::CrossEntropy, Adam::default().into());
        let mut backend = crate::cpu::CpuBackend::new(&mlp, params.clone(), &config);
        let grads: Vec<f32> = mlp.init(Init::XavierUniform, 4);
        backend.set_gradients(&grads).expect("gradients");
        let want = LayerNorms::of(&mlp, 9, &grads, &params);
        assert_eq!(backend.layer_norms(9), want, "off the pool");
        let on_pool = loop {
            let got = super::run_on_pool(|| {
                pool().current_thread_index()?;
                Some(backend.layer_norms(9))
            });
            if let Some(got) = got {
                break got;
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        assert_eq!(on_pool, want, "shared on the pool");
    }

    /// A thread that finds nothing to do for longer than a step's gaps
    /// leaves the job by itself, the run still going.
    #[test]
    fn a_thread_with_nothing_to_do_stops_looking() {
        let _held = hold_pool();
        let others = pool().current_num_threads() - 1;
        pool().install(|| {
            let keep = KeepWarm::start();
            assert!(reaches(&keep.0, joined, others));
            std::thread::sleep(KeepWarm::IDLE_LIMIT * 20);
            assert!(
                reaches(&keep.0, looking, 0),
                "a thread still spins with no work"
            );
        });
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::{affinity, pinned_cpus, pool};

    /// Threads are held only when asked, and only where each can have a
    /// CPU of its own.
    #[test]
    fn threads_are_held_to_cpus_only_when_asked_and_one_each() {
        assert_eq!(pinned_cpus(Some("on"), vec![0, 1], 2), Some(vec![0, 1]));
        assert_eq!(pinned_cpus(Some(" on\n"), vec![2, 5], 2), Some(vec![2, 5]));
        assert_eq!(pinned_cpus(None, vec![0, 1], 2), None);
        assert_eq!(pinned_cpus(Some("off"), vec![0, 1], 2), None);
        assert_eq!(pinned_cpus(Some("on"), vec![0, 1, 2], 2), None);
        assert_eq!(pinned_cpus(Some("on"), vec![0], 1), None);
        assert_eq!(pinned_cpus(Some("on"), vec![], 2), None);
    }

    /// `hold_to` leaves the thread on that CPU alone; the pool's threads
    /// are held as the setting says.
    #[test]
    fn a_held_thread_runs_on_its_cpu_alone() {
        let allowed = affinity::allowed_cpus();
        let last = *allowed.last().expect("the CPUs this process may use");
        let held = std::thread::spawn(move || {
            affinity::hold_to(last);
            affinity::allowed_cpus()
        })
        .join()
        .unwrap();
        assert_eq!(held, vec![last]);
        let threads = rayon::current_num_threads();
        let pool_cpus: Vec<Vec<usize>> = pool().broadcast(|_| affinity::allowed_cpus());
        let setting = std::env::var("RETROPROP_CPU_AFFINITY").ok();
        match pinned_cpus(setting.as_deref(), allowed.clone(), threads) {
            Some(cpus) => {
                assert_eq!(pool_cpus, cpus.iter().map(|&c| vec![c]).collect::<Vec<_>>())
            }
            None => assert!(pool_cpus.iter().all(|c| c == &allowed), "{pool_cpus:?}"),
        }
    }
}
