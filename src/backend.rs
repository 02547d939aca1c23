//! The seam between the trainer and a device: the trait both backends
//! implement, and the values that cross it.
//!
//! One optimizer step has three phases, each callable on its own:
//!
//! 1. [`Backend::forward_backward`]: the forward pass, the loss and the
//!    backward pass over one share of a batch; the gradients stay on the
//!    backend, in one flat buffer laid out like the parameters.
//! 2. [`Backend::gradients`] / [`Backend::set_gradients`]: that buffer, read
//!    and written between backward and update (where a data-parallel run
//!    sums it across processes).
//! 3. [`Backend::update`]: clipping, then the optimizer, over every
//!    parameter.
//!
//! [`Backend::train_steps`] runs many whole steps at once: the GPU records
//! them into few submissions and reads back once. Single-process training
//! uses it; the phases exist for what must happen between them.
//!
//! ```
//! use retroprop::backend::{Backend, BackendConfig, BatchShare};
//! use retroprop::cpu::CpuBackend;
//! use retroprop::{Activation, Dataset, Loss, Mlp, Sgd, Targets};
//! let xor = Dataset::new(vec![0., 0., 0., 1., 1., 0., 1., 1.], 2, Targets::Classes(vec![0, 1, 1, 0]))?;
//! let mlp = Mlp::new(&[2, 4, 2], Activation::Tanh, Activation::Identity)?;
//! let config = BackendConfig::new(Loss::CrossEntropy, Sgd::default().lr(0.1).into());
//! let mut backend = CpuBackend::new(&mlp, mlp.init(Default::default(), 0), &config);
//! let data = backend.upload(&xor)?;
//! // One step of the whole batch, in phases.
//! let loss = backend.forward_backward(&data, BatchShare::whole(&[0, 1, 2, 3]))?;
//! let grads = backend.gradients()?;
//! backend.set_gradients(&grads)?;
//! backend.update(0.1)?;
//! assert!(loss > 0.0);
//! assert_eq!(backend.optimizer_state()?.1, 1);
//! # Ok::<(), retroprop::Error>(())
//! ```

use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::loss::Loss;
use crate::model::Mlp;
use crate::optim::{GradClip, Optimizer};
use crate::real::{Precision, Real};
use crate::stop::StopFlag;

/// What every backend needs to know of a run: the objective, the optimizer
/// and the per-step options. The trainer derives it from its `TrainConfig`
/// ([`TrainConfig::backend_config`](crate::TrainConfig::backend_config));
/// what only one backend reads is that backend's own (the GPU's
/// [`GpuOptions`](crate::gpu::GpuOptions)).
#[derive(Debug, Clone, PartialEq)]
pub struct BackendConfig {
    /// The training objective.
    pub loss: Loss,
    /// The optimizer and its hyperparameters.
    pub optimizer: Optimizer,
    /// Gradient clipping, applied by [`Backend::update`].
    pub grad_clip: GradClip,
    /// Dropout probability of each layer's output in training passes (the
    /// output layer's is 0); empty for none.
    pub dropout: Vec<f32>,
    /// Seeds the dropout masks.
    pub seed: u64,
    /// Sample per-layer norms every this many steps in
    /// [`Backend::train_steps`].
    pub norms_every: Option<u64>,
    /// The largest batch the run will use, to size buffers (`None`: no
    /// batch size known, e.g. full-batch).
    pub batch_rows: Option<usize>,
    /// Checked by [`Backend::train_steps`] before every step (CPU) or
    /// submission (GPU): once requested, it stops there.
    pub stop_flag: Option<StopFlag>,
    /// The number format of the matrix products: f32, or f16 operands
    /// with f32 sums ([`Precision::Mixed`], GPU only; a backend that cannot
    /// refuses it when it is made).
    pub precision: Precision,
}

impl BackendConfig {
    /// `loss` and `optimizer`, with no clipping, dropout or norms.
    pub fn new(loss: Loss, optimizer: Optimizer) -> BackendConfig {
        BackendConfig {
            loss,
            optimizer,
            grad_clip: GradClip::default(),
            dropout: Vec::new(),
            seed: 0,
            norms_every: None,
            batch_rows: None,
            stop_flag: None,
            precision: Precision::F32,
        }
    }

    /// Whether [`stop_flag`](Self::stop_flag) asks to stop.
    pub fn stop_requested(&self) -> bool {
        self.stop_flag.as_ref().is_some_and(StopFlag::is_requested)
    }

