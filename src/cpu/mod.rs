//! The CPU reference backend: the readable truth the GPU kernels are checked
//! against, generic over `f32` (what the GPU computes) and `f64` (ground
//! truth for gradient checks).
//!
//! - `network.rs`: the network, its passes and its update ([`Network`]);
//! - `dense.rs`: one dense layer's forward and backward, side by side;
//! - `norm.rs`: LayerNorm's and BatchNorm's, the same way, `ensemble.rs`
//!   a BatchEnsemble layer's and `members_layers.rs` TabM's other layers
//!   (the members' own linear layers, `tabm-mini`'s scaling, the view
//!   that gives each member the batch, the ensemble's mean);
//! - `embedding.rs`: a numerical-feature embedding's (piecewise-linear,
//!   periodic; TabM's first layer, the periodic ones run by the network);
//! - `sequence.rs`: the passes of a network that is more than dense layers
//!   (normalisations, residual skips, TabM's members);
//! - `optimizer.rs`: the optimizer step and gradient clipping, the twins of
//!   `shaders/optimizer.wgsl` and `shaders/reduce.wgsl`;
//! - `gemm/`: matrix products, on the built-in GEMM or a system BLAS,
//!   whichever is faster at the product's shape;
//! - `share.rs`: a pass shared among the pool's threads;
//! - `pool.rs`: the backend's threads (its pools, the run that has them,
//!   made anew after a fork);
//! - `backend.rs`: [`CpuBackend`], the [`Backend`](crate::backend::Backend)
//!   the trainer drives.

mod backend;
mod dense;
pub mod embedding;
pub mod ensemble;
pub mod gemm;
pub mod members_layers;
mod network;
pub mod norm;
mod optimizer;
mod pool;
mod sequence;
pub(crate) mod share;

pub use backend::CpuBackend;
pub use dense::{dense_backward, dense_forward};
pub use gemm::{
    Blas, Engine, Gemm, Route, Shape, Trial, blas, check_env, gemm_builtin, gemm_name, gemms_of,
    route, trials,
};
pub use network::Network;
pub use optimizer::{clip_gradients, optimizer_step};
pub use pool::run_on_pool;
