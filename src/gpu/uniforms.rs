//! The uniform structs the shaders read, each `#[repr(C)]` and `Pod`,
//! declared beside the WGSL struct it mirrors (named in its comment), and
//! the packing of many of them into one buffer at the device's alignment.

use super::dispatch::reduction_chunks;
use bytemuck::{Pod, Zeroable};
use wgpu::util::DeviceExt;

/// Mirrors `Shape` in shaders/matmul.wgsl.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable, Default)]
pub(crate) struct MatmulShape {
    pub m: u32,
    pub n: u32,
    pub k: u32,
    pub activation: u32,
    pub slope: f32,
    /// Where in K this dispatch's reduction starts (`dispatch::reduction_chunks`).
    pub k_start: u32,
    pub dropout_threshold: u32,
    pub dropout_scale: f32,
    pub dropout_seed: u32,
    pub dropout_layer: u32,
    pub row_offset: u32,
    /// Where in K it ends: `k` for the last chunk, which applies the epilogue.
    pub k_end: u32,
}

impl MatmulShape {
    /// With `dropout` (of layer `layer`, masks from `seed`) in the epilogue.
    pub(crate) fn with_dropout(
        mut self,
        dropout: Option<crate::dropout::Dropout>,
        seed: u32,
        layer: usize,
    ) -> Self {
        if let Some(d) = dropout {
            self.dropout_threshold = d.threshold.max(1);
            self.dropout_scale = d.scale;
            self.dropout_seed = seed;
            self.dropout_layer = layer as u32;
        }
        self
    }
}

/// Mirrors `Shape` in shaders/activation.wgsl.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub(crate) struct ElementwiseShape {
    pub rows: u32,
    pub width: u32,
    pub activation: u32,
    pub slope: f32,
}

/// Mirrors `Shape` in shaders/loss.wgsl.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub(crate) struct LossShape {
    pub rows: u32,
    pub width: u32,
    pub loss: u32,
    pub activation: u32,
    pub slope: f32,
    pub inv_norm: f32,
}

/// Mirrors `Shape` in shaders/reduce.wgsl.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub(crate) struct ReduceShape {
    pub rows: u32,
    pub cols: u32,
    pub accumulate: u32,
    pub out_offset: u32,
}

/// Mirrors `Rule` in shaders/optimizer.wgsl.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub(crate) struct OptimizerShape {
    pub n: u32,
    pub kind: u32,
    pub flag: u32,
    pub decoupled: u32,
    pub a: f32,
    pub b: f32,
    pub eps: f32,
    pub weight_decay: f32,
    pub momentum: f32,
    pub clip_norm: f32,
    pub clip_value: f32,
}

impl OptimizerShape {
    /// The rule over `n` padded parameters, with clipping.
    pub(crate) fn new(
        optimizer: &crate::optim::Optimizer,
        clip: &crate::optim::GradClip,
        n: u64,
    ) -> Self {
        let rule = optimizer.rule();
        OptimizerShape {
            n: n as u32,
            kind: rule.kind as u32,
            flag: rule.flag as u32,
            decoupled: rule.decoupled as u32,
            a: rule.a as f32,
            b: rule.b as f32,
            eps: rule.eps as f32,
            weight_decay: rule.weight_decay as f32,
            momentum: rule.momentum as f32,
            clip_norm: clip.max_norm.unwrap_or(0.0) as f32,
            clip_value: clip.max_value.unwrap_or(0.0) as f32,
        }
    }
}

/// Mirrors `Shape` in shaders/pack.wgsl.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub(crate) struct PackShape {
    pub rows: u32,
    pub cols: u32,
    pub padded_rows: u32,
    pub texels: u32,
}

/// Mirrors `Shape` in shaders/data.wgsl.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub(crate) struct GatherShape {
    pub rows: u32,
    pub features: u32,
    pub target_width: u32,
    /// Rows into the batch where this pass starts (micro-batches).
    pub offset: u32,
}

/// Mirrors `Step` in shaders/data.wgsl, reduce.wgsl and optimizer.wgsl: what
/// changes from one step to the next, written for a whole epoch at once
/// beside the permutation. The scalars torch computes in double precision
/// are computed here in f64, as the CPU backend does.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable, Default)]
pub(crate) struct StepParams {
    pub batch_start: u32,
    pub slot: u32,
    pub t: u32,
    pub _pad: u32,
    pub lr: f32,
    pub step_size: f32,
    pub bias_correction2_sqrt: f32,
    pub adagrad_lr: f32,
    pub decay: f32,
}

impl StepParams {
    /// The parameters of optimizer step `t` (1-based) at learning rate `lr`.
    pub(crate) fn new(
        rule: &crate::optim::UpdateRule,
        t: u64,
        lr: f64,
        batch_start: u32,
        slot: u32,
    ) -> StepParams {
        let s = crate::optim::UpdateRule { lr, ..*rule }.scalars(t);
        StepParams {
            batch_start,
            slot,
            t: t.min(u32::MAX as u64) as u32,
            _pad: 0,
            lr: s.lr as f32,
            step_size: s.step_size as f32,
            bias_correction2_sqrt: s.bias_correction2_sqrt as f32,
            adagrad_lr: s.adagrad_lr as f32,
            decay: s.decay as f32,
        }
    }
}

/// Uniform blocks laid out at the device's uniform-offset alignment.
pub(crate) struct UniformBlocks {
    bytes: Vec<u8>,
    align: u64,
}

impl UniformBlocks {
    pub(crate) fn new(align: u64) -> Self {
        UniformBlocks {
            bytes: Vec::new(),
            align,
        }
    }
    /// Appends a block; returns its byte offset.
    pub(crate) fn push<T: Pod>(&mut self, value: &T) -> u64 {
        let offset = self.bytes.len() as u64;
        self.bytes.extend_from_slice(bytemuck::bytes_of(value));
        self.bytes.resize(
            (self.bytes.len() as u64).next_multiple_of(self.align) as usize,
            0,
        );
        offset
    }
    /// Appends a product's shape once per chunk of its reduction
    /// (`dispatch::reduction_chunks`), each with its range of K; returns
    /// their byte offsets, in order.
    pub(crate) fn push_chunks(&mut self, shape: MatmulShape) -> Vec<u64> {
        reduction_chunks(shape.k as usize)
            .into_iter()
            .map(|(k_start, k_end)| {
                self.push(&MatmulShape {
                    k_start,
                    k_end,
                    ..shape
                })
            })
            .collect()
    }

    pub(crate) fn upload(&self, device: &wgpu::Device) -> wgpu::Buffer {
        device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("shapes"),
            contents: if self.bytes.is_empty() {
                &[0; 16]
            } else {
                &self.bytes
            },
            usage: wgpu::BufferUsages::UNIFORM,
        })
    }
}