    /// The dropout probability of layer `l` (0 when none is set).
    pub fn dropout_of(&self, l: usize) -> f32 {
        self.dropout.get(l).copied().unwrap_or(0.0)
    }
}

/// The training data as a backend holds it, returned by
/// [`Backend::upload`] and handed back to every step that reads it. It
/// borrows the data set it was made from (the CPU gathers batches from it;
/// the GPU keeps a copy resident and gathers there), so the data set cannot
/// change while the handle lives: what a step reads is what was uploaded.
///
/// A backend numbers its uploads (1, 2, …) and keeps the number of the
/// current one; each step [`check`](Self::check)s that it is handed that
/// one. The trainer takes an upload up again, with [`new`](Self::new),
/// while the data set's [`version`](Dataset::version) is the one uploaded.
///
/// ```
/// use retroprop::backend::DeviceData;
/// use retroprop::{Dataset, Targets};
/// let data = Dataset::new(vec![0.0, 1.0], 1, Targets::Classes(vec![0, 1]))?;
/// let upload = DeviceData::new(3, &data);
/// assert_eq!(upload.id(), 3);
/// assert!(upload.check(Some(3)).is_ok());
/// assert!(upload.check(Some(4)).is_err()); // a later upload replaced it
/// # Ok::<(), retroprop::Error>(())
/// ```
#[derive(Debug, Clone, Copy)]
pub struct DeviceData<'a> {
    /// Which upload of its backend this is.
    id: u64,
    host: &'a Dataset,
}

impl<'a> DeviceData<'a> {
    /// Upload number `id` of a backend, of `data`: what
    /// [`Backend::upload`] returns.
    pub fn new(id: u64, data: &'a Dataset) -> DeviceData<'a> {
        DeviceData { id, host: data }
    }

    /// Which upload of its backend this is.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The rows as uploaded.
    pub fn dataset(&self) -> &'a Dataset {
        self.host
    }

    /// An error unless this is upload `id` (the backend's current upload;
    /// `None` before the first).
    pub fn check(&self, id: Option<u64>) -> Result<()> {
        if id == Some(self.id) {
            Ok(())
        } else {
            Err(Error::Config(
                "the training data handle is not this backend's current upload (upload it again)"
                    .into(),
            ))
        }
    }
}

/// Sums over the ranks that share a batch, of values each rank computed
/// over its share: what batch normalisation needs of the whole batch when
/// each rank holds a share (torch's `SyncBatchNorm`). Every rank calls
/// [`sum`](Self::sum) the same number of times with the same lengths (a
/// rank with an empty share too), and each gets the same bits.
pub trait BatchSums {
    /// Replaces `values` with their element-wise sum over the ranks. A
    /// failure (a rank that left) is kept by the implementation and
    /// reported after the pass; `values` are then zeros.
    fn sum(&self, values: &mut [f64]);
}

impl std::fmt::Debug for dyn BatchSums + '_ {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BatchSums")
    }
}

/// One process's share of a batch for [`Backend::forward_backward`]: the
/// data set's rows `rows`, which sit at `offset` in a batch of
/// `batch_rows` rows. The loss is normalised by the whole batch, so the
/// gradients of every share of a batch add up to the batch's gradient, and
/// dropout masks follow the row's place in the whole batch. A share may be
/// empty (a process with no rows of a short last batch): its gradients are
/// zero.
#[derive(Debug, Clone, Copy)]
pub struct BatchShare<'a> {
    /// Indices of the share's rows in the data set.
    pub rows: &'a [u32],
    /// Rows in the whole batch.
    pub batch_rows: usize,
    /// Where the share's first row sits in the whole batch.
    pub offset: usize,
    /// The whole batch's weight (Σ of its rows' weights,
    /// [`Dataset::weight_of`]), which a data set with weights divides the
    /// loss by; `None`: the share's own (a whole batch). Unused without
    /// weights.
    pub batch_weight: Option<f64>,
    /// Where the share's batch statistics become the whole batch's (a
    /// network with batch normalisation, its batch shared by ranks);
    /// `None`: the share's own, refused for batch normalisation unless the
    /// share is the whole batch.
    pub across: Option<&'a dyn BatchSums>,
}

