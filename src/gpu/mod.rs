//! The wgpu backend: the whole training loop in WGSL compute shaders.
//!
//! One idea a file, lowest first (each imports only those before it;
//! docs/DESIGN.md, "Module layers"): `context` owns the device and its
//! read-backs, `codes` names the codes shaders switch on, `unroll` expands
//! the WGSL templates, `shaders` is the WGSL every module starts with,
//! `tiling` decides how each matmul is tiled, `dispatch` sizes every
//! dispatch, `uniforms` declares the uniform structs (the twins of the WGSL
//! ones), `resources` the buffers and textures, `pipelines` builds the
//! pipelines (once), `profile` times the kernels of a step, `plan` builds
//! the bind groups of a pass from the resources it binds, and `backend`
//! (with `build`, which opens it, and `record`, which records the
//! dispatches of a step) is `GpuBackend`. `harness` runs single kernels
//! on host data, for the parity tests and benchmarks; `ceiling` times
//! multiply-adds alone, the adapter's arithmetic ceiling. `sequence`
//! (between `profile` and `plan`) holds the steps of a network that is not
//! plain: normalisations, activations alone, residual adds.

mod backend;
mod build;
#[cfg(feature = "harness")]
pub mod ceiling;
mod codes;
mod context;
mod dispatch;
mod ensemble;
#[cfg(feature = "harness")]
pub mod harness;
#[cfg(not(target_arch = "wasm32"))]
mod members;
mod pipelines;
mod plan;
mod profile;
mod record;
mod resources;
mod sequence;
mod shaders;
mod split;
mod steps;
mod tiling;
mod uniforms;
mod unroll;
mod update;
mod window;

pub use backend::GpuBackend;
pub use build::GpuOptions;
#[cfg(not(target_arch = "wasm32"))]
pub use context::adapters;
pub use context::{AdapterSummary, GpuContext, adapters_async, prefer_adapter};
#[cfg(not(target_arch = "wasm32"))]
pub use members::{GpuMembers, MemberPlan, MemberView, lock as members_lock};
pub use split::{
    DEFAULT_DISCRETE_UNITS, DEFAULT_INTEGRATED_UNITS, MAX_SLICES, MIN_SLICE_K, SplitK,
    compute_units,
};
pub use tiling::{MAX_SHORT_ROWS, MIN_LARGE_WORKGROUPS, MatmulChoice, MatmulKind, MatmulTiling};
