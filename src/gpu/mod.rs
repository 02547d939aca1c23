//! The wgpu backend: the whole training loop in WGSL compute shaders.
//!
//! `context` owns the device, `tiling` decides how each matmul is tiled,
//! `codes` names the codes shaders switch on, `kernels` builds the pipelines
//! (once) and declares the uniforms they read, and `backend` records
//! training steps. `harness` runs single kernels on host data, for the
//! parity tests and benchmarks; `ceiling` times multiply-adds alone, the
//! adapter's arithmetic ceiling.

mod backend;
mod build;
#[cfg(feature = "harness")]
pub mod ceiling;
mod codes;
mod context;
mod dispatch;
#[cfg(feature = "harness")]
pub mod harness;
mod pipelines;
mod plan;
mod profile;
mod record;
mod resources;
mod shaders;
mod tiling;
mod uniforms;
mod unroll;

pub use backend::GpuBackend;
#[cfg(not(target_arch = "wasm32"))]
pub use context::adapters;
pub use context::{AdapterSummary, GpuContext, adapters_async, prefer_adapter};
pub use tiling::{MAX_SHORT_ROWS, MIN_LARGE_WORKGROUPS, MatmulChoice, MatmulKind, MatmulTiling};