impl<'a> BatchShare<'a> {
    /// A whole batch: `rows` of the data set.
    pub fn whole(rows: &'a [u32]) -> BatchShare<'a> {
        BatchShare {
            rows,
            batch_rows: rows.len(),
            offset: 0,
            batch_weight: None,
            across: None,
        }
    }

    /// An error unless the share fits its batch: a batch of at least one
    /// row, and the share's rows inside it.
    pub fn check(&self) -> Result<()> {
        if self.batch_rows == 0 || self.offset + self.rows.len() > self.batch_rows {
            return Err(Error::Config(format!(
                "a batch share of {} rows at offset {} does not fit a batch of {} rows",
                self.rows.len(),
                self.offset,
                self.batch_rows
            )));
        }
        Ok(())
    }
}

/// What [`Backend::train_steps`] did: the summed row-weighted loss and
/// counts, the per-layer norms sampled on the way, and whether a
/// [`StopFlag`] ended it early.
#[derive(Debug, Clone, Default)]
pub struct StepsReport {
    /// Σ over steps of the batch's mean loss × its rows (its weight, for a
    /// data set with weights: a weighted mean's numerator).
    pub loss_sum: f64,
    /// Rows trained on.
    pub rows: usize,
    /// Optimizer steps taken.
    pub steps: u64,
    /// Norms sampled (`BackendConfig::norms_every`).
    pub norms: Vec<LayerNorms>,
    /// Whether [`BackendConfig::stop_flag`] stopped the steps before
    /// `order` or `max_steps` ran out. A request that comes after the last
    /// step leaves this `false`: every step asked for ran.
    pub stopped: bool,
}

/// One kernel's share of a step ([`Backend::finish_profile`]).
#[derive(Debug, Clone, PartialEq)]
pub struct KernelTime {
    /// What the kernel does (`forward`, `weight grad`, `pack weights`,
    /// `optimizer`, …).
    pub kernel: &'static str,
    /// The layer it worked on, for per-layer kernels.
    pub layer: Option<usize>,
    /// Its dispatches a step, the mean over the steps profiled (a product
    /// split into chunks of its reduction dispatches once a chunk).
    pub dispatches: f64,
    /// Milliseconds a step, the mean over the steps timed; `None` where the
    /// adapter cannot time kernels.
    pub ms_per_step: Option<f64>,
}

/// The dispatches and time of a step by kernel, in the order the kernels
/// first ran.
#[derive(Debug, Clone, PartialEq)]
pub struct StepProfile {
    /// The adapter that ran the steps.
    pub device: String,
    /// Steps the dispatches are the mean over.
    pub steps: u64,
    /// Steps the times are the mean over: fewer than `steps` past the
    /// timestamps a profile holds, 0 without timestamps.
    pub timed_steps: u64,
    pub kernels: Vec<KernelTime>,
}

impl StepProfile {
    /// Milliseconds a step spent in kernels (the sum over `kernels`), where
    /// the adapter timed them.
    pub fn total_ms(&self) -> Option<f64> {
        self.kernels.iter().map(|k| k.ms_per_step).sum()
    }

    /// Dispatches a step (the sum over `kernels`).
    pub fn dispatches(&self) -> f64 {
        self.kernels.iter().map(|k| k.dispatches).sum()
    }

    /// Dispatches a step of each kernel, whatever its layer, in the order
    /// the kernels first ran.
    pub fn dispatches_by_kernel(&self) -> Vec<(&'static str, f64)> {
        let mut by_kernel: Vec<(&'static str, f64)> = Vec::new();
        for k in &self.kernels {
            match by_kernel.iter_mut().find(|(name, _)| *name == k.kernel) {
                Some((_, n)) => *n += k.dispatches,
                None => by_kernel.push((k.kernel, k.dispatches)),
            }
        }
        by_kernel
    }
}

/// The L2 norms of one layer's gradient (weight and bias together, before
/// clipping) and of its parameters, at one step, before that step's update.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LayerNorms {
    /// The optimizer step (1-based).
    pub step: u64,
    /// The layer (0 = next to the input).
    pub layer: usize,
    /// ‖(dW, db)‖.
    pub grad_norm: f64,
    /// ‖(W, b)‖.
    pub weight_norm: f64,
}

impl LayerNorms {
    /// The norms of every layer from flat gradients and parameters.
    pub fn of<T: Real>(mlp: &Mlp, step: u64, grads: &[T], params: &[T]) -> Vec<LayerNorms> {
        (0..mlp.layers().len())
            .map(|layer| LayerNorms {
                step,
                layer,
                grad_norm: Self::norm(mlp, layer, grads),
                weight_norm: Self::norm(mlp, layer, params),
            })
            .collect()
    }

