//! The bind groups of the kernels that read the flat parameter, gradient
//! and optimizer-state buffers as one range: the optimizer, the gradient's
//! global norm (clipping) and the per-layer norms. Each is bound piece by
//! piece ([`ParamLayout::pieces`]), every optimizer state slot on its own,
//! so that no binding is larger than the device allows: Adam's state of
//! 784-4096-4096-10 (160 MB) failed wgpu's validation against the 128 MiB
//! that many devices bind, and parameters past a binding failed the same.

use super::pipelines::{Kernels, NORM_GROUPS, binding, entry};
use super::resources::{ParamLayout, ParamPiece, storage, storage_init};
use super::uniforms::{OptimizerUniform, ReduceShape, StepUniform, UniformBlocks};
use crate::model::Mlp;
use crate::optim::{GradClip, Optimizer};
use std::num::NonZeroU64;

/// A binding's buffer, byte offset and size (to its end when `None`).
type Bound = (wgpu::Buffer, u64, Option<NonZeroU64>);

/// What the update of a step binds, piece by piece.
#[derive(Debug)]
pub(crate) struct UpdateGroups {
    /// The optimizer over each piece, and the piece's length in floats.
    pub(crate) optimizer: Vec<(wgpu::BindGroup, u64)>,
    /// The first pass of the gradient norm over each piece, each into its
    /// own `NORM_GROUPS` partial sums, which every optimizer dispatch adds
    /// up (`update_clipped` in shaders/optimizer.wgsl).
    pub(crate) sum_squares: Vec<wgpu::BindGroup>,
    /// The layer norms of each piece, and its number of layers.
    pub(crate) layer_norms: Vec<(wgpu::BindGroup, u32)>,
    /// The buffers only the bind groups read, kept with them.
    _kept: Vec<wgpu::Buffer>,
}

/// The buffers the update reads and writes.
pub(crate) struct UpdateBuffers<'a> {
    pub(crate) params: &'a wgpu::Buffer,
    pub(crate) grads: &'a wgpu::Buffer,
    pub(crate) state: &'a wgpu::Buffer,
    pub(crate) steps: &'a wgpu::Buffer,
    pub(crate) layer_norm_results: &'a wgpu::Buffer,
    /// A zero quad for each slot an optimizer does not have: one buffer
    /// each, since WebGPU refuses two writable bindings of one range.
    pub(crate) unused_state: [&'a wgpu::Buffer; 3],
}

/// What the update is for: the network, its layout in pieces, the
/// optimizer and clipping, and the uniform alignment.
pub(crate) struct UpdatePlan<'a> {
    pub(crate) mlp: &'a Mlp,
    pub(crate) layout: &'a ParamLayout,
    pub(crate) pieces: &'a [ParamPiece],
    pub(crate) optimizer: &'a Optimizer,
    pub(crate) clip: &'a GradClip,
    pub(crate) uniform_align: u64,
}

