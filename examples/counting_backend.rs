//! A backend written outside the crate, plugged into the public `Trainer`:
//! it wraps the CPU backend and counts every call the trainer makes
//! through the seam (`retroprop::backend::Backend`), then trains XOR with
//! it. `tests/external_backend.rs` includes this file and checks that the
//! wrapped backend trains bit for bit as the plain CPU trainer does, and
//! that the counts are those the loop should make.
//!
//!     cargo run --release --example counting_backend

use retroprop::backend::{Backend, BatchShare, DeviceData, StepsReport};
use retroprop::cpu::CpuBackend;
use retroprop::{Activation, Dataset, Device, Loss, Mlp, Sgd, Targets, TrainConfig, Trainer};
use std::sync::{Arc, Mutex};

/// How many times the trainer called each method of the seam.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Calls {
    pub parameters: u64,
    pub set_parameters: u64,
    pub optimizer_state: u64,
    pub set_optimizer_state: u64,
    pub upload: u64,
    pub forward_backward: u64,
    pub gradients: u64,
    pub set_gradients: u64,
    pub update: u64,
    pub train_steps: u64,
    pub evaluate: u64,
    pub predict: u64,
}

impl Calls {
    /// Each count with its method's name, for printing.
    pub fn by_name(&self) -> [(&'static str, u64); 12] {
        [
            ("parameters", self.parameters),
            ("set_parameters", self.set_parameters),
            ("optimizer_state", self.optimizer_state),
            ("set_optimizer_state", self.set_optimizer_state),
            ("upload", self.upload),
            ("forward_backward", self.forward_backward),
            ("gradients", self.gradients),
            ("set_gradients", self.set_gradients),
            ("update", self.update),
            ("train_steps", self.train_steps),
            ("evaluate", self.evaluate),
            ("predict", self.predict),
        ]
    }
}

/// The CPU backend, counting what is asked of it. The counts are shared
/// (`Arc`), so they can be read while the trainer owns the backend (which,
/// like every backend, can move to another thread).
///
/// Only the blocking methods are written out: the trait's `_async` ones
/// default to calling them, which is right for a backend that computes on
/// the calling thread, so every call, blocking or awaited, is counted
/// once.
pub struct CountingBackend {
    inner: CpuBackend,
    calls: Arc<Mutex<Calls>>,
}

impl CountingBackend {
    /// Wraps `inner`; returns the backend and its counts.
    pub fn new(inner: CpuBackend) -> (CountingBackend, Arc<Mutex<Calls>>) {
        let calls = Arc::new(Mutex::new(Calls::default()));
        let backend = CountingBackend {
            inner,
            calls: calls.clone(),
        };
        (backend, calls)
    }

    fn count(&self, call: impl FnOnce(&mut Calls) -> &mut u64) {
        *call(&mut self.calls.lock().expect("the counts")) += 1;
    }
}

impl Backend for CountingBackend {
    fn name(&self) -> String {
        format!("counting {}", self.inner.name())
    }

    fn parameters(&mut self) -> retroprop::Result<Vec<f32>> {
        self.count(|c| &mut c.parameters);
        self.inner.parameters()
    }

    fn set_parameters(&mut self, params: &[f32]) -> retroprop::Result<()> {
        self.count(|c| &mut c.set_parameters);
        self.inner.set_parameters(params)
    }

    fn optimizer_state(&mut self) -> retroprop::Result<(Vec<f32>, u64)> {
        self.count(|c| &mut c.optimizer_state);
        self.inner.optimizer_state()
    }

    fn set_optimizer_state(&mut self, state: &[f32], step: u64) -> retroprop::Result<()> {
        self.count(|c| &mut c.set_optimizer_state);
        self.inner.set_optimizer_state(state, step)
    }

    fn buffers(&mut self) -> retroprop::Result<Vec<f32>> {
        self.inner.buffers()
    }

    fn set_buffers(&mut self, buffers: &[f32]) -> retroprop::Result<()> {
        self.inner.set_buffers(buffers)
    }