    /// ‖(W, b)‖ of `layer` in the flat vector `v` (parameters or
    /// gradients): each of [`of`](Self::of)'s norms, for callers that
    /// compute them apart (the CPU backend shares them among threads).
    pub(crate) fn norm<T: Real>(mlp: &Mlp, layer: usize, v: &[T]) -> f64 {
        (sum_of_squares(&v[mlp.weight_range(layer)]) + sum_of_squares(&v[mlp.bias_range(layer)]))
            .sqrt()
    }
}

/// Σ x² in f64, over eight interleaved partial sums added at the end: one
/// running sum is a chain of dependent additions that runs at one element
/// per add latency (a scikit-learn-style fit asks for the norms every step,
/// and the chain took 5 % of its time); eight independent ones vectorize.
/// The order is fixed, so the same values give the same bits; compiled for
/// each SIMD level and run at the machine's best (`pulp`), as the lanes are
/// independent every width gives those bits (built for baseline x86-64 the
/// norms a scikit-learn-style fit takes every step cost ~9 % of its time).
fn sum_of_squares<T: Real>(v: &[T]) -> f64 {
    pulp::Arch::new().dispatch(
        #[inline(always)]
        || sum_of_squares_loop(v),
    )
}

#[inline(always)]
fn sum_of_squares_loop<T: Real>(v: &[T]) -> f64 {
    const LANES: usize = 8;
    let mut lanes = [0.0f64; LANES];
    let chunks = v.chunks_exact(LANES);
    let rest = chunks.remainder();
    for chunk in chunks {
        for (lane, x) in lanes.iter_mut().zip(chunk) {
            *lane += x.f64() * x.f64();
        }
    }
    let tail: f64 = rest.iter().map(|x| x.f64() * x.f64()).sum();
    lanes.iter().sum::<f64>() + tail
}

/// A boxed future that need not be `Send`: what the asynchronous calls of
/// [`Backend`] return (the browser's GPU futures are not `Send`).
pub type LocalFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + 'a>>;

/// What every backend checks first on its raw calls, so that wrong
/// lengths or indices are errors that say what is wrong, never panics:
/// the seam is public, and anything may call it.
pub mod checks {
    use crate::error::{Error, Result};

    /// `got` values where `what` needs `expected`.
    pub fn length(what: &str, expected: usize, got: usize) -> Result<()> {
        if got == expected {
            return Ok(());
        }
        Err(Error::Shape {
            what: what.into(),
            expected,
            got,
        })
    }

    /// Rows of `inputs` values each: `len` must be a whole number of them.
    pub fn rows_of(what: &str, inputs: usize, len: usize) -> Result<()> {
        if len.is_multiple_of(inputs.max(1)) {
            return Ok(());
        }
        Err(Error::Config(format!(
            "{what}: {len} values are not whole rows of {inputs}"
        )))
    }

    /// Steps over `order` in batches of `batch_size` of a data set of
    /// `rows` rows: a batch has rows, and every index names one.
    pub fn steps(order: &[u32], rows: usize, batch_size: usize) -> Result<()> {
        if batch_size == 0 {
            return Err(Error::Config(
                "a batch needs at least one row (batch size 0)".into(),
            ));
        }
        match order.iter().position(|&r| r as usize >= rows) {
            None => Ok(()),
            Some(at) => Err(Error::Config(format!(
                "row order: entry {at} is row {}, but the data has {rows} rows",
                order[at]
            ))),
        }
    }
}

/// `Send` natively, so that a trainer (and the backend and collective it
/// holds) can move to another thread, as a Python binding's or a server's
/// does; nothing in the browser, whose GPU objects stay on their thread.
#[cfg(not(target_arch = "wasm32"))]
pub trait MaybeSend: Send {}
#[cfg(not(target_arch = "wasm32"))]
impl<T: Send + ?Sized> MaybeSend for T {}
/// `Send` natively, nothing in the browser (see the native definition).
#[cfg(target_arch = "wasm32")]
pub trait MaybeSend {}
#[cfg(target_arch = "wasm32")]
impl<T: ?Sized> MaybeSend for T {}

/// The work a trainer hands a device. Parameters, gradients and optimizer
/// state cross it as flat `f32` vectors laid out like
/// [`Mlp::weight_range`] / [`Mlp::bias_range`] (state slot-major).
pub trait Backend: MaybeSend {
    /// The device in words (`cpu: …` or `gpu: …`).
    fn name(&self) -> String;

