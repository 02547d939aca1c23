//! The wgpu backend: the whole training loop in WGSL compute shaders.
//!
//! `context` owns the device, `kernels` the pipelines (built once), and
//! `backend` records training steps. `harness` runs single kernels on host
//! data, for the parity tests and benchmarks.

mod backend;
mod codes;
mod context;
#[cfg(feature = "harness")]
pub mod harness;
mod kernels;

pub use backend::GpuBackend;
pub use context::{AdapterSummary, GpuContext, adapters};
pub use kernels::{MatmulKind, MatmulTiling};