impl UpdateGroups {
    pub(crate) fn new(
        device: &wgpu::Device,
        kernels: &Kernels,
        plan: &UpdatePlan,
        buffers: &UpdateBuffers,
    ) -> UpdateGroups {
        let UpdatePlan {
            mlp,
            layout,
            pieces,
            optimizer,
            clip,
            uniform_align,
        } = *plan;
        let region = |buffer: &'_ wgpu::Buffer, offset: u64, len: u64| {
            (buffer.clone(), offset * 4, NonZeroU64::new(len * 4))
        };
        let layers = mlp.layers().len() as u32;
        let partial_sums = pieces.len() as u32 * NORM_GROUPS;
        let mut blocks = UniformBlocks::new(uniform_align);
        let at: Vec<(u64, u64, u64)> = pieces
            .iter()
            .enumerate()
            .map(|(p, piece)| {
                let rule = blocks.push(&OptimizerUniform::new(
                    optimizer,
                    clip,
                    piece.len,
                    partial_sums,
                ));
                let squares = blocks.push(&ReduceShape {
                    rows: piece.len as u32,
                    cols: NORM_GROUPS,
                    accumulate: 0,
                    out_offset: p as u32 * NORM_GROUPS,
                    ..Default::default()
                });
                let norms = blocks.push(&ReduceShape {
                    rows: piece.layers.len() as u32,
                    cols: layers,
                    accumulate: 0,
                    out_offset: piece.layers.start as u32,
                    ..Default::default()
                });
                (rule, squares, norms)
            })
            .collect();
        let uniforms = blocks.upload(device);
        let partials = storage(device, "gradient norm partials", partial_sums as u64);
        let uniform =
            |offset: u64, size: usize| (uniforms.clone(), offset, NonZeroU64::new(size as u64));
        let step_size = std::mem::size_of::<StepUniform>();
        let group = |layout: &wgpu::BindGroupLayout, label: &str, entries: &[(u32, Bound)]| {
            let entries: Vec<wgpu::BindGroupEntry> = entries
                .iter()
                .map(|(b, (buffer, offset, size))| entry(*b, buffer, *offset, *size))
                .collect();
            device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some(label),
                layout,
                entries: &entries,
            })
        };
        let slots = optimizer.state_slots() as u64;
        let mut optimizer_groups = Vec::new();
        let mut sum_squares = Vec::new();
        let mut layer_norms = Vec::new();
        let mut kept = vec![uniforms.clone(), partials.clone()];
        for (piece, &(rule_at, squares_at, norms_at)) in pieces.iter().zip(&at) {
            let state_slot = |k: u64| {
                if k < slots {
                    region(buffers.state, k * layout.len + piece.offset, piece.len)
                } else {
                    (buffers.unused_state[k as usize].clone(), 0, None)
                }
            };
            use binding::optimizer as o;
            let optimizer_group = group(
                &kernels.optimizer.layout,
                "optimizer",
                &[
                    (
                        o::RULE,
                        uniform(rule_at, std::mem::size_of::<OptimizerUniform>()),
                    ),
                    (
                        o::STEP,
                        (buffers.steps.clone(), 0, NonZeroU64::new(step_size as u64)),
                    ),
                    (o::PARAMS, region(buffers.params, piece.offset, piece.len)),
                    (o::GRADS, region(buffers.grads, piece.offset, piece.len)),
                    (o::STATE0, state_slot(0)),
                    (o::CLIP, (partials.clone(), 0, None)),
                    (o::STATE1, state_slot(1)),
                    (o::STATE2, state_slot(2)),
                ],
            );
            optimizer_groups.push((optimizer_group, piece.len));
            use binding::reduce as r;
            sum_squares.push(group(
                &kernels.sum_squares.layout,
                "gradient norm",
                &[
                    (
                        binding::SHAPE,
                        uniform(squares_at, std::mem::size_of::<ReduceShape>()),
                    ),
                    (r::INPUT, region(buffers.grads, piece.offset, piece.len)),
                    (r::OUT, (partials.clone(), 0, None)),
                ],
            ));
            // Each layer's ranges within the piece.
            let ranges: Vec<u32> = piece
                .layers
                .clone()
                .flat_map(|l| {
                    [
                        (layout.weight[l] - piece.offset) as u32,
                        mlp.weight_range(l).len() as u32,
                        (layout.bias[l] - piece.offset) as u32,
                        mlp.bias_range(l).len() as u32,
                    ]
                })
                .collect();
            let ranges = storage_init(device, "layer ranges", &ranges);
            layer_norms.push((
                group(
                    &kernels.layer_norms.layout,
                    "layer norms",
                    &[
                        (
                            binding::SHAPE,
                            uniform(norms_at, std::mem::size_of::<ReduceShape>()),
                        ),
                        (r::INPUT, region(buffers.grads, piece.offset, piece.len)),
                        (r::OUT, (buffers.layer_norm_results.clone(), 0, None)),
                        (
                            r::STEP,
                            (buffers.steps.clone(), 0, NonZeroU64::new(step_size as u64)),
                        ),
                        (
                            r::NORM_PARAMS,
                            region(buffers.params, piece.offset, piece.len),
                        ),
                        (r::NORM_RANGES, (ranges.clone(), 0, None)),
                    ],
                ),
                piece.layers.len() as u32,
            ));
            kept.push(ranges);
        }
        UpdateGroups {
            optimizer: optimizer_groups,
            sum_squares,
            layer_norms,
            _kept: kept,
        }
    }
}