    /// The flat parameters.
    fn parameters(&mut self) -> Result<Vec<f32>>;
    /// Replaces the parameters.
    fn set_parameters(&mut self, params: &[f32]) -> Result<()>;
    /// The optimizer state (slot-major over the parameters) and the step
    /// count t.
    fn optimizer_state(&mut self) -> Result<(Vec<f32>, u64)>;
    /// Replaces the optimizer state and the step count.
    fn set_optimizer_state(&mut self, state: &[f32], step: u64) -> Result<()>;

    /// The model's state besides its parameters, torch's buffers: each
    /// batch normalisation's running mean and variance, laid out as
    /// [`Mlp::buffer_ranges`] (empty for a network without). Their
    /// `num_batches_tracked` is the step count.
    fn buffers(&mut self) -> Result<Vec<f32>>;
    /// Replaces the buffers (a resume, a loaded model, early stopping's
    /// best epoch).
    fn set_buffers(&mut self, buffers: &[f32]) -> Result<()>;

    /// Makes `data` the training data that steps read: the GPU uploads it
    /// (or, past its binding limits, streams batches from host memory).
    fn upload<'a>(&mut self, data: &'a Dataset) -> Result<DeviceData<'a>>;

    /// Phase 1 of a step: forward, loss and backward over `share`, leaving
    /// its gradients in the backend's gradient buffer. Returns the share's
    /// summed row losses divided by the whole batch's rows (the shares'
    /// values add up to the batch's mean loss).
    fn forward_backward(&mut self, data: &DeviceData<'_>, share: BatchShare<'_>) -> Result<f64>;
    /// Phase 2: the gradient buffer of the last
    /// [`forward_backward`](Self::forward_backward).
    fn gradients(&mut self) -> Result<Vec<f32>>;
    /// Phase 2: replaces the gradient buffer (e.g. with the sum over
    /// processes).
    fn set_gradients(&mut self, grads: &[f32]) -> Result<()>;
    /// Phase 3: clipping, then one optimizer step t + 1 at `lr`.
    fn update(&mut self, lr: f64) -> Result<()>;

    /// Starts counting the dispatches of the steps that follow, by kernel
    /// and layer, and timing them (GPU adapters with timestamp queries
    /// inside compute passes). Returns whether this backend can: the CPU
    /// backend, which dispatches nothing, returns false.
    fn start_profile(&mut self) -> Result<bool> {
        Ok(false)
    }
    /// Ends what [`start_profile`](Self::start_profile) started: each
    /// kernel's dispatches a step and, where it was timed, the mean time a
    /// step spent in it (`None` when no profile was started).
    fn finish_profile(&mut self) -> Result<Option<StepProfile>> {
        Ok(None)
    }

    /// Whole steps over `order` (rows of `data`) in batches of `batch_size`
    /// rows, at most `max_steps` of them, at `lr`: what the phases do, but
    /// recorded together (the GPU submits many steps at once and reads back
    /// once). A step whose loss is not finite stops it with
    /// [`Error::Diverged`], keeping the parameters, optimizer state and
    /// step count from before that step.
    ///
    /// When [`BackendConfig::stop_flag`] is requested, it stops at the next
    /// step boundary it checks (the CPU checks before every step, the GPU
    /// before each window of up to 64 steps, once the window two before it
    /// has run, so that a stop lands within two windows) and returns the steps
    /// that ran with [`StepsReport::stopped`] set. Those steps are whole:
    /// parameters, optimizer state and step count agree, and
    /// `rows`/`steps` say how far into `order` it got.
    fn train_steps(
        &mut self,
        data: &DeviceData<'_>,
        order: &[u32],
        batch_size: usize,
        max_steps: u64,
        lr: f64,
    ) -> Result<StepsReport>;

