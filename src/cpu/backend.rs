//! [`CpuBackend`]: the trainer's work on the CPU, a [`Network<f32>`] plus
//! the buffers its batches are gathered into.

use super::network::Network;
use crate::backend::{
    Backend, BackendConfig, BatchShare, DeviceData, LayerNorms, StepsReport, checks,
};
use crate::data::{Dataset, Targets};
use crate::error::{Error, Kept, Result};
use crate::loss::{Loss, TargetBatch};
use crate::model::Mlp;
use crate::stop::StopFlag;

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
fn on_pool<R: Send>(work: impl FnOnce() -> R + Send) -> R {
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
/// through the whole of `work` ([`KeepWarm`]), between epochs too (while
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
/// first.
#[cfg(not(target_arch = "wasm32"))]
fn pool() -> &'static rayon::ThreadPool {
    static POOL: std::sync::OnceLock<rayon::ThreadPool> = std::sync::OnceLock::new();
    POOL.get_or_init(|| {
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

/// Rows per chunk when evaluating or predicting, to bound memory.
const CHUNK_ROWS: usize = 8192;

/// The CPU backend: [`Network<f32>`] plus batch buffers.
#[derive(Debug)]
pub struct CpuBackend {
    net: Network<f32>,
    loss: Loss,
    x_batch: Vec<f32>,
    value_batch: Vec<f32>,
    label_batch: Vec<u32>,
    norms_every: Option<u64>,
    /// The largest batch of the run, when known.
    batch_rows: Option<usize>,
    /// Checked before every step of `train_steps`.
    stop_flag: Option<StopFlag>,
    /// Uploads made (the id of the current one).
    uploads: u64,
}

impl CpuBackend {
    /// A backend for `mlp` starting from `params` (length
    /// `mlp.parameter_count()`).
    ///
    /// # Panics
    /// If `params` has the wrong length; the trainer checks it first.
    pub fn new(mlp: &Mlp, params: Vec<f32>, config: &BackendConfig) -> CpuBackend {
        let mut net = Network::new(mlp.clone(), params, config.optimizer);
        net.set_grad_clip(config.grad_clip);
        net.set_dropout(&config.dropout, config.seed);
        CpuBackend {
            net,
            loss: config.loss,
            x_batch: Vec::new(),
            value_batch: Vec::new(),
            label_batch: Vec::new(),
            norms_every: config.norms_every,
            batch_rows: config.batch_rows,
            stop_flag: config.stop_flag.clone(),
            uploads: 0,
        }
    }

    /// Gathers rows `indices` of `data` into the batch buffers and runs the
    /// forward and backward passes on them as the rows at `offset` of a
    /// batch of `batch_rows`; returns their summed loss over `batch_rows`.
    fn forward_backward_rows(
        &mut self,
        data: &Dataset,
        indices: &[u32],
        batch_rows: usize,
        offset: usize,
    ) -> f32 {
        // Gather the batch (the GPU does the same through data.wgsl).
        data.gather(
            indices,
            &mut self.x_batch,
            &mut self.value_batch,
            &mut self.label_batch,
        );
        let targets = match data.targets() {
            Targets::Classes(_) => TargetBatch::Classes(&self.label_batch),
            Targets::Values { .. } => TargetBatch::Values(&self.value_batch),
        };
        self.net
            .loss_and_gradients_in_batch(&self.x_batch, self.loss, targets, batch_rows, offset)
    }

    /// [`LayerNorms::of`] the current gradients and parameters, the same
    /// values, each norm a share of its own when the step runs on the pool:
    /// a scikit-learn-style fit asks for them every step, and on the step's
    /// thread alone they took 8 % of a digits fit at (256, 256) (fit_timing
    /// with and without them, 221.6 / 239.0 ms, medians of 8).
    fn layer_norms(&self, step: u64) -> Vec<LayerNorms> {
        let (mlp, grads, params) = (self.net.mlp(), self.net.grads(), self.net.params());
        if rayon::current_thread_index().is_none() {
            return LayerNorms::of(mlp, step, grads, params);
        }
        // Each layer's gradient norm and parameter norm in turn, widest
        // layer first, so the two largest go to different threads.
        let mut order: Vec<usize> = (0..mlp.layers().len()).collect();
        order.sort_by_key(|&l| std::cmp::Reverse(mlp.weight_range(l).len()));
        let items = order
            .iter()
            .flat_map(|&l| [(l, grads), (l, params)])
            .collect();
        let norms = super::share::share(items, |(l, v)| LayerNorms::norm(mlp, l, v));
        let mut out: Vec<LayerNorms> = order
            .iter()
            .zip(norms.chunks_exact(2))
            .map(|(&layer, pair)| LayerNorms {
                step,
                layer,
                grad_norm: pair[0],
                weight_norm: pair[1],
            })
            .collect();
        out.sort_by_key(|n| n.layer);
        out
    }

    /// The steps of [`Backend::train_steps`], arguments checked.
    fn steps(
        &mut self,
        data: &Dataset,
        order: &[u32],
        batch_size: usize,
        max_steps: u64,
        lr: f64,
    ) -> Result<StepsReport> {
        let mut result = StepsReport::default();
        for indices in order
            .chunks(batch_size)
            .take(max_steps.try_into().unwrap_or(usize::MAX))
        {
            if self.stop_flag.as_ref().is_some_and(StopFlag::is_requested) {
                result.stopped = true;
                break;
            }
            let loss = self.forward_backward_rows(data, indices, indices.len(), 0);
            let step = self.net.step_count() + 1;
            if !loss.is_finite() {
                // Stopped before the update: parameters, state and step
                // count are those from before the step (as on the GPU).
                return Err(Error::Diverged {
                    step,
                    loss: loss as f64,
                    kept: Kept {
                        steps: step - 1,
                        epoch: 0,
                        rows_done: result.rows,
                        loss_sum: result.loss_sum,
                    },
                });
            }
            if self.norms_every.is_some_and(|n| step.is_multiple_of(n)) {
                result.norms.extend(self.layer_norms(step));
            }
            self.net.update(Some(lr));
            result.loss_sum += loss as f64 * indices.len() as f64;
            result.rows += indices.len();
            result.steps += 1;
        }
        Ok(result)
    }
}

impl Backend for CpuBackend {
    /// `cpu: ` and the GEMM of the run's steps: the BLAS library's name
    /// only where a step has a product for it (naming it loads it, and a
    /// loaded OpenBLAS starts its threads: ~4 ms, a tenth of a small fit).
    fn name(&self) -> String {
        let library = self
            .batch_rows
            .is_none_or(|rows| self.net.step_reaches_library(rows));
        if library {
            format!("cpu: {}", super::gemm_name())
        } else {
            "cpu: built-in GEMM".to_string()
        }
    }

    fn parameters(&mut self) -> Result<Vec<f32>> {
        Ok(self.net.params().to_vec())
    }

    fn set_parameters(&mut self, params: &[f32]) -> Result<()> {
        checks::length(
            "parameters of the network",
            self.net.params_mut().len(),
            params.len(),
        )?;
        self.net.params_mut().copy_from_slice(params);
        Ok(())
    }

    fn optimizer_state(&mut self) -> Result<(Vec<f32>, u64)> {
        Ok((self.net.optimizer_state().to_vec(), self.net.step_count()))
    }

    fn set_optimizer_state(&mut self, state: &[f32], step: u64) -> Result<()> {
        let expected = self.net.optimizer_state().len();
        checks::length("optimizer state", expected, state.len())?;
        self.net.set_optimizer_state(state, step);
        Ok(())
    }

    fn upload<'a>(&mut self, data: &'a Dataset) -> Result<DeviceData<'a>> {
        // The CPU reads the rows where they are.
        self.uploads += 1;
        Ok(DeviceData::new(self.uploads, data))
    }

    fn forward_backward(&mut self, data: &DeviceData<'_>, share: BatchShare<'_>) -> Result<f64> {
        data.check(Some(self.uploads))?;
        share.check()?;
        if share.rows.is_empty() {
            self.net.grads_mut().fill(0.0);
            return Ok(0.0);
        }
        let loss =
            self.forward_backward_rows(data.dataset(), share.rows, share.batch_rows, share.offset);
        Ok(loss as f64)
    }

    fn gradients(&mut self) -> Result<Vec<f32>> {
        Ok(self.net.grads().to_vec())
    }

    fn set_gradients(&mut self, grads: &[f32]) -> Result<()> {
        let own = self.net.grads_mut();
        if grads.len() != own.len() {
            return Err(Error::Shape {
                what: "gradients of the network".into(),
                expected: own.len(),
                got: grads.len(),
            });
        }
        own.copy_from_slice(grads);
        Ok(())
    }

    fn update(&mut self, lr: f64) -> Result<()> {
        self.net.update(Some(lr));
        Ok(())
    }

    fn train_steps(
        &mut self,
        data: &DeviceData<'_>,
        order: &[u32],
        batch_size: usize,
        max_steps: u64,
        lr: f64,
    ) -> Result<StepsReport> {
        data.check(Some(self.uploads))?;
        checks::steps(order, data.dataset().rows(), batch_size)?;
        let dataset = data.dataset();
        if self.net.step_uses_threads(batch_size) {
            on_pool(|| self.steps(dataset, order, batch_size, max_steps, lr))
        } else {
            // Nothing to share: handing the run to the pool would only add
            // two wake-ups a call (a tenth of an iris-sized fit's epoch).
            self.steps(dataset, order, batch_size, max_steps, lr)
        }
    }

    fn evaluate(&mut self, data: &Dataset) -> Result<(f64, Option<usize>)> {
        let width = self.net.mlp().outputs();
        let mut loss_sum = 0.0;
        let mut correct: Option<usize> = None;
        let mut grad = Vec::new();
        for start in (0..data.rows()).step_by(CHUNK_ROWS) {
            let end = (start + CHUNK_ROWS).min(data.rows());
            let x = &data.x()[start * data.features()..end * data.features()];
            let targets = data.target_batch(start..end);
            let output = self.net.forward(x);
            grad.resize(output.len(), 0.0);
            let loss = self
                .loss
                .forward_backward(output, width, targets, &mut grad);
            loss_sum += loss as f64 * (end - start) as f64;
            if let Some(c) = self.loss.correct(output, width, targets) {
                *correct.get_or_insert(0) += c;
            }
        }
        Ok((loss_sum, correct))
    }

    fn predict(&mut self, x: &[f32]) -> Result<Vec<f32>> {
        let inputs = self.net.mlp().inputs();
        checks::rows_of("inputs to predict", inputs, x.len())?;
        let mut out = Vec::with_capacity(x.len() / inputs * self.net.mlp().outputs());
        for chunk in x.chunks(CHUNK_ROWS * inputs) {
            out.extend_from_slice(self.net.forward(chunk));
        }
        Ok(out)
    }

    fn memory_bytes(&self) -> u64 {
        self.net.memory_bytes()
            + 4 * (self.x_batch.capacity()
                + self.value_batch.capacity()
                + self.label_batch.capacity()) as u64
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
    /// then starts them looking again). A second run meanwhile runs on its
    /// own caller's thread.
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
        let mut backend = super::CpuBackend::new(&mlp, params.clone(), &config);
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