    fn upload<'a>(&mut self, data: &'a Dataset) -> retroprop::Result<DeviceData<'a>> {
        self.count(|c| &mut c.upload);
        // The inner backend's handle is the one its steps check; a backend
        // of its own would number its uploads: DeviceData::new(id, data).
        self.inner.upload(data)
    }

    fn forward_backward(
        &mut self,
        data: &DeviceData<'_>,
        share: BatchShare<'_>,
    ) -> retroprop::Result<f64> {
        self.count(|c| &mut c.forward_backward);
        self.inner.forward_backward(data, share)
    }

    fn gradients(&mut self) -> retroprop::Result<Vec<f32>> {
        self.count(|c| &mut c.gradients);
        self.inner.gradients()
    }

    fn set_gradients(&mut self, grads: &[f32]) -> retroprop::Result<()> {
        self.count(|c| &mut c.set_gradients);
        self.inner.set_gradients(grads)
    }

    fn update(&mut self, lr: f64) -> retroprop::Result<()> {
        self.count(|c| &mut c.update);
        self.inner.update(lr)
    }

    fn train_steps(
        &mut self,
        data: &DeviceData<'_>,
        order: &[u32],
        batch_size: usize,
        max_steps: u64,
        lr: f64,
    ) -> retroprop::Result<StepsReport> {
        self.count(|c| &mut c.train_steps);
        self.inner
            .train_steps(data, order, batch_size, max_steps, lr)
    }

    fn evaluate(&mut self, data: &Dataset) -> retroprop::Result<(f64, Option<usize>)> {
        self.count(|c| &mut c.evaluate);
        self.inner.evaluate(data)
    }

    fn predict(&mut self, x: &[f32]) -> retroprop::Result<Vec<f32>> {
        self.count(|c| &mut c.predict);
        self.inner.predict(x)
    }

    fn memory_bytes(&self) -> u64 {
        self.inner.memory_bytes()
    }
}

/// XOR, as class labels.
pub fn xor() -> Dataset {
    Dataset::new(
        vec![0., 0., 0., 1., 1., 0., 1., 1.],
        2,
        Targets::Classes(vec![0, 1, 1, 0]),
    )
    .expect("XOR is a valid data set")
}

/// The network that learns it.
pub fn mlp() -> Mlp {
    Mlp::new(&[2, 8, 2], Activation::Tanh, Activation::Identity).expect("valid sizes")
}

/// Full-batch SGD with momentum, `epochs` epochs, on the CPU (what the
/// plain trainer it is compared with runs on).
pub fn config(epochs: usize) -> TrainConfig {
    TrainConfig::default()
        .loss(Loss::CrossEntropy)
        .optimizer(Sgd::default().lr(0.5).momentum(0.9))
        .full_batch()
        .epochs(epochs)
        .device(Device::Cpu)
}

/// A trainer on the counting backend, starting from the parameters
/// `config` draws (as `Trainer::new` would), and its counts.
pub fn counting_trainer(config: TrainConfig) -> retroprop::Result<(Trainer, Arc<Mutex<Calls>>)> {
    let mlp = mlp();
    let params = mlp.init(config.init, config.seed);
    let cpu = CpuBackend::new(&mlp, params, &config.backend_config(&mlp));
    let (backend, calls) = CountingBackend::new(cpu);
    let trainer = Trainer::with_backend(mlp, config, Box::new(backend))?;
    Ok((trainer, calls))
}

fn main() -> retroprop::Result<()> {
    let epochs = 200;
    let (mut trainer, calls) = counting_trainer(config(epochs))?;
    let data = xor();
    let history = trainer.fit(&data, Some(&data))?;
    let last = history.epochs.last().expect("it trained");
    println!(
        "{}: {} epochs, {} steps, loss {:.4}, accuracy {:?}",
        trainer.device_name(),
        history.epochs.len(),
        trainer.steps(),
        last.train_loss,
        last.validation.and_then(|v| v.accuracy)
    );
    for (name, count) in calls.lock().expect("the counts").by_name() {
        println!("{name:>20}: {count}");
    }
    assert_eq!(last.validation.and_then(|v| v.accuracy), Some(1.0));
    let calls = *calls.lock().expect("the counts");
    // The fused path: one upload, one call of train_steps an epoch (a
    // full batch is one step), one validation an epoch, no phases.
    assert_eq!(calls.upload, 1);
    assert_eq!(calls.train_steps, epochs as u64);
    assert_eq!(calls.evaluate, epochs as u64);
    assert_eq!(calls.forward_backward + calls.update, 0);
    Ok(())
}