    /// Sum of row losses (not the mean) over `data` (each weighted, for a
    /// data set with weights), and for classification the number right.
    fn evaluate(&mut self, data: &Dataset) -> Result<(f64, Option<usize>)>;
    /// The network's outputs for inputs `x` (rows × inputs).
    fn predict(&mut self, x: &[f32]) -> Result<Vec<f32>>;
    /// Bytes allocated for parameters, state, activations and data.
    fn memory_bytes(&self) -> u64;

    /// The rows [`evaluate`](Self::evaluate) and
    /// [`predict`](Self::predict) take a pass at a time, from the first:
    /// each pass's loss is added to the sum in turn, in f64. Rows handed
    /// over in calls of exactly this many (the last fewer) then give the
    /// bits of one call over them all, which is how a file streamed in
    /// parts is evaluated as the same rows held in memory are. `None`
    /// where the backend does not say.
    fn evaluation_rows(&self) -> Option<usize> {
        None
    }

    // The asynchronous core. Every call that reads results back from the
    // device has an `_async` twin: the GPU awaits its read-backs there (the
    // browser cannot block on one) and its blocking calls above wait on
    // these natively. The defaults run the blocking call, right for a
    // backend that computes on the calling thread (the CPU).

    /// [`parameters`](Self::parameters), awaited.
    fn parameters_async(&mut self) -> LocalFuture<'_, Result<Vec<f32>>> {
        Box::pin(std::future::ready(self.parameters()))
    }
    /// [`optimizer_state`](Self::optimizer_state), awaited.
    fn optimizer_state_async(&mut self) -> LocalFuture<'_, Result<(Vec<f32>, u64)>> {
        Box::pin(std::future::ready(self.optimizer_state()))
    }
    /// [`buffers`](Self::buffers), awaited (the browser cannot block on
    /// a read-back).
    fn buffers_async(&mut self) -> LocalFuture<'_, Result<Vec<f32>>> {
        Box::pin(std::future::ready(self.buffers()))
    }
    /// [`forward_backward`](Self::forward_backward), awaited.
    fn forward_backward_async<'a>(
        &'a mut self,
        data: &'a DeviceData<'a>,
        share: BatchShare<'a>,
    ) -> LocalFuture<'a, Result<f64>> {
        Box::pin(std::future::ready(self.forward_backward(data, share)))
    }
    /// [`gradients`](Self::gradients), awaited.
    fn gradients_async(&mut self) -> LocalFuture<'_, Result<Vec<f32>>> {
        Box::pin(std::future::ready(self.gradients()))
    }
    /// [`train_steps`](Self::train_steps), awaited.
    fn train_steps_async<'a>(
        &'a mut self,
        data: &'a DeviceData<'a>,
        order: &'a [u32],
        batch_size: usize,
        max_steps: u64,
        lr: f64,
    ) -> LocalFuture<'a, Result<StepsReport>> {
        Box::pin(std::future::ready(
            self.train_steps(data, order, batch_size, max_steps, lr),
        ))
    }
    /// [`evaluate`](Self::evaluate), awaited.
    fn evaluate_async<'a>(
        &'a mut self,
        data: &'a Dataset,
    ) -> LocalFuture<'a, Result<(f64, Option<usize>)>> {
        Box::pin(std::future::ready(self.evaluate(data)))
    }
    /// [`finish_profile`](Self::finish_profile), awaited.
    fn finish_profile_async(&mut self) -> LocalFuture<'_, Result<Option<StepProfile>>> {
        Box::pin(std::future::ready(self.finish_profile()))
    }
    /// [`predict`](Self::predict), awaited.
    fn predict_async<'a>(&'a mut self, x: &'a [f32]) -> LocalFuture<'a, Result<Vec<f32>>> {
        Box::pin(std::future::ready(self.predict(x)))
    }
}

#[cfg(test)]
mod tests {
    use super::sum_of_squares;

    #[test]
    fn sum_of_squares_counts_every_element_lanes_and_tail() {
        // 1² + … + n² = n(n+1)(2n+1)/6, for lengths around the lane count.
        for n in [0usize, 1, 7, 8, 9, 16, 19, 1000] {
            let v: Vec<f32> = (1..=n).map(|i| i as f32).collect();
            let expected = (n * (n + 1) * (2 * n + 1) / 6) as f64;
            assert_eq!(sum_of_squares(&v), expected, "length {n}");
        }
        let v = [0.5f64, -1.5, 2.0];
        assert_eq!(sum_of_squares(&v), 0.25 + 2.25 + 4.0);
    }
}
