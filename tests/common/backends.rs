//! One test body, run on every backend: `backend_tests!` writes a `#[test]`
//! per backend from one body, so that cargo runs them in parallel and a
//! failure's name says where it failed (`xor_reaches_full_accuracy::gpu`).
//!
//! The body's argument decides the backends:
//! - `fn name(device: Device)`: a `Trainer` on each device, `cpu` and `gpu`;
//! - `fn name(backend: Backend)`: those two, in f32, and `f64`, the CPU
//!   reference in f64, for tests that can use it (gradient checks, hand
//!   computed optimizer steps).
//!
//! Every failure message starts with the backend. The GPU case never skips:
//! without a wgpu adapter it fails, saying how to install one.

use retroprop::{Activation, Device, Mlp, TrainConfig, Trainer};
use std::fmt;

/// What computes a test body's numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// The CPU reference in f64 (`retroprop::cpu::Network<f64>`, or the
    /// optimizer's update in f64): the ground truth.
    F64,
    /// The f32 code that trains on this device: a `Trainer`, or on the GPU
    /// the kernel harness.
    F32(Device),
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Backend::F64 => f.write_str("f64 cpu reference"),
            Backend::F32(device) => write!(f, "{device}"),
        }
    }
}

/// What to do on a machine without a GPU.
pub const NO_GPU_HELP: &str = "GPU tests need a wgpu adapter; on a machine without a GPU, install \
     Mesa's software Vulkan (Debian/Ubuntu: `apt-get install mesa-vulkan-drivers`)";

/// A trainer on `device`, from `config.init` with `config.seed`. A GPU that
/// cannot be opened fails the test with [`NO_GPU_HELP`].
pub fn trainer(mlp: Mlp, config: TrainConfig, device: Device) -> Trainer {
    opened(Trainer::new(mlp, config.device(device)), device)
}

/// A trainer on `device` that starts from `params`.
pub fn trainer_with(mlp: Mlp, params: Vec<f32>, config: TrainConfig, device: Device) -> Trainer {
    opened(
        Trainer::with_parameters(mlp, params, config.device(device)),
        device,
    )
}

fn opened(trainer: retroprop::Result<Trainer>, device: Device) -> Trainer {
    trainer.unwrap_or_else(|e| {
        let e = e.to_string();
        if device == Device::Cpu || e.contains("mesa-vulkan-drivers") {
            panic!("cannot build a trainer on the {device}: {e}")
        } else {
            panic!("cannot build a trainer on the {device}: {e}\n{NO_GPU_HELP}")
        }
    })
}

/// What a test body is given: a device, or a [`Backend`].
pub trait RunsOn: fmt::Display + Copy + std::panic::UnwindSafe {
    /// The device a trainer uses, if any.
    fn device(self) -> Option<Device>;
}

impl RunsOn for Device {
    fn device(self) -> Option<Device> {
        Some(self)
    }
}

impl RunsOn for Backend {
    fn device(self) -> Option<Device> {
        match self {
            Backend::F64 => None,
            Backend::F32(device) => Some(device),
        }
    }
}

/// Runs `body` on `backend`, and fails with the backend named before the
/// body's own message. A GPU backend is opened first, so that a body that
/// would pass without one (an error found before the device is needed)
/// fails on a machine without a GPU too.
pub fn run_on<B: RunsOn>(backend: B, body: fn(B)) {
    let run = move || {
        if let Some(device @ Device::Gpu) = backend.device() {
            let mlp = Mlp::new(&[1, 1], Activation::Identity, Activation::Identity).unwrap();
            trainer(mlp, TrainConfig::default(), device);
        }
        body(backend)
    };
    if let Err(payload) = std::panic::catch_unwind(run) {
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("(a panic without a message)");
        panic!("on the {backend} backend: {message}");
    }
}

/// `backend_tests! { /// doc  fn name(device: Device) { body } ... }` makes a
/// module `name` with one `#[test]` per backend (see the module's comment).
#[allow(unused_macros)]
macro_rules! backend_tests {
    ($($(#[doc = $doc:literal])* fn $name:ident($arg:ident: $kind:ident) $body:block)+) => {
        $(backend_tests!(@one $kind $(#[doc = $doc])* fn $name($arg: $kind) $body);)+
    };
    (@one Device $(#[doc = $doc:literal])* fn $name:ident($arg:ident: $ty:ident) $body:block) => {
        $(#[doc = $doc])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            fn body($arg: $ty) $body
            #[test]
            fn cpu() {
                $crate::common::run_on(retroprop::Device::Cpu, body);
            }
            #[test]
            fn gpu() {
                $crate::common::run_on(retroprop::Device::Gpu, body);
            }
        }
    };
    (@one Backend $(#[doc = $doc:literal])* fn $name:ident($arg:ident: $ty:ident) $body:block) => {
        $(#[doc = $doc])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            fn body($arg: $ty) $body
            #[test]
            fn f64() {
                $crate::common::run_on($crate::common::Backend::F64, body);
            }
            #[test]
            fn cpu() {
                let cpu = $crate::common::Backend::F32(retroprop::Device::Cpu);
                $crate::common::run_on(cpu, body);
            }
            #[test]
            fn gpu() {
                let gpu = $crate::common::Backend::F32(retroprop::Device::Gpu);
                $crate::common::run_on(gpu, body);
            }
        }
    };
}
#[allow(unused_imports)]
pub(crate) use backend_tests;
